// ContextVar and Token: the variable (a pybind11 class whose hot methods get, set
// and reset are plain CPython methods) and the token set returns (a plain CPython
// type: one is created on every set).
#pragma once

#include "common.hpp"

namespace ctxvars_python {

// The name the C++ core keeps (for its own messages): UTF-8, lone surrogates escaped.
std::string utf8_name(PyObject* name);

struct ContextVar {
  ctxvars::context_var<py_entry> var;
  pyref name;      // the str (or str subclass) object given, kept as is
  pyref default_;  // null: no default

  ContextVar(pyref n, pyref d) : var(utf8_name(n.get())), name(std::move(n)), default_(std::move(d)) {}
};

struct Token {
  std::optional<ctxvars::token<py_entry>> tok;  // empty once cleared by the collector
  pyref var;  // the Python ContextVar
  pyref old;  // the old value, or Token.MISSING
  bool used() const noexcept { return !tok || tok->used(); }
};

inline PyTypeObject* contextvar_type = nullptr;

struct TokenObject {
  PyObject_HEAD
  Token t;
};
inline PyTypeObject* token_type = nullptr;
inline Token& token_of(PyObject* o) noexcept { return reinterpret_cast<TokenObject*>(o)->t; }

std::string contextvar_repr(const ContextVar& v, PyObject* self);
PyTypeObject* make_token_type();

// ContextVar's get, set and reset (vectorcall).
extern PyMethodDef var_get_def, var_set_def, var_reset_def;

// Adds ContextVar and Token (with Token.MISSING) to the module.
void add_contextvar_and_token(py::module_& m);

}  // namespace ctxvars_python
