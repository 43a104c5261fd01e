// The ctxvars Python module: Python's contextvars API (ContextVar, Context,
// Token, copy_context) implemented on the C++ core, plus hamt(), the project's
// trie over Python objects with the interface of CPython's _testcapi.hamt.
#include <pybind11/pybind11.h>

#include <ctxvars/ctxvars.hpp>
#include <ctxvars/python.hpp>
#include <ctxvars/detail/hamt/trie.hpp>

#include <structmember.h>

#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

// An owned PyObject reference. Copies and destruction may happen where the
// C++ core copies or drops values: copies always under the GIL (inside calls
// from Python); a destruction at thread exit takes the GIL if the interpreter
// is still alive, and otherwise leaks the reference (nothing left to free it).
// True if the calling thread holds the GIL. The thread state holding the GIL is
// that of a live thread, so equal thread ids mean this thread. (PyGILState_Check
// costs a TSS look-up; this is two loads and pthread_self.)
[[gnu::tls_model("initial-exec")]] thread_local unsigned long cached_thread_ident = 0;
inline bool this_thread_holds_gil() noexcept {
  PyThreadState* holder = _PyThreadState_UncheckedGet();
  if (!holder) return false;
  unsigned long me = cached_thread_ident;
  if (!me) me = cached_thread_ident = PyThread_get_thread_ident();
  return holder->thread_id == me;
}

