// ContextVar and Token (contextvar.hpp).
#include "contextvar.hpp"

#include "carrier.hpp"
#include "cpython_layout.hpp"
#include "gc.hpp"

#include <ctxvars/detail/var_access.hpp>

#include <optional>

namespace ctxvars_python {

// The name the C++ core keeps (for its own messages): UTF-8, lone surrogates escaped.
std::string utf8_name(PyObject* name) {
  PyObject* b = PyUnicode_AsEncodedString(name, "utf-8", "backslashreplace");
  if (!b) throw py::error_already_set();
  std::string s(PyBytes_AS_STRING(b), static_cast<std::size_t>(PyBytes_GET_SIZE(b)));
  Py_DECREF(b);
  return s;
}

namespace {

std::string token_repr(const Token& t, PyObject* self) {
  return std::string("<Token") + (t.used() ? " used" : "") + " var=" + repr_of(t.var.get()) + " at " +
         address_of(self) + ">";
}

}  // namespace

std::string contextvar_repr(const ContextVar& v, PyObject* self) {
  std::string r = "<ContextVar name=" + repr_of(v.name.get());
  if (v.default_.get()) {
    // Recursion guard: a default that contains the variable itself prints "...".
    const int rec = Py_ReprEnter(self);
    if (rec < 0) throw py::error_already_set();
    if (rec > 0) {
      r += " default=...";
    } else {
      try {
        r += " default=" + repr_of(v.default_.get());
      } catch (...) {
        Py_ReprLeave(self);
        throw;
      }
      Py_ReprLeave(self);
    }
  }
  return r + " at " + address_of(self) + ">";
}

PyTypeObject* make_token_type() {
  static PyGetSetDef getset[] = {
      {"var", [](PyObject* self, void*) -> PyObject* { return Py_NewRef(token_of(self).var.get()); }, nullptr,
       nullptr, nullptr},
      {"old_value", [](PyObject* self, void*) -> PyObject* { return Py_NewRef(token_of(self).old.get()); },
       nullptr, nullptr, nullptr},
      {nullptr, nullptr, nullptr, nullptr, nullptr}};
  static PyMethodDef methods[] = {
      {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, nullptr},
      {nullptr, nullptr, 0, nullptr}};
  static PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(+[](PyTypeObject*, PyObject*, PyObject*) -> PyObject* {
         PyErr_SetString(PyExc_RuntimeError, "Tokens can only be created by ContextVars");
         return nullptr;
       })},
      {Py_tp_dealloc, reinterpret_cast<void*>(+[](PyObject* self) {
         PyTypeObject* tp = Py_TYPE(self);
         PyObject_GC_UnTrack(self);
         Token& t = token_of(self);
         // A deallocator runs with the GIL: no check needed for the token's own references.
         Py_XDECREF(t.old.release());
         Py_XDECREF(t.var.release());
         t.~Token();
         tp->tp_free(self);
         Py_DECREF(tp);
       })},
      {Py_tp_traverse, reinterpret_cast<void*>(+[](PyObject* self, visitproc visit, void* arg) -> int {
         Py_VISIT(Py_TYPE(self));
         Token& t = token_of(self);
         Py_VISIT(t.var.get());
         Py_VISIT(t.old.get());
         // The token's own copy of the old entry, and the box its set displaced (gc.cpp).
         return t.tok ? traverse_token(self, *t.tok, visit, arg) : 0;
       })},
      {Py_tp_clear, reinterpret_cast<void*>(+[](PyObject* self) -> int {
         Token& t = token_of(self);
         std::optional<ctxvars::token<py_entry>> tok = std::move(t.tok);
         t.tok.reset();
         pyref var = std::move(t.var), old = std::move(t.old);
         return 0;
       })},
      {Py_tp_repr, reinterpret_cast<void*>(+[](PyObject* self) -> PyObject* {
         return guarded([&] { return PyUnicode_FromString(token_repr(token_of(self), self).c_str()); });
       })},
      {Py_tp_hash, reinterpret_cast<void*>(PyObject_HashNotImplemented)},
      {Py_tp_getset, getset},
      {Py_tp_methods, methods},
      {0, nullptr}};
  static PyType_Spec spec = {"ctxvars.Token", sizeof(TokenObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
                             slots};
  PyObject* t = PyType_FromSpec(&spec);
  if (!t) throw py::error_already_set();
  return reinterpret_cast<PyTypeObject*>(t);
}

