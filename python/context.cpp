// Context and copy_context (context.hpp).
#include "context.hpp"

#include "carrier.hpp"
#include "contextvar.hpp"
#include "cpython_layout.hpp"
#include "gc.hpp"

#include <structmember.h>

#include <optional>
#include <utility>
#include <vector>

namespace ctxvars_python {

namespace {

// A new Context object (new reference) holding `c` (taken in, not copied: moving a
// handle would cost a locked increment and decrement) and the stdlib context `s`.
// Both are made by the caller before this allocates (PyObject_GC_New may run a
// collection, and finalizers may set variables).
PyObject* new_context(ctxvars::context c, pyref s) {
  gil_serialized(c);
  auto* o = PyObject_GC_New(ContextObject, context_type);
  if (!o) throw py::error_already_set();
  new (&o->c) Context{ctxvars::detail::context_access::take(c), std::move(s)};
  o->weakrefs = nullptr;
  PyObject_GC_Track(o);
  return reinterpret_cast<PyObject*>(o);
}

// A Context's stdlib context (borrowed; null after the collector cleared it). copy_context()
// and Context.copy() keep only the stdlib mapping they copied (an immutable HAMT, one
// reference: what a stdlib copy would share) in `stdlib`; the stdlib context itself is
// made from it here, when run() first needs it — most copies are never run.
PyObject* stdlib_of(Context& c) {
  PyObject* s = c.stdlib.get();
  if (!s || PyContext_CheckExact(s)) return s;
  pyref made;
  {
    // A collection in the allocation could run a finalizer that runs this very Context.
    const gc_paused no_collection;
    made = checked(PyContext_New());
  }
  PyObject*& vars = reinterpret_cast<stdlib_context_layout*>(made.get())->ctx_vars;
  Py_SETREF(vars, Py_NewRef(s));
  c.stdlib = std::move(made);  // releases our reference to the mapping
  return c.stdlib.get();
}

// The stdlib mapping a copy of `c` starts from (new reference; null if cleared).
pyref stdlib_mapping_of(const Context& c) {
  PyObject* s = c.stdlib.get();
  if (!s) return pyref();
  return pyref::borrow(PyContext_CheckExact(s) ? vars_of(s) : s);
}

// The (var, value) pairs of a context that Python variables put there.
// A Context seen from Python is the mapping of its Python variables: entries that
// C++ variables put there (through calling_context) have no ContextVar to be keyed
// by, and len, iteration, keys/values/items, `in` and == all leave them out.
std::size_t python_size(const ctxvars::context& c) {
  std::size_t n = 0;
  for (auto e : c)
    if (e.get_if<py_entry>()) ++n;
  return n;
}

std::vector<std::pair<py::object, py::object>> items_of(const ctxvars::context& c) {
  std::vector<std::pair<py::object, py::object>> out;
  for (auto e : c)
    if (const py_entry* p = e.get_if<py_entry>()) out.emplace_back(p->var.object(), p->value.object());
  return out;
}


// Context.run(callable, *args, **kwargs): enters the ctxvars context and its stdlib
// context, binds the one to the other, and calls.
PyObject* context_run(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) noexcept {
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError, "run() missing 1 required positional argument");
    return nullptr;
  }
  return guarded([&]() -> PyObject* {
    Context& c = context_of(self);
    PyObject* s = stdlib_of(c);
    if (!s) {
      PyErr_SetString(PyExc_TypeError, "this Context was cleared by the garbage collector");
      return nullptr;
    }
    std::optional<ctxvars::detail::enter_scope> entered;
    try {
      entered.emplace(ctxvars::detail::context_access::impl(c.ctx));
    } catch (const ctxvars::context_in_use_error&) {
      PyErr_SetString(PyExc_RuntimeError,
                      ("cannot enter context: " + repr_of(self) + " is already entered").c_str());
      return nullptr;
    }
    if (PyContext_Enter(s) < 0) return nullptr;
    run_frame frame{s, &c.ctx, run_top};
    run_top = &frame;
    PyObject* result = PyObject_Vectorcall(args[0], args + 1, static_cast<size_t>(nargs - 1), kwnames);
    run_top = frame.prev;
    if (CTXVARS_LIKELY(result != nullptr)) {
      if (PyContext_Exit(s) < 0) Py_CLEAR(result);
      return result;
    }
    // Keep the exception raised by the call across the exit.
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyContext_Exit(s);
    PyErr_Restore(et, ev, tb);
    return result;
  });
}

