// The C API for C++ extensions (bridge.hpp): calling_context's enter and leave.
#include "bridge.hpp"

#include "carrier.hpp"

namespace ctxvars_python {

namespace {

int api_enter(ctxvars::python::detail::saved_state* s) noexcept {
  try {
    ctxvars::context& c = writable();
    ctxvars::detail::context_impl* impl = ctxvars::detail::context_access::impl(c);
    ctxvars::detail::thread_state& st = ctxvars::detail::this_thread_state();
    impl->retain();
    s->context = impl;
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

void api_leave(ctxvars::python::detail::saved_state* s) noexcept {
  auto* impl = static_cast<ctxvars::detail::context_impl*>(s->context);
  if (s->switched)
    ctxvars::detail::switch_back(ctxvars::detail::this_thread_state(), impl,
                                 {static_cast<ctxvars::detail::context_impl*>(s->previous), s->previous_version});
  impl->release();
}

}  // namespace

const ctxvars::python::detail::api_v1 the_api{1, &api_enter, &api_leave};

}  // namespace ctxvars_python
