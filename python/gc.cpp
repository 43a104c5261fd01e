// The garbage collector's view of what the core holds (gc.hpp).
#include "gc.hpp"

namespace ctxvars_python {

// The collector must see the reference a token holds through the box its set displaced
// (token<T>::old_box_, private to the core). An explicit instantiation may name a
// private member ([temp.spec.general]/6): the usual way to reach it without editing
// the core's headers.
namespace {
template <auto Member>
struct private_member {
  friend auto old_box_of(ctxvars::token<py_entry>& t) noexcept -> ctxvars::detail::box_ptr& { return t.*Member; }
};
ctxvars::detail::box_ptr& old_box_of(ctxvars::token<py_entry>& t) noexcept;
template struct private_member<&ctxvars::token<py_entry>::old_box_>;
}  // namespace

ctxvars::detail::box_ptr& token_old_box(ctxvars::token<py_entry>& t) noexcept { return old_box_of(t); }

// Visits the Python objects held by entries that only `c` holds (see "Garbage
// collection" in docs/python.md).
int visit_context(const ctxvars::context& c, visitproc visit, void* arg) {
  auto* impl = ctxvars::detail::context_access::impl(c);
  if (impl->entered()) return 0;  // a running context is reachable anyway
  // Under the context's writer lock: C++ code inside calling_context may write this
  // context on a thread without the GIL (call_guard<calling_context,
  // gil_scoped_release>), replacing and freeing the layers, nodes and boxes walked
  // here (issue 18, bug 2).
  return impl->read_locked([&](const ctxvars::detail::context_map& map) -> int {
    return map.for_each_owned([&](const auto& e) -> int {
      const ctxvars::detail::box_base* b = e.value.get();
      if (b->refs.load(std::memory_order_acquire) != 1) return 0;
      if (*b->info->type != typeid(py_entry)) return 0;
      const py_entry& pe = ctxvars::detail::box_value<py_entry>(b);
      Py_VISIT(pe.var.get());
      Py_VISIT(pe.value.get());
      return 0;
    });
  });
}

}  // namespace ctxvars_python
