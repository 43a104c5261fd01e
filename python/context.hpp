// Context: a ctxvars context paired with the stdlib context it runs under (a plain
// CPython type), and copy_context.
#pragma once

#include "common.hpp"

namespace ctxvars_python {

// A ctxvars context paired with the stdlib context it runs under: `run` enters both,
// so that tasks and callbacks created inside copy a stdlib context bound to `ctx`.
struct Context {
  ctxvars::context ctx;
  // The stdlib context, or until run() first needs one the stdlib mapping (a HAMT) to
  // make it from (context.cpp, stdlib_of); null only after the collector cleared it.
  pyref stdlib;
};

struct ContextObject {
  PyObject_HEAD
  Context c;
  PyObject* weakrefs;
};
inline PyTypeObject* context_type = nullptr;
inline Context& context_of(PyObject* o) noexcept { return reinterpret_cast<ContextObject*>(o)->c; }

PyTypeObject* make_context_type();

// Adds Context and copy_context to the module.
void add_context(py::module_& m);

}  // namespace ctxvars_python
