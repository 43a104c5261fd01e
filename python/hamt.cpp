// hamt(): the project's trie over Python objects with the interface of CPython's
// _testcapi.hamt (CPython's test_context.py tests it).
#include "hamt.hpp"

#include "gc.hpp"

namespace ctxvars_python {

namespace {

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

void add_hamt(py::module_& m) {
  // ---- hamt ----
  py::class_<HamtIter>(m, "_hamt_iterator", py::is_final(), py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                         auto* type = &heap_type->ht_type;
                         type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                         type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) -> int {
                           Py_VISIT(Py_TYPE(self));
                           const HamtIter* i = built<HamtIter>(self);
                           if (!i) return 0;
                           return traverse_trie(self, i->snap, visit, arg);
                         };
                         type->tp_clear = [](PyObject* self) -> int {
                           if (HamtIter* i = built<HamtIter>(self)) {
                             py_trie dropped;
                             dropped.swap(i->snap);
                             i->it = i->snap.begin();
                           }
                           return 0;
                         };
                       }))
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &hamt_next)
      .def("__len__", [](const HamtIter& i) { return i.snap.size(); });
  // Garbage collection: a hamt and its iterators report the references held by the
  // nodes they share, each once per collection pass (gc.cpp).
  py::class_<Hamt> hamt(m, "hamt", py::is_final(), py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                          auto* type = &heap_type->ht_type;
                          type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                          type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) -> int {
                            Py_VISIT(Py_TYPE(self));
                            const Hamt* hp = built<Hamt>(self);
                            if (!hp) return 0;
                            return traverse_trie(self, hp->t, visit, arg);
                          };
                          type->tp_clear = [](PyObject* self) -> int {
                            if (Hamt* hp = built<Hamt>(self)) {
                              py_trie dropped;
                              dropped.swap(hp->t);
                            }
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

}  // namespace ctxvars_python
