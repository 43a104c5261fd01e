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

  // get's cache, as CPython's ContextVar keeps one: the value the last get found
  // (borrowed, null: no value), valid while the thread state, its stdlib context
  // version and the module's write version are those recorded (see write_version).
  PyObject* cached = nullptr;
  std::uint64_t cached_tsid = 0;
  std::uint64_t cached_tsver = 0;
  std::uint64_t cached_ver = 0;  // 0: nothing cached

  ContextVar(pyref n, pyref d) : var(utf8_name(n.get())), name(std::move(n)), default_(std::move(d)) {}
};

struct Token {
  std::optional<ctxvars::token<py_entry>> tok;  // empty once cleared by the collector
  pyref var;  // the Python ContextVar
  pyref old;  // the old value, or Token.MISSING
  bool used() const noexcept { return !tok || tok->used(); }
};

inline PyTypeObject* contextvar_type = nullptr;

// Advanced (under the GIL) by everything that may change what a variable's get returns
// in the current stdlib context without changing that context or its version: every
// set and reset from Python, and every binding of a ctxvars context in a stdlib
// context (the stdlib's own set of the carrier does not advance ts->context_ver). A
// value cached by get stays alive until then: only a write drops a box.
inline std::uint64_t write_version = 1;
inline void note_write() noexcept { ++write_version; }

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