namespace {


PyObject* var_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) noexcept {
  if (nargs > 1) {
    PyErr_Format(PyExc_TypeError, "get expected at most 1 argument, got %zd", nargs);
    return nullptr;
  }
  ContextVar& v = *built<ContextVar>(self);
  PyThreadState* ts = PyThreadState_Get();
  PyObject* found;
  if (v.cached_ver == write_version && v.cached_tsid == ts->id && v.cached_tsver == ts->context_ver) {
    found = v.cached;  // the cache: nothing changed since the last get
  } else {
    // The current stdlib context holds the Binding, and nothing here runs Python code
    // that could change that: no reference of our own needed.
    PyObject* bobj = nullptr;
    if (ts->context) {
      bobj = carrier_value(ts);
    } else {
      if (PyContextVar_Get(carrier, nullptr, &bobj) < 0) return nullptr;  // makes the context
      Py_XDECREF(bobj);
    }
    found = nullptr;
    if (bobj) {
      const Binding* b = binding_of(bobj);
      const auto id = v.var.id();
      if (owned_here(*b, ts->context)) {
        // Only this thread writes the context it owns: no snapshot needed.
        auto* impl = ctxvars::detail::context_access::impl(b->ctx);
        if (const ctxvars::detail::box_ptr* p = impl->map.find(id, id))
          found = ctxvars::detail::box_value<py_entry>(p->get()).value.get();
      } else {
        // Another stdlib context owns the Binding; it writes in place only while nobody
        // shares it (see carrier.hpp), so the box found stays alive until a write here
        // or there advances write_version.
        const ctxvars::detail::context_map m = ctxvars::detail::context_access::impl(b->ctx)->snapshot();
        if (const ctxvars::detail::box_ptr* p = m.find(id, id))
          found = ctxvars::detail::box_value<py_entry>(p->get()).value.get();
      }
    }
    // PyContextVar_Get may have created the thread's stdlib context: its version now.
    v.cached = found;
    v.cached_tsid = ts->id;
    v.cached_tsver = ts->context_ver;
    v.cached_ver = write_version;
  }
  if (found) return Py_NewRef(found);
  if (nargs == 1) return Py_NewRef(args[0]);
  if (v.default_.get()) return Py_NewRef(v.default_.get());
  PyErr_SetObject(PyExc_LookupError, self);
  return nullptr;
}

PyObject* var_set(PyObject* self, PyObject* value) noexcept {
  return guarded([&]() -> PyObject* {
    ContextVar& v = *built<ContextVar>(self);
    // The token's memory first: its allocation may run a collection, whose finalizers may
    // set variables. Nothing below allocates a Python object (writable() binds with
    // collections paused), so the set and its token see one state, and the token is
    // built in place.
    struct unbuilt {
      TokenObject* o;
      ~unbuilt() {
        if (o) {
          PyObject_GC_Del(o);
          Py_DECREF(token_type);  // PyObject_GC_New took a reference to the heap type
        }
      }
    } mem{PyObject_GC_New(TokenObject, token_type)};
    if (!mem.o) throw py::error_already_set();
    note_write();  // before anything changes: finalizers run below may cache what they read
    // The task's context is written without becoming the thread's current one.
    ctxvars::detail::context_impl* c = ctxvars::detail::context_access::impl(writable());
    auto t = ctxvars::detail::var_access::set_in(v.var, ctxvars::detail::this_thread_state(), c,
                                                 py_entry{pyref::borrow(self), pyref::borrow(value)});
    pyref old = t.old_value() ? t.old_value()->value : pyref::borrow(missing_sentinel);
    new (&mem.o->t) Token{std::move(t), pyref::borrow(self), std::move(old)};
    PyObject* o = reinterpret_cast<PyObject*>(std::exchange(mem.o, nullptr));
    PyObject_GC_Track(o);
    return o;
  });
}