class pyref {
 public:
  pyref() noexcept = default;
  static pyref borrow(PyObject* o) noexcept {
    Py_XINCREF(o);
    return pyref(o);
  }
  static pyref borrow(const py::handle& h) noexcept { return borrow(h.ptr()); }
  static pyref steal(PyObject* o) noexcept { return pyref(o); }
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
  // The common case (this thread holds the GIL) inline; the rest out of line.
  static void drop(PyObject* o) noexcept {
    if (!o) return;
    if (CTXVARS_LIKELY(this_thread_holds_gil())) {
      Py_DECREF(o);
      return;
    }
    drop_without_gil(o);
  }
  [[gnu::noinline]] static void drop_without_gil(PyObject* o) noexcept {
    // After finalisation (a thread-exit or static destructor) there is no
    // interpreter to give the reference back to.
    if (!Py_IsInitialized()) return;
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

// A new reference from the C API, or the Python error as an exception.
pyref checked(PyObject* new_ref) {
  if (!new_ref) throw py::error_already_set();
  return pyref::steal(new_ref);
}

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

// ---- The displaced box a core token keeps ---------------------------------------------
// The collector must see the reference a token holds through the box its set displaced
// (token<T>::old_box_, private to the core). An explicit instantiation may name a
// private member ([temp.spec.general]/6): the usual way to reach it without editing
// the core's headers.
template <auto Member>
struct private_member {
  friend auto token_old_box(ctxvars::token<py_entry>& t) noexcept -> ctxvars::detail::box_ptr& { return t.*Member; }
};
ctxvars::detail::box_ptr& token_old_box(ctxvars::token<py_entry>& t) noexcept;
template struct private_member<&ctxvars::token<py_entry>::old_box_>;

// ---- Access to pybind11 instances ---------------------------------------------------

// The C++ object inside a pybind11 instance of a simple (single, non-polymorphic) type,
// or nullptr if it was never built: the garbage collector may visit an instance whose
// __init__ never ran (Context.__new__(Context), or __init__ raised).
template <class T>
T* built(PyObject* self) noexcept {
  auto* inst = reinterpret_cast<py::detail::instance*>(self);
  if (!inst->simple_layout || !inst->simple_holder_constructed) return nullptr;
  return static_cast<T*>(inst->simple_value_holder[0]);
}

// The layout of CPython 3.11's Context object (Include/internal/pycore_context.h): the
// module reads `ctx_vars` to learn whether another stdlib context shares this one's
// mapping (a copy was taken since).
struct stdlib_context_layout {
  PyObject_HEAD
  PyObject* ctx_prev;
  PyObject* ctx_vars;
  PyObject* ctx_weakreflist;
  int ctx_entered;
};
static_assert(PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000,
              "stdlib_context_layout mirrors CPython 3.11");
PyObject* vars_of(PyObject* stdlib_ctx) noexcept {
  return reinterpret_cast<stdlib_context_layout*>(stdlib_ctx)->ctx_vars;
}

// Visits the Python objects held by entries that only `c` holds (see "Garbage
// collection" in docs/python.md).
int visit_context(const ctxvars::context& c, visitproc visit, void* arg) {
  auto* impl = ctxvars::detail::context_access::impl(c);
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
}

// ---- Which ctxvars context is current: the carrier ------------------------------------
//
// Values live in ctxvars contexts. Python's own context machinery is used only to
// learn which one is current: one stdlib ContextVar, the carrier, holds a Binding —
// a handle to the ctxvars context of the running stdlib context. asyncio copies the
// stdlib context for every task and callback, so the copy shares the Binding; the
// first write in a stdlib context that does not own the Binding copies the ctxvars
// context (O(1)) and binds the copy in the current stdlib context (copy on first
// write). The owner writes in place while nobody shares its stdlib mapping; once a
// copy of its stdlib context exists (the mapping's reference count is above 1, or
// the mapping changed), its next write first freezes the shared Binding on a
// snapshot — exactly the state the copies were taken from — and binds its own
// context again under a fresh Binding, so the copies never see later writes.

struct Binding {
  ctxvars::context ctx;
  pyref owner;  // weak reference to the stdlib context whose writes go to ctx; null: frozen
  bool owns_ctx = true;  // no other handle names ctx (garbage collection may visit it)
};

PyObject* carrier = nullptr;       // the stdlib ContextVar (never released)
PyTypeObject* binding_type = nullptr;
PyTypeObject* contextvar_type = nullptr;

// The Binding of the current stdlib context (new reference), or nullptr.
PyObject* current_binding() {
  PyObject* b = nullptr;
  if (PyContextVar_Get(carrier, nullptr, &b) < 0) throw py::error_already_set();
  return b;
}

PyObject* weak_target(const pyref& w) noexcept { return w.get() ? PyWeakref_GET_OBJECT(w.get()) : nullptr; }

bool owned_here(const Binding& b, PyObject* stdlib_ctx) noexcept {
  return b.owner.get() && stdlib_ctx && weak_target(b.owner) == stdlib_ctx;
}

// ---- Is a Binding reachable from the current stdlib context only? ----
// The layouts of CPython 3.11's HAMT (Python/hamt.c): a stdlib context's mapping
// is a HAMT; a copy of the context shares it, and a copy that later diverged still
// shares the nodes it did not change. A Binding may be written in place only when
// nothing but the current context can reach it: its mapping is held once, every
// node on the path to the carrier's entry is held once, and the Binding is held by
// that one node (plus the caller's reference).
struct hamt_layout {
  PyObject_HEAD
  PyObject* h_root;
  PyObject* h_weakreflist;
  Py_ssize_t h_count;
};
struct hamt_bitmap_layout {
  PyObject_VAR_HEAD
  uint32_t b_bitmap;
  PyObject* b_array[1];
};
struct hamt_array_layout {
  PyObject_HEAD
  PyObject* a_array[32];
  Py_ssize_t a_count;
};
struct hamt_collision_layout {
  PyObject_VAR_HEAD
  int32_t c_hash;
  PyObject* c_array[1];
};
struct contextvar_layout {  // Include/internal/pycore_context.h
  PyObject_HEAD
  PyObject* var_name;
  PyObject* var_default;
  PyObject* var_cached;
  uint64_t var_cached_tsid;
  uint64_t var_cached_tsver;
  Py_hash_t var_hash;
};

enum class node_kind { bitmap, array, collision, unknown };
node_kind kind_of(PyObject* node) noexcept {
  static PyTypeObject *bitmap = nullptr, *array = nullptr, *collision = nullptr;
  PyTypeObject* t = Py_TYPE(node);
  if (t == bitmap) return node_kind::bitmap;
  if (t == array) return node_kind::array;
  if (t == collision) return node_kind::collision;
  if (!std::strcmp(t->tp_name, "hamt_bitmap_node")) return bitmap = t, node_kind::bitmap;
  if (!std::strcmp(t->tp_name, "hamt_array_node")) return array = t, node_kind::array;
  if (!std::strcmp(t->tp_name, "hamt_collision_node")) return collision = t, node_kind::collision;
  return node_kind::unknown;
}

// True if `binding` (of which the caller holds one reference) is reachable from the
// current stdlib context only. False whenever unsure.
bool exclusive(PyObject* stdlib_ctx, PyObject* binding) noexcept {
  PyObject* vars = vars_of(stdlib_ctx);
  if (!vars || Py_REFCNT(vars) != 1 || Py_REFCNT(binding) != 2) return false;
  const Py_hash_t h = reinterpret_cast<contextvar_layout*>(carrier)->var_hash;
  const auto hash = static_cast<uint32_t>(static_cast<int32_t>(h & 0xffffffffL) ^ static_cast<int32_t>(h >> 32));
  PyObject* node = reinterpret_cast<hamt_layout*>(vars)->h_root;
  for (uint32_t shift = 0; node && shift < 40; shift += 5) {
    if (Py_REFCNT(node) != 1) return false;
    switch (kind_of(node)) {
      case node_kind::bitmap: {
        auto* n = reinterpret_cast<hamt_bitmap_layout*>(node);
        const uint32_t bit = 1u << ((hash >> shift) & 0x1f);
        if (!(n->b_bitmap & bit)) return false;
        const auto idx = static_cast<std::size_t>(ctxvars::detail::hamt::popcount32(n->b_bitmap & (bit - 1)));
        PyObject* key = n->b_array[2 * idx];
        PyObject* val = n->b_array[2 * idx + 1];
        if (!key) {
          node = val;  // a sub-node
          continue;
        }
        return key == carrier && val == binding;
      }
      case node_kind::array:
        node = reinterpret_cast<hamt_array_layout*>(node)->a_array[(hash >> shift) & 0x1f];
        continue;
      case node_kind::collision: {
        auto* n = reinterpret_cast<hamt_collision_layout*>(node);
        for (Py_ssize_t i = 0; i + 1 < Py_SIZE(n); i += 2)
          if (n->c_array[i] == carrier) return n->c_array[i + 1] == binding;
        return false;
      }
      case node_kind::unknown:
        return false;
    }
  }
  return false;
}

// The current stdlib context (borrowed), created if this thread has none yet.
PyObject* current_stdlib_context() {
  PyThreadState* ts = PyThreadState_Get();
  if (!ts->context) {
    PyObject* c = PyContext_CopyCurrent();  // creates the thread's context
    if (!c) throw py::error_already_set();
    Py_DECREF(c);
  }
  return ts->context;
}

// Binds `c` in the current stdlib context and returns the new Binding (borrowed:
// the stdlib context holds it).
// Binding as a plain CPython type (one is made per task that writes).
struct BindingObject {
  PyObject_HEAD
  Binding b;
};
Binding* binding_of(PyObject* o) noexcept { return &reinterpret_cast<BindingObject*>(o)->b; }

PyTypeObject* make_binding_type() {
  static PyType_Slot slots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(+[](PyObject* self) {
         PyTypeObject* tp = Py_TYPE(self);
         PyObject_GC_UnTrack(self);
         binding_of(self)->~Binding();
         tp->tp_free(self);
         Py_DECREF(tp);
       })},
      {Py_tp_traverse, reinterpret_cast<void*>(+[](PyObject* self, visitproc visit, void* arg) -> int {
         Py_VISIT(Py_TYPE(self));
         const Binding* b = binding_of(self);
         if (!b->owns_ctx) return 0;
         return visit_context(b->ctx, visit, arg);
       })},
      {Py_tp_clear, reinterpret_cast<void*>(+[](PyObject* self) -> int {
         Binding* b = binding_of(self);
         ctxvars::context dropped = b->ctx;
         b->ctx = ctxvars::context();
         return 0;
       })},
      {0, nullptr}};
  static PyType_Spec spec = {"ctxvars._Binding", sizeof(BindingObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
                             slots};
  PyObject* t = PyType_FromSpec(&spec);
  if (!t) throw py::error_already_set();
  return reinterpret_cast<PyTypeObject*>(t);
}

// `c` is taken in, not copied (moving a handle would retain and release). The
// caller evaluates it before this allocates: PyObject_GC_New may run a collection,
// whose finalizers may set variables and so rebind the current stdlib context.
Binding& bind_here(ctxvars::context c, bool owns_ctx) {
  PyObject* here = current_stdlib_context();
  auto* raw = PyObject_GC_New(BindingObject, binding_type);
  if (!raw) throw py::error_already_set();
  new (&raw->b) Binding{ctxvars::detail::context_access::take(c), {}, owns_ctx};
  PyObject_GC_Track(raw);
  pyref obj = pyref::steal(reinterpret_cast<PyObject*>(raw));
  Binding& b = raw->b;
  b.owner = checked(PyWeakref_NewRef(here, nullptr));
  checked(PyContextVar_Set(carrier, obj.get()));  // the token, dropped at once
  return b;  // kept alive by the stdlib context's mapping
}

// The ctxvars context to read in the current stdlib context (empty handle: none yet).
const Binding* readable_binding(pyref& keep) {
  PyObject* b = current_binding();
  keep = pyref::steal(b);
  return b ? binding_of(b) : nullptr;
}

// Context.run binds a Context's ctxvars context in its stdlib context lazily, at
// the first write: until then, the Binding the stdlib context inherited shows
// exactly the Context's values (the Context was copied from it, and any write to
// it since would have frozen it first). The innermost run of this thread:
struct run_frame {
  PyObject* stdlib;
  const ctxvars::context* ctx;
  run_frame* prev;
};
[[gnu::tls_model("initial-exec")]] thread_local run_frame* run_top = nullptr;

// The ctxvars context the current stdlib context writes to, bound on first write.
// In place when no other stdlib context can reach the Binding; else the owner
// freezes the shared Binding on a snapshot (the state every sharer saw) and binds
// its own context afresh; anyone else binds a copy (copy on first write).
ctxvars::context& writable() {
  PyObject* bobj = current_binding();
  PyObject* here = current_stdlib_context();
  struct owned {  // our reference to the Binding (the GIL is held throughout)
    PyObject* p;
    ~owned() { Py_XDECREF(p); }
  } keep{bobj};
  Binding* b = bobj ? binding_of(bobj) : nullptr;
  if (run_top && run_top->stdlib == here && !(b && owned_here(*b, here))) {
    // The first write inside Context.run: the Context's own context.
    return bind_here(*run_top->ctx, false).ctx;
  }
  if (b && owned_here(*b, here)) {
    if (exclusive(here, bobj)) return b->ctx;
    const bool owns = b->owns_ctx;
    ctxvars::context snap = b->ctx.copy();
    Binding& fresh = bind_here(b->ctx, owns);
    b->ctx = std::move(snap);
    b->owns_ctx = true;
    b->owner = pyref();
    return fresh.ctx;
  }
  return bind_here(b ? b->ctx.copy() : ctxvars::context(), true).ctx;
}

// Makes `c` the calling thread's current ctxvars context for a scope. The thread
// owns the stdlib context bound to `c` (only it writes there), so no entering is
// needed: the switch only keeps the core's lookup cache coherent.
class current_scope {
 public:
  explicit current_scope(const ctxvars::context& c) noexcept
      : impl_(ctxvars::detail::context_access::impl(c)) {
    ctxvars::detail::thread_state& st = ctxvars::detail::this_thread_state();
    switched_ = st.current != impl_;
    if (switched_) rec_ = ctxvars::detail::switch_to(st, impl_);
  }
  current_scope(const current_scope&) = delete;
  current_scope& operator=(const current_scope&) = delete;
  ~current_scope() {
    if (switched_) ctxvars::detail::switch_back(ctxvars::detail::this_thread_state(), impl_, rec_);
  }

