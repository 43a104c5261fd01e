// Which ctxvars context is current: the carrier. How the module learns, through one
// stdlib ContextVar, which ctxvars context the running asyncio task, thread or
// Context.run writes to, and binds a copy on the first write.
#pragma once

#include "common.hpp"

namespace ctxvars_python {

// ---- Which ctxvars context is current: the carrier ------------------------------------
//
// Values live in ctxvars contexts. Python's own context machinery is used only to
// learn which one is current: one stdlib ContextVar, the carrier, holds a Binding —
// a handle to the ctxvars context of the running stdlib context. asyncio copies the
// stdlib context for every task and callback, so the copy shares the Binding; the
// first write in a stdlib context that does not own the Binding copies the ctxvars
// context (O(1)) and binds the copy in the current stdlib context (copy on first
// write). The owner writes in place while nobody shares its stdlib mapping; once a
// copy of its stdlib context exists (the mapping's reference count is above 1, or
// the mapping changed), its next write first freezes the shared Binding on a
// snapshot — exactly the state the copies were taken from — and binds its own
// context again under a fresh Binding, so the copies never see later writes.

struct Binding {
  ctxvars::context ctx;
  pyref owner;  // weak reference to the stdlib context whose writes go to ctx; null: frozen
  bool owns_ctx = true;  // no other handle names ctx (informative: the collector counts handles itself)
};

inline PyObject* carrier = nullptr;  // the stdlib ContextVar (never released)
inline PyTypeObject* binding_type = nullptr;

// Binding as a plain CPython type (one is made per task that writes).
struct BindingObject {
  PyObject_HEAD
  Binding b;
};
inline Binding* binding_of(PyObject* o) noexcept { return &reinterpret_cast<BindingObject*>(o)->b; }
PyTypeObject* make_binding_type();

inline PyObject* weak_target(const pyref& w) noexcept {
  return w.get() ? PyWeakref_GET_OBJECT(w.get()) : nullptr;
}
inline bool owned_here(const Binding& b, PyObject* stdlib_ctx) noexcept {
  return b.owner.get() && stdlib_ctx && weak_target(b.owner) == stdlib_ctx;
}

// The carrier's value (borrowed: a Binding) in the stdlib mapping `vars`, or nullptr;
// with `exclusive_path`, nullptr too unless every HAMT node on the way is held once.
PyObject* carrier_in(PyObject* vars, bool exclusive_path) noexcept;
// The carrier's value (borrowed) in the thread's current stdlib context (ts->context,
// not null): what PyContextVar_Get returns, through the carrier's own cache (which it
// fills as CPython does) without the call, and on a miss (after every context switch)
// a walk of the mapping instead of CPython's look-up.
PyObject* carrier_value(PyThreadState* ts) noexcept;

// The ctxvars context to read in the current stdlib context (null: none yet);
// `keep` holds the Binding alive.
const Binding* readable_binding(pyref& keep);


// Context.run binds a Context's ctxvars context in its stdlib context lazily, at
// the first write: until then, the Binding the stdlib context inherited shows
// exactly the Context's values (the Context was copied from it, and any write to
// it since would have frozen it first). The innermost run of this thread:
struct run_frame {
  PyObject* stdlib;
  const ctxvars::context* ctx;
  run_frame* prev;
};
[[gnu::tls_model("initial-exec")]] inline constinit thread_local run_frame* run_top = nullptr;

// The ctxvars context the current stdlib context writes to, bound on first write.
ctxvars::context& writable();

// For C++ writes under calling_context (bridge.cpp), which bypass writable(): true
// unless the Binding of `stdlib_ctx` (this thread's current stdlib context) holds
// `impl`, is owned there and reachable from there only. Needs no GIL.
bool cpp_writes_need_a_freeze(PyObject* stdlib_ctx, ctxvars::detail::context_impl* impl) noexcept;
// Needs the GIL. If the current Binding holds `impl` and others share it (Python code
// the C++ call ran copied the context), freezes it on a snapshot and binds `impl`
// afresh, as writable() does for the owner.
void freeze_for_cpp_write(ctxvars::detail::context_impl* impl);

// A copy of the current ctxvars context (copy_context()).
ctxvars::context copy_current();

// Makes `c` the calling thread's current ctxvars context for a scope. The thread
// owns the stdlib context bound to `c` (only it writes there), so no entering is
// needed: the switch only keeps the core's lookup cache coherent.
class current_scope {
 public:
  explicit current_scope(const ctxvars::context& c) noexcept
      : impl_(ctxvars::detail::context_access::impl(c)) {
    ctxvars::detail::thread_state& st = ctxvars::detail::this_thread_state();
    switched_ = st.current != impl_;
    if (switched_) rec_ = ctxvars::detail::switch_to(st, impl_);
  }
  current_scope(const current_scope&) = delete;
  current_scope& operator=(const current_scope&) = delete;
  ~current_scope() {
    if (switched_) ctxvars::detail::switch_back(ctxvars::detail::this_thread_state(), impl_, rec_);
  }

 private:
  ctxvars::detail::context_impl* impl_;
  ctxvars::detail::switch_record rec_{};
  bool switched_;
};

}  // namespace ctxvars_python
