// The ctxvars Python module: Python's contextvars API (ContextVar, Context,
// Token, copy_context) implemented on the C++ core, plus hamt(), the project's
// trie over Python objects with the interface of CPython's _testcapi.hamt.
//
// One idea per file:
//   common.hpp          pyref (a PyObject reference released on any thread), py_entry
//   cpython_layout.hpp  CPython 3.11's context and HAMT layouts (read by the carrier)
//   carrier.hpp/.cpp    which ctxvars context is current: the Binding and its carrier
//   gc.hpp/.cpp         what the garbage collector sees of the core's entries
//   contextvar.hpp/.cpp ContextVar and Token, with the hot get/set/reset
//   context.hpp/.cpp    Context and copy_context
//   bridge.hpp/.cpp     the C API for C++ extensions (<ctxvars/python.hpp>)
//   hamt.hpp/.cpp       hamt()
#include "bridge.hpp"
#include "carrier.hpp"
#include "common.hpp"
#include "context.hpp"
#include "contextvar.hpp"
#include "hamt.hpp"

namespace py = pybind11;
using namespace ctxvars_python;

namespace {

// Gives a pybind11 class CPython's refusal to pickle or copy an object of a C
// type: "cannot pickle 'Name' object" (the qualified type name from protocol 2
// on, as object.__reduce_ex__ says it).
void refuse_pickling(py::object type) {
  // Protocols 0 and 1 (and __reduce__) name the type by its __name__, later ones by tp_name.
  static constexpr auto refuse = [](py::handle self, int protocol) -> py::object {
    PyTypeObject* tp = Py_TYPE(self.ptr());
    if (protocol < 2)
      PyErr_Format(PyExc_TypeError, "cannot pickle '%U' object",
                   py::str(py::handle(reinterpret_cast<PyObject*>(tp)).attr("__name__")).ptr());
    else
      PyErr_Format(PyExc_TypeError, "cannot pickle '%s' object", tp->tp_name);
    throw py::error_already_set();
  };
  type.attr("__reduce_ex__") = py::cpp_function(refuse, py::is_method(type), py::arg("protocol"));
  type.attr("__reduce__") = py::cpp_function([](py::handle self) { return refuse(self, 0); }, py::is_method(type));
}

}  // namespace

PYBIND11_MODULE(ctxvars, m) {
  m.doc() = "Python's contextvars, implemented on the ctxvars C++ library";

  // ---- the carrier and the Binding type ----
  carrier = PyContextVar_New("ctxvars._binding", nullptr);
  if (!carrier) throw py::error_already_set();
  binding_type = make_binding_type();
  m.add_object("_Binding", reinterpret_cast<PyObject*>(binding_type));
  m.attr("_api_v1") = py::capsule(static_cast<const void*>(&the_api), "ctxvars._api_v1");

  add_contextvar_and_token(m);
  add_context(m);
  m.attr("__all__") = py::make_tuple("Context", "ContextVar", "Token", "copy_context");
  add_hamt(m);

  // Pickling and copying are refused with the stdlib's TypeError. (Without
  // this, pickle protocols 0 and 1 and __reduce__() reach pybind11's
  // constructor through copyreg and abort the interpreter.)
  for (const char* name : {"ContextVar", "_TokenMissing", "hamt", "_hamt_iterator"})
    refuse_pickling(m.attr(name));
}
