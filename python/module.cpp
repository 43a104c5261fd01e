// The ctxvars Python module: Python's contextvars API (ContextVar, Context,
// Token, copy_context) implemented on the C++ core, plus hamt(), the project's
// trie over Python objects with the interface of CPython's _testcapi.hamt.
//
// One idea per file:
//   common.hpp          pyref (a PyObject reference released on any thread), py_entry
//   cpython_layout.hpp  CPython 3.11's context and HAMT layouts (read by the carrier)
//   carrier.hpp/.cpp    which ctxvars context is current: the Binding and its carrier
//   gc.hpp/.cpp         what the garbage collector sees of the core's entries
//   gc_state.hpp/.cpp   where CPython keeps its collector's state (internal headers)
//   contextvar.hpp/.cpp ContextVar and Token, with the hot get/set/reset
//   context.hpp/.cpp    Context and copy_context
//   bridge.hpp/.cpp     the C API for C++ extensions (<ctxvars/python.hpp>)
//   hamt.hpp/.cpp       hamt()
#include "bridge.hpp"
#include "carrier.hpp"
#include "common.hpp"
#include "context.hpp"
#include "contextvar.hpp"
#include "gc.hpp"
#include "gc_state.hpp"
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

void init_module(py::module_& m);

// The module itself, made once per process and handed out again on a later import.
PyObject* the_module = nullptr;

}  // namespace

// The module's init, written out instead of PYBIND11_MODULE so that subinterpreters are
// refused before pybind11 touches its process-wide internals (pybind11 2.10's
// get_internals hangs when a subinterpreter is the first to call it, and a type made
// in one interpreter must not be used or freed in another). The C++ core's state is
// per process too. m_size is 0, not -1: a subinterpreter importing after the main
// interpreter then calls this function again (with -1 CPython would hand it a copy
// of the main interpreter's module dict, with its types and carrier).
extern "C" PYBIND11_EXPORT PyObject* PyInit_ctxvars();
extern "C" PYBIND11_EXPORT PyObject* PyInit_ctxvars() {
  if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
    PyErr_SetString(PyExc_ImportError,
                    "ctxvars cannot be imported in a subinterpreter: it keeps one state per process "
                    "(import it in the main interpreter)");
    return nullptr;
  }
  if (the_module) return Py_NewRef(the_module);
  PYBIND11_CHECK_PYTHON_VERSION
  PYBIND11_ENSURE_INTERNALS_READY
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "ctxvars", nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr};
  PyObject* raw = PyModule_Create(&def);
  if (!raw) return nullptr;
  auto m = py::reinterpret_steal<py::module_>(raw);
  try {
    init_module(m);
    the_module = Py_NewRef(m.ptr());  // never released: the module's types and carrier live as long
    return m.release().ptr();
  }
  PYBIND11_CATCH_INIT_EXCEPTIONS
}

namespace {

void init_module(py::module_& m) {
  m.doc() = "Python's contextvars, implemented on the ctxvars C++ library";

  // ---- the carrier and the Binding type ----
  carrier = PyContextVar_New("ctxvars._binding", nullptr);
  if (!carrier) throw py::error_already_set();
  binding_type = make_binding_type();
  m.add_object("_Binding", reinterpret_cast<PyObject*>(binding_type));
  m.attr("_api_v2") = py::capsule(static_cast<const void*>(&the_api), "ctxvars._api_v2");

  add_contextvar_and_token(m);
  add_context(m);
  m.attr("__all__") = py::make_tuple("Context", "ContextVar", "Token", "copy_context");
  add_hamt(m);

  // The collector's state (gc.cpp), and what tests read of it.
  init_gc_support();
  gil_tss_key = find_gil_tss_key();
  m.def("_gc_info", [] {
    const gc_counters c = gc_info();
    py::dict d;
    d["collector_found"] = c.collector_found;
    d["exact_passes"] = c.exact_passes;
    d["conservative_traversals"] = c.conservative_traversals;
    d["out_of_memory"] = c.out_of_memory;
    d["gil_tss_key_found"] = gil_tss_key != nullptr;
    return d;
  });

  // Pickling and copying are refused with the stdlib's TypeError. (Without
  // this, pickle protocols 0 and 1 and __reduce__() reach pybind11's
  // constructor through copyreg and abort the interpreter.)
  for (const char* name : {"ContextVar", "_TokenMissing", "hamt", "_hamt_iterator"})
    refuse_pickling(m.attr(name));
}

}  // namespace