// reset, with CPython's exact exception types and messages.
PyObject* var_reset(PyObject* self, PyObject* tok) noexcept {
  return guarded([&]() -> PyObject* {
    ContextVar& v = *built<ContextVar>(self);
    if (Py_TYPE(tok) != token_type) {
      PyErr_Format(PyExc_TypeError, "expected an instance of Token, got %R", tok);
      return nullptr;
    }
    Token& t = token_of(tok);
    if (t.used()) {
      PyErr_SetString(PyExc_RuntimeError, (token_repr(t, tok) + " has already been used once").c_str());
      return nullptr;
    }
    if (t.var.get() != self) {
      PyErr_SetString(PyExc_ValueError, (token_repr(t, tok) + " was created by a different ContextVar").c_str());
      return nullptr;
    }
    note_write();
    ctxvars::detail::context_impl* c = ctxvars::detail::context_access::impl(writable());
    try {
      ctxvars::detail::var_access::reset_in(v.var, ctxvars::detail::this_thread_state(), c, *t.tok);
    } catch (const ctxvars::foreign_token_error&) {
      PyErr_SetString(PyExc_ValueError, (token_repr(t, tok) + " was created in a different Context").c_str());
      return nullptr;
    }
    Py_RETURN_NONE;
  });
}

}  // namespace

PyMethodDef var_get_def = {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&var_get)),
                           METH_FASTCALL, nullptr};
PyMethodDef var_set_def = {"set", &var_set, METH_O, nullptr};
PyMethodDef var_reset_def = {"reset", &var_reset, METH_O, nullptr};

void add_contextvar_and_token(py::module_& m) {
  // ---- Token (a plain CPython type: created on every set, it must be cheap) ----
  token_type = make_token_type();
  m.add_object("Token", reinterpret_cast<PyObject*>(token_type));
  struct missing_t {};
  py::class_<missing_t>(m, "_TokenMissing", py::is_final())
      .def("__repr__", [](const missing_t&) { return "<Token.MISSING>"; });
  missing_sentinel = py::cast(missing_t{}).release().ptr();
  if (PyObject_SetAttrString(reinterpret_cast<PyObject*>(token_type), "MISSING", missing_sentinel) < 0)
    throw py::error_already_set();

  // ---- ContextVar ----
  py::class_<ContextVar> var(m, "ContextVar", py::is_final(), py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                               auto* type = &heap_type->ht_type;
                               type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                               type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) -> int {
                                 Py_VISIT(Py_TYPE(self));
                                 const ContextVar* v = built<ContextVar>(self);
                                 if (!v) return 0;
                                 Py_VISIT(v->name.get());
                                 Py_VISIT(v->default_.get());
                                 return 0;
                               };
                               type->tp_clear = [](PyObject* self) -> int {
                                 if (ContextVar* v = built<ContextVar>(self)) {
                                   pyref d = std::move(v->default_);
                                 }
                                 return 0;
                               };
                             }));
  var.def(py::init([](py::args args, py::kwargs kwargs) {
        // CPython's argument errors, in its order (PyArg_ParseTupleAndKeywords).
        if (const std::size_t total = args.size() + kwargs.size(); total > 2)
          throw py::type_error("ContextVar() takes at most 2 arguments (" + std::to_string(total) + " given)");
        if (args.size() > 1)
          throw py::type_error("ContextVar() takes at most 1 positional argument (" + std::to_string(args.size()) +
                               " given)");
        if (args.size() < 1) throw py::type_error("ContextVar() takes exactly 1 positional argument (0 given)");
        if (!PyUnicode_Check(args[0].ptr())) throw py::type_error("context variable name must be a str");
        pyref dflt;
        for (auto kv : kwargs) {
          if (kv.first.cast<std::string>() != "default")
            throw py::type_error("'" + kv.first.cast<std::string>() + "' is an invalid keyword argument for ContextVar()");
          dflt = pyref::borrow(kv.second);
        }
        return new ContextVar(pyref::borrow(args[0]), std::move(dflt));
      }))
      .def_property(
          "name", [](const ContextVar& v) { return v.name.object(); },
          [](py::object, py::object) -> void { throw py::attribute_error("readonly attribute"); })
      .def("__repr__", [](py::object self) { return contextvar_repr(*built<ContextVar>(self.ptr()), self.ptr()); });
  contextvar_type = reinterpret_cast<PyTypeObject*>(var.ptr());
  var.attr("__class_getitem__") = py::module_::import("builtins").attr("classmethod")(
      py::module_::import("types").attr("GenericAlias"));
  // get, set and reset: plain CPython methods (vectorcall), the hot path.
  for (PyMethodDef* d : {&var_get_def, &var_set_def, &var_reset_def}) {
    PyObject* descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(var.ptr()), d);
    if (!descr) throw py::error_already_set();
    var.attr(d->ml_name) = py::reinterpret_steal<py::object>(descr);
  }
}

}  // namespace ctxvars_python
