// The garbage collector's view of what the core holds: the Python references a
// context's entries keep, and the box a core token keeps from the set it undoes.
// See "Garbage collection" in docs/python.md.
#pragma once

#include "common.hpp"

namespace ctxvars_python {

// The box a core token displaced (token<T>::old_box_, private to the core).
ctxvars::detail::box_ptr& token_old_box(ctxvars::token<py_entry>& t) noexcept;

// Visits the Python objects held by entries that only `c` holds.
int visit_context(const ctxvars::context& c, visitproc visit, void* arg);

}  // namespace ctxvars_python
