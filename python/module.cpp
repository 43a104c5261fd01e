// The ctxvars Python module: Python's contextvars API (ContextVar, Context,
// Token, copy_context) implemented on the C++ core, plus hamt(), the project's
// trie over Python objects with the interface of CPython's _testcapi.hamt.
#include <pybind11/pybind11.h>

#include <ctxvars/ctxvars.hpp>
#include <ctxvars/detail/hamt/trie.hpp>

#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

// An owned PyObject reference. Copies and destruction may happen where the
// C++ core copies or drops values: copies always under the GIL (inside calls
// from Python); a destruction at thread exit takes the GIL if the interpreter
// is still alive, and otherwise leaks the reference (nothing left to free it).
class pyref {
 public:
  pyref() noexcept = default;
  static pyref borrow(PyObject* o) noexcept {
    Py_XINCREF(o);
    return pyref(o);
  }
  static pyref borrow(const py::handle& h) noexcept { return borrow(h.ptr()); }
  pyref(const pyref& o) noexcept : p_(o.p_) { Py_XINCREF(p_); }
  pyref(pyref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  pyref& operator=(pyref o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~pyref() { drop(p_); }
  PyObject* get() const noexcept { return p_; }
  py::object object() const { return py::reinterpret_borrow<py::object>(p_); }

 private:
  explicit pyref(PyObject* o) noexcept : p_(o) {}
  static void drop(PyObject* o) noexcept {
    // After finalisation (a thread-exit or static destructor) there is no
    // interpreter to give the reference back to.
    if (!o || !Py_IsInitialized()) return;
    if (PyGILState_Check()) {
      Py_DECREF(o);
    } else if (Py_IsInitialized() && !_Py_IsFinalizing()) {
      PyGILState_STATE s = PyGILState_Ensure();
      Py_DECREF(o);
      PyGILState_Release(s);
    }
  }
  PyObject* p_ = nullptr;
};

// What a context holds for a Python variable: the ContextVar object (the key
// Python code iterates over) and the value.
struct py_entry {
  pyref var;
  pyref value;
};

// Token.MISSING; deliberately never released (it must outlive every token,
// including those destroyed after the interpreter finalised).
PyObject* missing_sentinel = nullptr;

std::string repr_of(PyObject* o) {
  return py::str(py::repr(py::handle(o))).cast<std::string>();
}
std::string address_of(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

// ---- ContextVar / Token --------------------------------------------------------------

struct ContextVar {
  ctxvars::context_var<py_entry> var;
  std::string name;
  pyref default_;  // null: no default
  PyObject* self = nullptr;  // the Python object wrapping this (borrowed)

  ContextVar(std::string n, pyref d) : var(n), name(std::move(n)), default_(std::move(d)) {}
};

struct Token {
  ctxvars::token<py_entry> tok;
  pyref var;  // the Python ContextVar
  pyref old;  // the old value, or Token.MISSING
};

std::string contextvar_repr(const ContextVar& v) {
  std::string r = "<ContextVar name=" + repr_of(py::str(v.name).ptr());
  if (v.default_.get()) {
    // Recursion guard: a default that contains the variable itself prints "...".
    const int rec = Py_ReprEnter(v.self);
    if (rec < 0) throw py::error_already_set();
    if (rec > 0) {
      r += " default=...";
    } else {
      try {
        r += " default=" + repr_of(v.default_.get());
      } catch (...) {
        Py_ReprLeave(v.self);
        throw;
      }
      Py_ReprLeave(v.self);
    }
  }
  return r + " at " + address_of(v.self) + ">";
}

std::string token_repr(const Token& t, PyObject* self) {
  return std::string("<Token") + (t.tok.used() ? " used" : "") + " var=" + repr_of(t.var.get()) + " at " +
         address_of(self) + ">";
}

ContextVar& as_var(py::handle key) {
  if (!py::isinstance<ContextVar>(key))
    throw py::type_error("a ContextVar key was expected, got " + repr_of(key.ptr()));
  return key.cast<ContextVar&>();
}

// ---- Context --------------------------------------------------------------------------

struct Context {
  ctxvars::context ctx;
};

// The (var, value) pairs of a context that Python variables put there.
std::vector<std::pair<py::object, py::object>> items_of(const ctxvars::context& c) {
  std::vector<std::pair<py::object, py::object>> out;
  for (auto e : c)
    if (const py_entry* p = e.get_if<py_entry>()) out.emplace_back(p->var.object(), p->value.object());
  return out;
}

// ---- hamt ----------------------------------------------------------------------------

struct py_hash {
  std::size_t operator()(const pyref& k) const {
    const Py_hash_t h = PyObject_Hash(k.get());
    if (h == -1 && PyErr_Occurred()) throw py::error_already_set();
    return static_cast<std::size_t>(h);
  }
};
struct py_eq {
  bool operator()(const pyref& a, const pyref& b) const {
    if (a.get() == b.get()) return true;
    const int r = PyObject_RichCompareBool(a.get(), b.get(), Py_EQ);
    if (r < 0) throw py::error_already_set();
    return r != 0;
  }
};
using py_trie = ctxvars::detail::hamt::trie<pyref, pyref, py_hash, py_eq, 5>;

struct Hamt {
  py_trie t;
};

// Iterator over a snapshot of a hamt; also sized, like CPython's hamt views.
struct HamtIter {
  enum class mode { keys, values, items };
  py_trie snap;
  py_trie::iterator it;
  mode m;
  HamtIter(py_trie s, mode md) : snap(std::move(s)), it(snap.begin()), m(md) {}
  HamtIter(const HamtIter&) = delete;
  HamtIter(HamtIter&&) noexcept = default;  // the iterator points into nodes the snapshot keeps
};

py::object hamt_next(HamtIter& i) {
  if (i.it == i.snap.end()) throw py::stop_iteration();
  const auto& e = *i.it;
  ++i.it;
  switch (i.m) {
    case HamtIter::mode::keys:
      return e.key.object();
    case HamtIter::mode::values:
      return e.value.object();
    default:
      return py::make_tuple(e.key.object(), e.value.object());
  }
}

bool hamt_equal(const py_trie& a, const py_trie& b) {
  if (a.identical(b)) return true;
  if (a.size() != b.size()) return false;
  for (const auto& e : a) {
    const pyref* other = b.find(e.key, e.hash);
    if (!other) return false;
    const int r = PyObject_RichCompareBool(e.value.get(), other->get(), Py_EQ);
    if (r < 0) throw py::error_already_set();
    if (!r) return false;
  }
  return true;
}

}  // namespace

PYBIND11_MODULE(ctxvars, m) {
  m.doc() = "Python's contextvars, implemented on the ctxvars C++ library";

  // ---- Token ----
  py::class_<Token> token(m, "Token", py::is_final());
  struct missing_t {};
  py::class_<missing_t>(token, "_Missing", py::is_final())
      .def("__repr__", [](const missing_t&) { return "<Token.MISSING>"; });
  missing_sentinel = py::cast(missing_t{}).release().ptr();
  token.attr("MISSING") = py::handle(missing_sentinel);
  token.def_property_readonly("var", [](const Token& t) { return t.var.object(); })
      .def_property_readonly("old_value", [](const Token& t) { return t.old.object(); })
      .def("__repr__", [](py::object self) { return token_repr(self.cast<const Token&>(), self.ptr()); });
  token.attr("__class_getitem__") = py::module_::import("builtins").attr("classmethod")(
      py::module_::import("types").attr("GenericAlias"));

  // ---- ContextVar ----
  py::class_<ContextVar> var(m, "ContextVar", py::is_final());
  var.def(py::init([](py::args args, py::kwargs kwargs) {
        if (args.size() != 1)
          throw py::type_error("ContextVar() takes exactly 1 positional argument (" +
                               std::to_string(args.size()) + " given)");
        if (!py::isinstance<py::str>(args[0])) throw py::type_error("context variable name must be a str");
        pyref dflt;
        for (auto kv : kwargs) {
          if (kv.first.cast<std::string>() != "default")
            throw py::type_error("'" + kv.first.cast<std::string>() + "' is an invalid keyword argument for ContextVar()");
          dflt = pyref::borrow(kv.second);
        }
        return new ContextVar(args[0].cast<std::string>(), std::move(dflt));
      }))
      .def_property_readonly("name", [](const ContextVar& v) { return v.name; })
      .def("get",
           [](py::object self, py::args args) -> py::object {
             ContextVar& v = self.cast<ContextVar&>();
             if (args.size() > 1) throw py::type_error("get expected at most 1 argument, got " + std::to_string(args.size()));
             if (const py_entry* e = v.var.peek()) return e->value.object();
             if (args.size() == 1) return py::reinterpret_borrow<py::object>(args[0]);
             if (v.default_.get()) return v.default_.object();
             PyErr_SetObject(PyExc_LookupError, self.ptr());
             throw py::error_already_set();
           })
      .def("set",
           [](py::object self, py::object value) {
             ContextVar& v = self.cast<ContextVar&>();
             auto t = v.var.set(py_entry{pyref::borrow(self), pyref::borrow(value)});
             pyref old = t.old_value() ? t.old_value()->value : pyref::borrow(missing_sentinel);
             return Token{std::move(t), pyref::borrow(self), std::move(old)};
           })
      .def("__repr__", [](py::object self) {
        ContextVar& v = self.cast<ContextVar&>();
        v.self = self.ptr();
        return contextvar_repr(v);
      });
  var.attr("__class_getitem__") = py::module_::import("builtins").attr("classmethod")(
      py::module_::import("types").attr("GenericAlias"));
  // reset, with CPython's exact exception types and messages.
  var.attr("reset") = py::cpp_function(
      [](py::object self, py::object tok) {
        ContextVar& v = self.cast<ContextVar&>();
        if (!py::isinstance<Token>(tok))
          throw py::type_error("expected an instance of Token, got '" + std::string(Py_TYPE(tok.ptr())->tp_name) +
                               "'");
        Token& t = tok.cast<Token&>();
        if (t.tok.used()) {
          PyErr_SetString(PyExc_RuntimeError, (token_repr(t, tok.ptr()) + " has already been used once").c_str());
          throw py::error_already_set();
        }
        if (t.var.get() != self.ptr())
          throw py::value_error(token_repr(t, tok.ptr()) + " was created by a different ContextVar");
        try {
          v.var.reset(t.tok);
        } catch (const ctxvars::foreign_token_error&) {
          throw py::value_error(token_repr(t, tok.ptr()) + " was created in a different Context");
        }
      },
      py::name("reset"), py::is_method(var), py::arg("token"));

  // ---- Context ----
  // Garbage collection, as for hamt: the entries only this context holds (in
  // nodes and boxes nobody else shares) are reported as its references.
  py::class_<Context> context(m, "Context", py::is_final(), py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                                auto* type = &heap_type->ht_type;
                                type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                                type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) -> int {
                                  auto& c = py::cast<Context&>(py::handle(self));
                                  auto* impl = ctxvars::detail::context_access::impl(c.ctx);
                                  if (impl->entered()) return 0;  // a running context is reachable anyway
                                  return impl->map.for_each_owned([&](const auto& e) -> int {
                                    const ctxvars::detail::box_base* b = e.value.get();
                                    if (b->refs.load(std::memory_order_acquire) != 1) return 0;
                                    if (*b->info->type != typeid(py_entry)) return 0;
                                    const py_entry& pe = ctxvars::detail::box_value<py_entry>(b);
                                    Py_VISIT(pe.var.get());
                                    Py_VISIT(pe.value.get());
                                    return 0;
                                  });
                                };
                                type->tp_clear = [](PyObject* self) -> int {
                                  auto& c = py::cast<Context&>(py::handle(self));
                                  ctxvars::context dropped = c.ctx;
                                  c.ctx = ctxvars::context();
                                  return 0;
                                };
                              }));
  context
      .def(py::init([](py::args args, py::kwargs kwargs) {
        if (args.size() || kwargs.size()) throw py::type_error("Context() does not accept any arguments");
        return new Context{ctxvars::context()};
      }))
      .def("run",
           [](py::object self, py::args args, py::kwargs kwargs) -> py::object {
             Context& c = self.cast<Context&>();
             if (args.size() == 0) throw py::type_error("run() missing 1 required positional argument");
             py::object fn = args[0];
             py::tuple rest(args.size() - 1);
             for (std::size_t i = 1; i < args.size(); ++i) rest[i - 1] = args[i];
             try {
               return c.ctx.run([&] { return fn(*rest, **kwargs); });
             } catch (const ctxvars::context_in_use_error&) {
               PyErr_SetString(PyExc_RuntimeError,
                               ("cannot enter context: " + repr_of(self.ptr()) + " is already entered").c_str());
               throw py::error_already_set();
             }
           })
      .def("copy", [](const Context& c) { return Context{c.ctx.copy()}; })
      .def("__getitem__",
           [](const Context& c, py::handle key) -> py::object {
             ContextVar& v = as_var(key);
             if (auto e = c.ctx.get(v.var)) return e->value.object();
             PyErr_SetObject(PyExc_KeyError, key.ptr());
             throw py::error_already_set();
           })
      .def("__contains__", [](const Context& c, py::handle key) { return c.ctx.contains(as_var(key).var); })
      .def("get",
           [](const Context& c, py::handle key, py::object dflt) -> py::object {
             ContextVar& v = as_var(key);
             if (auto e = c.ctx.get(v.var)) return e->value.object();
             return dflt;
           },
           py::arg("key"), py::arg("default") = py::none())
      .def("__len__", [](const Context& c) { return c.ctx.size(); })
      .def("__iter__",
           [](const Context& c) {
             py::list keys;
             for (auto& [k, v] : items_of(c.ctx)) keys.append(k);
             return py::iter(keys);
           })
      .def("keys",
           [](const Context& c) {
             py::list out;
             for (auto& [k, v] : items_of(c.ctx)) out.append(k);
             return out;
           })
      .def("values",
           [](const Context& c) {
             py::list out;
             for (auto& [k, v] : items_of(c.ctx)) out.append(v);
             return out;
           })
      .def("items",
           [](const Context& c) {
             py::list out;
             for (auto& [k, v] : items_of(c.ctx)) out.append(py::make_tuple(k, v));
             return out;
           })
      .def("__eq__",
           [](const Context& a, py::object other) -> py::object {
             if (!py::isinstance<Context>(other)) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
             const Context& b = other.cast<const Context&>();
             if (a.ctx == b.ctx) return py::bool_(true);
             auto ia = items_of(a.ctx);
             if (ia.size() != b.ctx.size()) return py::bool_(false);
             for (auto& [k, v] : ia) {
               auto e = b.ctx.get(k.cast<ContextVar&>().var);
               if (!e) return py::bool_(false);
               const int r = PyObject_RichCompareBool(v.ptr(), e->value.get(), Py_EQ);
               if (r < 0) throw py::error_already_set();
               if (!r) return py::bool_(false);
             }
             return py::bool_(true);
           });
  context.attr("__hash__") = py::none();

  m.def("copy_context", [] { return Context{ctxvars::copy_context()}; });

  // ---- hamt ----
  py::class_<HamtIter>(m, "_hamt_iterator", py::is_final())
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &hamt_next)
      .def("__len__", [](const HamtIter& i) { return i.snap.size(); });
  // Garbage collection: a hamt exposes the references that are its alone
  // (entries of nodes no other hamt shares); a reference held by a shared node
  // is reported by nobody, so the collector treats it as external — cycles
  // through shared nodes are kept, never collected wrongly.
  py::class_<Hamt> hamt(m, "hamt", py::is_final(), py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                          auto* type = &heap_type->ht_type;
                          type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                          type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) -> int {
                            auto& h = py::cast<Hamt&>(py::handle(self));
                            return h.t.for_each_owned([&](const py_trie::entry_type& e) -> int {
                              Py_VISIT(e.key.get());
                              Py_VISIT(e.value.get());
                              return 0;
                            });
                          };
                          type->tp_clear = [](PyObject* self) -> int {
                            auto& h = py::cast<Hamt&>(py::handle(self));
                            py_trie dropped;
                            dropped.swap(h.t);
                            return 0;
                          };
                        }));
  hamt.def(py::init<>())
      .def("set",
           [](py::object self, py::object k, py::object v) -> py::object {
             const Hamt& h = self.cast<const Hamt&>();
             const pyref key = pyref::borrow(k);
             const auto hash = h.t.hash_of(key);
             if (const pyref* cur = h.t.find(key, hash); cur && cur->get() == v.ptr()) return self;
             Hamt out{h.t};
             out.t.insert(hash, key, pyref::borrow(v));
             return py::cast(std::move(out));
           })
      .def("delete",
           [](py::object self, py::object k) -> py::object {
             const Hamt& h = self.cast<const Hamt&>();
             Hamt out{h.t};
             if (!out.t.erase(pyref::borrow(k))) return self;
             return py::cast(std::move(out));
           })
      .def("get",
           [](const Hamt& h, py::object k, py::object dflt) -> py::object {
             if (const pyref* v = h.t.find(pyref::borrow(k))) return v->object();
             return dflt;
           },
           py::arg("key"), py::arg("default") = py::none())
      .def("__getitem__",
           [](const Hamt& h, py::object k) -> py::object {
             if (const pyref* v = h.t.find(pyref::borrow(k))) return v->object();
             PyErr_SetObject(PyExc_KeyError, k.ptr());
             throw py::error_already_set();
           })
      .def("__contains__", [](const Hamt& h, py::object k) { return h.t.contains(pyref::borrow(k)); })
      .def("__len__", [](const Hamt& h) { return h.t.size(); })
      .def("__iter__", [](const Hamt& h) { return HamtIter(h.t, HamtIter::mode::keys); })
      .def("keys", [](const Hamt& h) { return HamtIter(h.t, HamtIter::mode::keys); })
      .def("values", [](const Hamt& h) { return HamtIter(h.t, HamtIter::mode::values); })
      .def("items", [](const Hamt& h) { return HamtIter(h.t, HamtIter::mode::items); })
      .def("__eq__",
           [](const Hamt& a, py::object other) -> py::object {
             if (!py::isinstance<Hamt>(other)) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
             return py::bool_(hamt_equal(a.t, other.cast<const Hamt&>().t));
           })
      .def("__ne__",
           [](const Hamt& a, py::object other) -> py::object {
             if (!py::isinstance<Hamt>(other)) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
             return py::bool_(!hamt_equal(a.t, other.cast<const Hamt&>().t));
           });
  hamt.attr("__hash__") = py::none();
}