 private:
  ctxvars::detail::context_impl* impl_;
  ctxvars::detail::switch_record rec_{};
  bool switched_;
};

// ---- The C API for C++ extensions (<ctxvars/python.hpp>) ----------------------------

int api_enter(ctxvars::python::detail::saved_state* s) noexcept {
  try {
    ctxvars::context& c = writable();
    ctxvars::detail::context_impl* impl = ctxvars::detail::context_access::impl(c);
    ctxvars::detail::thread_state& st = ctxvars::detail::this_thread_state();
    impl->retain();
    s->context = impl;
    s->switched = st.current != impl;
    if (s->switched) {
      const ctxvars::detail::switch_record r = ctxvars::detail::switch_to(st, impl);
      s->previous = r.prev;
      s->previous_version = r.prev_version;
    }
    return 0;
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return -1;
}

void api_leave(ctxvars::python::detail::saved_state* s) noexcept {
  auto* impl = static_cast<ctxvars::detail::context_impl*>(s->context);
  if (s->switched)
    ctxvars::detail::switch_back(ctxvars::detail::this_thread_state(), impl,
                                 {static_cast<ctxvars::detail::context_impl*>(s->previous), s->previous_version});
  impl->release();
}

const ctxvars::python::detail::api_v1 the_api{1, &api_enter, &api_leave};

// ---- ContextVar / Token --------------------------------------------------------------

// The name the C++ core keeps (for its own messages): UTF-8, lone surrogates escaped.
std::string utf8_name(PyObject* name) {
  PyObject* b = PyUnicode_AsEncodedString(name, "utf-8", "backslashreplace");
  if (!b) throw py::error_already_set();
  std::string s(PyBytes_AS_STRING(b), static_cast<std::size_t>(PyBytes_GET_SIZE(b)));
  Py_DECREF(b);
  return s;
}

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

std::string token_repr(const Token& t, PyObject* self) {
  return std::string("<Token") + (t.used() ? " used" : "") + " var=" + repr_of(t.var.get()) + " at " +
         address_of(self) + ">";
}


// ---- Token as a plain CPython type, ContextVar's hot methods -------------------------

struct TokenObject {
  PyObject_HEAD
  Token t;
};
PyTypeObject* token_type = nullptr;

Token& token_of(PyObject* o) noexcept { return reinterpret_cast<TokenObject*>(o)->t; }

// Runs f() and turns C++ exceptions into a Python error (returns nullptr).
template <class F>
PyObject* guarded(F&& f) noexcept {
  try {
    return f();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
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
         token_of(self).~Token();
         tp->tp_free(self);
         Py_DECREF(tp);
       })},
      {Py_tp_traverse, reinterpret_cast<void*>(+[](PyObject* self, visitproc visit, void* arg) -> int {
         Py_VISIT(Py_TYPE(self));
         Token& t = token_of(self);
         Py_VISIT(t.var.get());
         Py_VISIT(t.old.get());
         if (t.tok) {
           // The token's own copy of the old entry, and the box its set displaced
           // (when nothing else holds that box).
           if (const auto& o = t.tok->old_value()) {
             Py_VISIT(o->var.get());
             Py_VISIT(o->value.get());
           }
           if (const ctxvars::detail::box_base* b = token_old_box(*t.tok).get();
               b && b->refs.load(std::memory_order_acquire) == 1) {
             const py_entry& pe = ctxvars::detail::box_value<py_entry>(b);
             Py_VISIT(pe.var.get());
             Py_VISIT(pe.value.get());
           }
         }
         return 0;
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

PyObject* new_token(Token&& t) {
  auto* o = PyObject_GC_New(TokenObject, token_type);
  if (!o) throw py::error_already_set();
  new (&o->t) Token(std::move(t));
  PyObject_GC_Track(o);
  return reinterpret_cast<PyObject*>(o);
}

PyObject* var_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) noexcept {
  if (nargs > 1) {
    PyErr_Format(PyExc_TypeError, "get expected at most 1 argument, got %zd", nargs);
    return nullptr;
  }
  return guarded([&]() -> PyObject* {
    ContextVar& v = *built<ContextVar>(self);
    PyObject* bobj = nullptr;
    if (PyContextVar_Get(carrier, nullptr, &bobj) < 0) return nullptr;
    if (bobj) {
      // The current stdlib context holds the Binding, and nothing here runs Python
      // code that could change that: no reference of our own needed.
      Py_DECREF(bobj);
      const Binding* b = binding_of(bobj);
      const auto id = v.var.id();
      if (owned_here(*b, PyThreadState_Get()->context)) {
        // Only this thread writes the context it owns: no snapshot needed.
        auto* impl = ctxvars::detail::context_access::impl(b->ctx);
        if (const ctxvars::detail::box_ptr* p = impl->map.find(id, id))
          return Py_NewRef(ctxvars::detail::box_value<py_entry>(p->get()).value.get());
      } else if (auto e = b->ctx.get(v.var)) {
        return Py_NewRef(e->value.get());
      }
    }
    if (nargs == 1) return Py_NewRef(args[0]);
    if (v.default_.get()) return Py_NewRef(v.default_.get());
    PyErr_SetObject(PyExc_LookupError, self);
    return nullptr;
  });
}

PyObject* var_set(PyObject* self, PyObject* value) noexcept {
  return guarded([&]() -> PyObject* {
    ContextVar& v = *built<ContextVar>(self);
    ctxvars::context& c = writable();
    current_scope cur(c);
    auto t = v.var.set(py_entry{pyref::borrow(self), pyref::borrow(value)});
    pyref old = t.old_value() ? t.old_value()->value : pyref::borrow(missing_sentinel);
    return new_token(Token{std::move(t), pyref::borrow(self), std::move(old)});
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
    ctxvars::context& c = writable();
    current_scope cur(c);
    try {
      v.var.reset(*t.tok);
    } catch (const ctxvars::foreign_token_error&) {
      PyErr_SetString(PyExc_ValueError, (token_repr(t, tok) + " was created in a different Context").c_str());
      return nullptr;
    }
    Py_RETURN_NONE;
  });
}

PyMethodDef var_get_def = {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&var_get)),
                           METH_FASTCALL, nullptr};
PyMethodDef var_set_def = {"set", &var_set, METH_O, nullptr};
PyMethodDef var_reset_def = {"reset", &var_reset, METH_O, nullptr};

// ---- Context --------------------------------------------------------------------------

// A ctxvars context paired with the stdlib context it runs under: `run` enters both,
// so that tasks and callbacks created inside copy a stdlib context bound to `ctx`.
struct Context {
  ctxvars::context ctx;
  pyref stdlib;  // null only after the collector cleared it
};

struct ContextObject {
  PyObject_HEAD
  Context c;
  PyObject* weakrefs;
};
PyTypeObject* context_type = nullptr;
Context& context_of(PyObject* o) noexcept { return reinterpret_cast<ContextObject*>(o)->c; }

// A new Context object (new reference) holding `c` (taken in, not copied: moving a
// handle would cost a locked increment and decrement) and the stdlib context `s`.
// Both are made by the caller before this allocates (PyObject_GC_New may run a
// collection, and finalizers may set variables).
PyObject* new_context(ctxvars::context c, pyref s) {
  auto* o = PyObject_GC_New(ContextObject, context_type);
  if (!o) throw py::error_already_set();
  new (&o->c) Context{ctxvars::detail::context_access::take(c), std::move(s)};
  o->weakrefs = nullptr;
  PyObject_GC_Track(o);
  return reinterpret_cast<PyObject*>(o);
}

// The (var, value) pairs of a context that Python variables put there.
std::vector<std::pair<py::object, py::object>> items_of(const ctxvars::context& c) {
  std::vector<std::pair<py::object, py::object>> out;
  for (auto e : c)
    if (const py_entry* p = e.get_if<py_entry>()) out.emplace_back(p->var.object(), p->value.object());
  return out;
}

// A copy of the current ctxvars context (copy_context()).
ctxvars::context copy_current() {
  pyref keep;
  const Binding* b = readable_binding(keep);
  return b ? b->ctx.copy() : ctxvars::context();
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
    PyObject* s = c.stdlib.get();
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
    // Keep an exception raised by the call: exiting cannot fail here.
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
           pyref s = checked(PyContext_Copy(c.stdlib.get()));
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
         return visit_context(c.ctx, visit, arg);
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
         return static_cast<Py_ssize_t>(context_of(self).ctx.size());
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
             if (ix.size() != y.ctx.size()) eq = false;
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

}  // namespace

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

PYBIND11_MODULE(ctxvars, m) {
  m.doc() = "Python's contextvars, implemented on the ctxvars C++ library";

  // ---- the carrier and the Binding type ----
  carrier = PyContextVar_New("ctxvars._binding", nullptr);
  if (!carrier) throw py::error_already_set();
  binding_type = make_binding_type();
  m.add_object("_Binding", reinterpret_cast<PyObject*>(binding_type));
  m.attr("_api_v1") = py::capsule(static_cast<const void*>(&the_api), "ctxvars._api_v1");

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

  // ---- Context (a plain CPython type) and copy_context ----
  context_type = make_context_type();
  m.add_object("Context", reinterpret_cast<PyObject*>(context_type));
  static PyMethodDef copy_context_def = {
      "copy_context", +[](PyObject*, PyObject*) -> PyObject* {
        return guarded([] {
          // The stdlib copy first, then ours, both before the Context is allocated.
          pyref s = checked(PyContext_CopyCurrent());
          return new_context(copy_current(), std::move(s));
        });
      },
      METH_NOARGS, nullptr};
  // Bound to no object, with the module's name (not the module itself), so that its own
  // errors read "ctxvars.copy_context() takes no arguments", as the stdlib's do.
  m.add_object("copy_context",
               py::reinterpret_steal<py::object>(PyCFunction_NewEx(&copy_context_def, nullptr, py::str("ctxvars").ptr())));
  m.attr("__all__") = py::make_tuple("Context", "ContextVar", "Token", "copy_context");


  // ---- hamt ----
  py::class_<HamtIter>(m, "_hamt_iterator", py::is_final(), py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                         auto* type = &heap_type->ht_type;
                         type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                         type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) -> int {
                           Py_VISIT(Py_TYPE(self));
                           const HamtIter* i = built<HamtIter>(self);
                           if (!i) return 0;
                           return i->snap.for_each_owned([&](const py_trie::entry_type& e) -> int {
                             Py_VISIT(e.key.get());
                             Py_VISIT(e.value.get());
                             return 0;
                           });
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
  // Garbage collection: a hamt exposes the references that are its alone
  // (entries of nodes no other hamt shares); a reference held by a shared node
  // is reported by nobody, so the collector treats it as external — cycles
  // through shared nodes are kept, never collected wrongly.
  py::class_<Hamt> hamt(m, "hamt", py::is_final(), py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                          auto* type = &heap_type->ht_type;
                          type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                          type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) -> int {
                            Py_VISIT(Py_TYPE(self));
                            const Hamt* hp = built<Hamt>(self);
                            if (!hp) return 0;
                            return hp->t.for_each_owned([&](const py_trie::entry_type& e) -> int {
                              Py_VISIT(e.key.get());
                              Py_VISIT(e.value.get());
                              return 0;
                            });
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

  // Pickling and copying are refused with the stdlib's TypeError. (Without
  // this, pickle protocols 0 and 1 and __reduce__() reach pybind11's
  // constructor through copyreg and abort the interpreter.)
  for (const char* name : {"ContextVar", "_TokenMissing", "hamt", "_hamt_iterator"})
    refuse_pickling(m.attr(name));
}