ContextVar* key_var(PyObject* key) {
  if (!PyObject_TypeCheck(key, contextvar_type)) {
    PyErr_Format(PyExc_TypeError, "a ContextVar key was expected, got %R", key);
    throw py::error_already_set();
  }
  return built<ContextVar>(key);
}

PyObject* context_list(PyObject* self, int what) {
  return guarded([&]() -> PyObject* {
    py::list out;
    for (auto& [k, v] : items_of(context_of(self).ctx)) {
      if (what == 0) out.append(k);
      else if (what == 1) out.append(v);
      else out.append(py::make_tuple(k, v));
    }
    return out.release().ptr();
  });
}

}  // namespace

PyTypeObject* make_context_type() {
  static PyMethodDef methods[] = {
      {"run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&context_run)), METH_FASTCALL | METH_KEYWORDS,
       nullptr},
      {"copy", +[](PyObject* self, PyObject*) -> PyObject* {
         return guarded([&]() -> PyObject* {
           Context& c = context_of(self);
           if (!c.stdlib.get()) {
             PyErr_SetString(PyExc_TypeError, "this Context was cleared by the garbage collector");
             return nullptr;
           }
           pyref s = stdlib_mapping_of(c);
           return new_context(c.ctx.copy(), std::move(s));
         });
       },
       METH_NOARGS, nullptr},
      {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                  +[](PyObject* self, PyObject* const* args, Py_ssize_t nargs) -> PyObject* {
                    if (nargs < 1) {
                      PyErr_Format(PyExc_TypeError, "get expected at least 1 argument, got %zd", nargs);
                      return nullptr;
                    }
                    if (nargs > 2) {
                      PyErr_Format(PyExc_TypeError, "get expected at most 2 arguments, got %zd", nargs);
                      return nullptr;
                    }
                    return guarded([&]() -> PyObject* {
                      ContextVar* v = key_var(args[0]);
                      if (auto e = context_of(self).ctx.get(v->var)) return Py_NewRef(e->value.get());
                      return Py_NewRef(nargs == 2 ? args[1] : Py_None);
                    });
                  })),
       METH_FASTCALL, nullptr},
      {"keys", +[](PyObject* self, PyObject*) { return context_list(self, 0); }, METH_NOARGS, nullptr},
      {"values", +[](PyObject* self, PyObject*) { return context_list(self, 1); }, METH_NOARGS, nullptr},
      {"items", +[](PyObject* self, PyObject*) { return context_list(self, 2); }, METH_NOARGS, nullptr},
      {nullptr, nullptr, 0, nullptr}};
  static PyMemberDef members[] = {
      {"__weaklistoffset__", T_PYSSIZET, offsetof(ContextObject, weakrefs), READONLY, nullptr},
      {nullptr, 0, 0, 0, nullptr}};
  static PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(+[](PyTypeObject*, PyObject* args, PyObject* kw) -> PyObject* {
         if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
           PyErr_SetString(PyExc_TypeError, "Context() does not accept any arguments");
           return nullptr;
         }
         return guarded([] {
           pyref s = checked(PyContext_New());
           return new_context(ctxvars::context(), std::move(s));
         });
       })},
      {Py_tp_dealloc, reinterpret_cast<void*>(+[](PyObject* self) {
         PyTypeObject* tp = Py_TYPE(self);
         PyObject_GC_UnTrack(self);
         if (reinterpret_cast<ContextObject*>(self)->weakrefs) PyObject_ClearWeakRefs(self);
         context_of(self).~Context();
         tp->tp_free(self);
         Py_DECREF(tp);
       })},
      {Py_tp_traverse, reinterpret_cast<void*>(+[](PyObject* self, visitproc visit, void* arg) -> int {
         Py_VISIT(Py_TYPE(self));
         const Context& c = context_of(self);
         Py_VISIT(c.stdlib.get());
         return traverse_context(self, c.ctx, visit, arg);
       })},
      {Py_tp_clear, reinterpret_cast<void*>(+[](PyObject* self) -> int {
         Context& c = context_of(self);
         ctxvars::context dropped = c.ctx;
         c.ctx = ctxvars::context();
         pyref s = std::move(c.stdlib);
         return 0;
       })},
      {Py_mp_subscript, reinterpret_cast<void*>(+[](PyObject* self, PyObject* key) -> PyObject* {
         return guarded([&]() -> PyObject* {
           ContextVar* v = key_var(key);
           if (auto e = context_of(self).ctx.get(v->var)) return Py_NewRef(e->value.get());
           PyErr_SetObject(PyExc_KeyError, key);
           return nullptr;
         });
       })},
      {Py_sq_contains, reinterpret_cast<void*>(+[](PyObject* self, PyObject* key) -> int {
         try {
           return context_of(self).ctx.contains(key_var(key)->var) ? 1 : 0;
         } catch (py::error_already_set& e) {
           e.restore();
           return -1;
         }
       })},
      {Py_mp_length, reinterpret_cast<void*>(+[](PyObject* self) -> Py_ssize_t {
         // O(n): the C++ entries are counted out (see python_size).
         return static_cast<Py_ssize_t>(python_size(context_of(self).ctx));
       })},
      {Py_tp_iter, reinterpret_cast<void*>(+[](PyObject* self) -> PyObject* {
         PyObject* keys = context_list(self, 0);
         if (!keys) return nullptr;
         PyObject* it = PyObject_GetIter(keys);
         Py_DECREF(keys);
         return it;
       })},
      {Py_tp_richcompare, reinterpret_cast<void*>(+[](PyObject* a, PyObject* b, int op) -> PyObject* {
         if ((op != Py_EQ && op != Py_NE) || Py_TYPE(b) != context_type) Py_RETURN_NOTIMPLEMENTED;
         return guarded([&]() -> PyObject* {
           const Context& x = context_of(a);
           const Context& y = context_of(b);
           bool eq = true;
           if (!(x.ctx == y.ctx)) {
             auto ix = items_of(x.ctx);
             if (ix.size() != python_size(y.ctx)) eq = false;
             for (std::size_t i = 0; eq && i < ix.size(); ++i) {
               auto e = y.ctx.get(built<ContextVar>(ix[i].first.ptr())->var);
               if (!e) {
                 eq = false;
                 break;
               }
               const int r = PyObject_RichCompareBool(ix[i].second.ptr(), e->value.get(), Py_EQ);
               if (r < 0) return nullptr;
               eq = r != 0;
             }
           }
           return Py_NewRef((eq == (op == Py_EQ)) ? Py_True : Py_False);
         });
       })},
      {Py_tp_hash, reinterpret_cast<void*>(PyObject_HashNotImplemented)},
      {Py_tp_methods, methods},
      {Py_tp_members, members},
      {0, nullptr}};
  static PyType_Spec spec = {"ctxvars.Context", sizeof(ContextObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
                             slots};
  PyObject* t = PyType_FromSpec(&spec);
  if (!t) throw py::error_already_set();
  return reinterpret_cast<PyTypeObject*>(t);
}

void add_context(py::module_& m) {
  // ---- Context (a plain CPython type) and copy_context ----
  context_type = make_context_type();
  m.add_object("Context", reinterpret_cast<PyObject*>(context_type));
  static PyMethodDef copy_context_def = {
      "copy_context", +[](PyObject*, PyObject*) -> PyObject* {
        return guarded([] {
          // The stdlib mapping first, then our copy, both before the Context is allocated
          // (nothing between them allocates a Python object: no finalizer can run). The
          // stdlib context is made from the mapping when run() needs it (stdlib_of).
          PyThreadState* ts = PyThreadState_Get();
          pyref s = ts->context ? pyref::borrow(vars_of(ts->context)) : checked(PyContext_CopyCurrent());
          return new_context(copy_current(), std::move(s));
        });
      },
      METH_NOARGS, nullptr};
  // Bound to no object, with the module's name (not the module itself), so that its own
  // errors read "ctxvars.copy_context() takes no arguments", as the stdlib's do.
  m.add_object("copy_context",
               py::reinterpret_steal<py::object>(PyCFunction_NewEx(&copy_context_def, nullptr, py::str("ctxvars").ptr())));
}

}  // namespace ctxvars_python
