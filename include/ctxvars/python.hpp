// ctxvars for C++ extension modules called from Python (pybind11).
//
// A C++ library that keeps its state in ctxvars::context_var<T> (a logger's request
// id, a tracing span) sees, when called from Python, the values of the asyncio task
// (or thread, or Context.run) that called it, and what it sets stays in that task's
// context — provided each entry point runs under `calling_context`:
//
//   m.def("log", &log, py::call_guard<ctxvars::python::calling_context>());
//
// and the extension links `ctxvars::shared` (libctxvars_shared.so), the one core the
// `ctxvars` Python module uses too (two static copies of the core would each keep
// their own current context per thread).
//
// `expose(m, "request_id", var)` additionally makes a C++ variable readable and
// settable from Python with ContextVar's get/set/reset, in the same contexts.
//
// Cost (docs/python.md): entering is one look-up of the stdlib carrier variable and
// one switch of the thread's current context (no allocation once the task has
// written); the first call in a task binds a copy of its context (one allocation).
// Inside, get() is the core's cached read; in a shared library each access to the
// thread's state goes through __tls_get_addr.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::optional<T> for get(default), and most T's conversions

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "ctxvars.hpp"

namespace ctxvars::python {

namespace detail {
// What entering saved, to leave again. Filled and read only by the module.
struct saved_state {
  void* context;  // the entered context (one reference held)
  void* previous;
  std::uint64_t previous_version;
  bool switched;
  void* stdlib_context;  // the calling task's stdlib context (borrowed: current throughout)
  saved_state* outer;    // the calling thread's enclosing call, if any
  void (*outer_hook)();  // the context's write hook before this call
};
// The module's C API, published as the capsule `ctxvars._api_v2` (version 2: saved_state
// grew; an extension built against version 1 fails to import instead of corrupting it).
struct api_v1 {
  std::uint32_t version;  // 2
  // Makes the calling Python task's ctxvars context current on this thread (binding
  // a copy first if the task has none of its own). Needs the GIL. 0, or -1 with a
  // Python exception set.
  int (*enter)(saved_state*) noexcept;
  // Undoes enter. Does not need the GIL.
  void (*leave)(saved_state*) noexcept;
};
inline const api_v1& api() {
  static const api_v1* const p = [] {
    auto* a = static_cast<const api_v1*>(PyCapsule_Import("ctxvars._api_v2", 0));
    if (!a) {
      // PyCapsule_Import's own message names neither the cause nor the cure.
      PyObject *type, *value, *tb;
      PyErr_Fetch(&type, &value, &tb);
      PyErr_NormalizeException(&type, &value, &tb);
      PyErr_Format(PyExc_ImportError,
                   "this extension uses ctxvars::python, which needs the `ctxvars` Python module: "
                   "install it (pip install <ctxvars source folder>, or cmake --install with "
                   "CTXVARS_WITH_PYTHON=ON) or put its build folder on PYTHONPATH (%S)",
                   value ? value : Py_None);
      Py_XDECREF(type);
      Py_XDECREF(value);
      Py_XDECREF(tb);
      throw pybind11::error_already_set();
    }
    return a;
  }();
  return *p;
}
}  // namespace detail

// RAII: for its lifetime, the calling Python task's context is this thread's current
// ctxvars context. Construct it with the GIL held (pybind11 call guards do); it may
// be destroyed with or without the GIL. Throws pybind11::error_already_set if the
// `ctxvars` module cannot be imported. Put it before gil_scoped_release in a
// call_guard: py::call_guard<calling_context, py::gil_scoped_release>().
class calling_context {
 public:
  calling_context() {
    if (detail::api().enter(&s_) < 0) throw pybind11::error_already_set();
  }
  calling_context(const calling_context&) = delete;
  calling_context& operator=(const calling_context&) = delete;
  ~calling_context() { detail::api().leave(&s_); }

 private:
  detail::saved_state s_{};
};

// A C++ variable seen from Python, with ContextVar's get/set/reset (see expose).
template <class T>
class exposed_var {
 public:
  explicit exposed_var(context_var<T>& v) noexcept : var_(&v) {}
  context_var<T>& var() const noexcept { return *var_; }

 private:
  context_var<T>* var_;
};

// Adds `name` to module m: an object whose get([default]), set(value) and
// reset(token) act on `var` in the calling task's context, converting T with
// pybind11. `var` must outlive the module (a namespace-scope variable).
// Errors are Python's: LookupError (no value, no default), ValueError (a token of
// another context), RuntimeError (a token used twice).
template <class T>
pybind11::object expose(pybind11::module_& m, const char* name, context_var<T>& var) {
  namespace py = pybind11;
  using token_t = ctxvars::token<T>;
  // The two classes are registered once per T for the whole process: pybind11 keeps
  // one registry for every extension, so a second variable of the same T (here or in
  // another extension) reuses them. Names come from the first variable exposed.
  const std::string type_name = std::string("_") + name + "_var";
  if (!py::detail::get_type_info(typeid(token_t)))
    py::class_<token_t>(m, (type_name + "_token").c_str()).def_property_readonly("used", &token_t::used);
  if (!py::detail::get_type_info(typeid(exposed_var<T>)))
    py::class_<exposed_var<T>>(m, type_name.c_str())
        .def_property_readonly("name", [](const exposed_var<T>& e) { return std::string(e.var().name()); })
        .def(
            "get",
            [](const exposed_var<T>& e, std::optional<T> fallback) -> T {
              calling_context here;
              if (fallback) return e.var().get(std::move(*fallback));
              std::optional<T> v = e.var().try_get();
              if (!v) {
                PyErr_SetString(PyExc_LookupError, std::string(e.var().name()).c_str());
                throw py::error_already_set();
              }
              return std::move(*v);
            },
            py::arg("default") = py::none())
        .def("set",
             [](exposed_var<T>& e, T value) {
               calling_context here;
               return e.var().set(std::move(value));
             })
        .def("reset", [](exposed_var<T>& e, token_t& t) {
          calling_context here;
          try {
            e.var().reset(t);
          } catch (const used_token_error& x) {
            PyErr_SetString(PyExc_RuntimeError, x.what());
            throw py::error_already_set();
          } catch (const foreign_token_error& x) {
            throw py::value_error(x.what());
          }
        });
  py::object obj = py::cast(exposed_var<T>(var));
  m.attr(name) = obj;
  return obj;
}

}  // namespace ctxvars::python
