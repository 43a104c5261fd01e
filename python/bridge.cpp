// The C API for C++ extensions (bridge.hpp): calling_context's enter and leave.
#include "bridge.hpp"

#include "carrier.hpp"

namespace ctxvars_python {

namespace {

using ctxvars::python::detail::saved_state;

// The calling thread's innermost C++ call under calling_context.
[[gnu::tls_model("initial-exec")]] constinit thread_local saved_state* innermost = nullptr;

// Runs before every C++ set or reset of a context a guarded call writes (issue 18,
// bug 1). Python code the call ran (a callback) may have copied the calling task's
// stdlib context, sharing its Binding; the write must not reach those copies, so
// the Binding is frozen first, as writable() does for a write from Python. Without
// the GIL, a racy look at the path to the Binding decides whether the GIL is needed.
void before_cpp_write(ctxvars::detail::context_impl* impl) {
  saved_state* s = innermost;
  while (s && s->context != impl) s = s->outer;
  if (!s) return;  // a write by another thread, or outside any guarded call
  auto* here = static_cast<PyObject*>(s->stdlib_context);
  const bool have_gil = this_thread_holds_gil();
  if (!have_gil && !cpp_writes_need_a_freeze(here, impl)) return;
  PyGILState_STATE g{};
  if (!have_gil) g = PyGILState_Ensure();
  try {
    if (PyThreadState_Get()->context == here) freeze_for_cpp_write(impl);
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("ctxvars: freezing a context before a C++ write");
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_MemoryError, e.what());
    PyErr_WriteUnraisable(nullptr);
  }
  if (!have_gil) PyGILState_Release(g);
}

int api_enter(saved_state* s) noexcept {
  try {
    ctxvars::context& c = writable();
    ctxvars::detail::context_impl* impl = ctxvars::detail::context_access::impl(c);
    ctxvars::detail::thread_state& st = ctxvars::detail::this_thread_state();
    impl->retain();
    s->context = impl;
    s->stdlib_context = PyThreadState_Get()->context;
    s->outer = innermost;
    s->outer_hook = reinterpret_cast<void (*)()>(impl->before_write.load(std::memory_order_relaxed));
    impl->before_write.store(&before_cpp_write, std::memory_order_relaxed);
    innermost = s;
    s->switched = st.current != impl;
    if (s->switched) {
      const ctxvars::detail::switch_record r = ctxvars::detail::switch_to(st, impl);
      s->previous = r.prev;
      s->previous_version = r.prev_version;
    }
    return 0;
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return -1;
}

void api_leave(saved_state* s) noexcept {
  auto* impl = static_cast<ctxvars::detail::context_impl*>(s->context);
  if (s->switched)
    ctxvars::detail::switch_back(ctxvars::detail::this_thread_state(), impl,
                                 {static_cast<ctxvars::detail::context_impl*>(s->previous), s->previous_version});
  innermost = s->outer;
  // release: may run without the GIL; the next reader that sees no hook (and so skips
  // the writer lock, context_impl::needs_lock) sees every write made under it.
  impl->before_write.store(reinterpret_cast<ctxvars::detail::context_impl::write_hook>(s->outer_hook),
                           std::memory_order_release);
  impl->release();
}

}  // namespace

const ctxvars::python::detail::api_v1 the_api{2, &api_enter, &api_leave};

}  // namespace ctxvars_python
