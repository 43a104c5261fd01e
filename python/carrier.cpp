// Which ctxvars context is current: the carrier (carrier.hpp).
#include "carrier.hpp"

#include "cpython_layout.hpp"
#include "contextvar.hpp"
#include "gc.hpp"

namespace ctxvars_python {

namespace {

// The Binding of the current stdlib context (new reference), or nullptr.
PyObject* current_binding() {
  PyThreadState* ts = PyThreadState_Get();
  if (ts->context) return Py_XNewRef(carrier_value(ts));
  PyObject* b = nullptr;
  if (PyContextVar_Get(carrier, nullptr, &b) < 0) throw py::error_already_set();
  return b;
}

// ---- Is a Binding reachable from the current stdlib context only? ----
// The layouts of CPython 3.11's HAMT (Python/hamt.c): a stdlib context's mapping
// is a HAMT; a copy of the context shares it, and a copy that later diverged still
// shares the nodes it did not change. A Binding may be written in place only when
// nothing but the current context can reach it: its mapping is held once, every
// node on the path to the carrier's entry is held once, and the Binding is held by
// that one node (plus the caller's reference).

}  // namespace

// The carrier's value in the stdlib mapping `vars` (borrowed), or nullptr; with
// `exclusive_path`, also nullptr unless every node on the way is held once. A walk of
// CPython 3.11's HAMT (Python/hamt.c) that reads no reference count but those.
PyObject* carrier_in(PyObject* vars, bool exclusive_path) noexcept {
  // hamt.c's hamt_hash: the object's hash folded to 32 bits, -1 taken to -2.
  const Py_hash_t h = reinterpret_cast<contextvar_layout*>(carrier)->var_hash;
  int32_t folded = static_cast<int32_t>(h & 0xffffffffL) ^ static_cast<int32_t>(h >> 32);
  if (folded == -1) folded = -2;
  const auto hash = static_cast<uint32_t>(folded);
  PyObject* node = reinterpret_cast<hamt_layout*>(vars)->h_root;
  for (uint32_t shift = 0; node && shift < 40; shift += 5) {
    if (exclusive_path && Py_REFCNT(node) != 1) return nullptr;
    switch (kind_of(node)) {
      case node_kind::bitmap: {
        auto* n = reinterpret_cast<hamt_bitmap_layout*>(node);
        const uint32_t bit = 1u << ((hash >> shift) & 0x1f);
        if (!(n->b_bitmap & bit)) return nullptr;
        const auto idx = static_cast<std::size_t>(ctxvars::detail::hamt::popcount32(n->b_bitmap & (bit - 1)));
        PyObject* key = n->b_array[2 * idx];
        PyObject* val = n->b_array[2 * idx + 1];
        if (!key) {
          node = val;  // a sub-node
          continue;
        }
        return key == carrier ? val : nullptr;
      }
      case node_kind::array:
        node = reinterpret_cast<hamt_array_layout*>(node)->a_array[(hash >> shift) & 0x1f];
        continue;
      case node_kind::collision: {
        auto* n = reinterpret_cast<hamt_collision_layout*>(node);
        for (Py_ssize_t i = 0; i + 1 < Py_SIZE(n); i += 2)
          if (n->c_array[i] == carrier) return n->c_array[i + 1];
        return nullptr;
      }
      case node_kind::unknown:
        return nullptr;
    }
  }
  return nullptr;
}

PyObject* carrier_value(PyThreadState* ts) noexcept {
  auto* var = reinterpret_cast<contextvar_layout*>(carrier);
  if (var->var_cached && var->var_cached_tsid == ts->id && var->var_cached_tsver == ts->context_ver)
    return var->var_cached;
  PyObject* found = carrier_in(vars_of(ts->context), false);
  if (found) {  // the cache as contextvar_get (Python/context.c) fills it
    var->var_cached = found;
    var->var_cached_tsid = ts->id;
    var->var_cached_tsver = ts->context_ver;
  }
  return found;
}

namespace {

// The carrier's value in `stdlib_ctx` if the path to it (the mapping and every node on
// the way) is held once, else nullptr.
PyObject* carrier_entry(PyObject* stdlib_ctx) noexcept {
  PyObject* vars = vars_of(stdlib_ctx);
  if (!vars || Py_REFCNT(vars) != 1) return nullptr;
  return carrier_in(vars, true);
}

// True if `binding` (of which the caller holds one reference) is reachable from the
// current stdlib context only. False whenever unsure.
bool exclusive(PyObject* stdlib_ctx, PyObject* binding) noexcept {
  return Py_REFCNT(binding) == 2 && carrier_entry(stdlib_ctx) == binding;
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

}  // namespace

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
         Py_VISIT(b->owner.get());
         return traverse_context(self, b->ctx, visit, arg);
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
  gil_serialized(c);
  PyObject* here = current_stdlib_context();
  auto* raw = PyObject_GC_New(BindingObject, binding_type);
  if (!raw) throw py::error_already_set();
  new (&raw->b) Binding{ctxvars::detail::context_access::take(c), {}, owns_ctx};
  PyObject_GC_Track(raw);
  pyref obj = pyref::steal(reinterpret_cast<PyObject*>(raw));
  Binding& b = raw->b;
  b.owner = checked(PyWeakref_NewRef(here, nullptr));
  // get's caches (contextvar.hpp): the stdlib's set does not advance the context's
  // version; before (the old Binding may die inside, running finalizers) and after.
  note_write();
  checked(PyContextVar_Set(carrier, obj.get()));  // the token, dropped at once
  note_write();
  return b;  // kept alive by the stdlib context's mapping
}

// The owner's write to a Binding others share: the Binding keeps a snapshot (the
// state every sharer saw) and the owner binds its own context again, afresh.
Binding& freeze_and_rebind(Binding& b) {
  const bool owns = b.owns_ctx;
  ctxvars::context snap = b.ctx.copy();
  gil_serialized(snap);
  Binding& fresh = bind_here(b.ctx, owns);
  b.ctx = std::move(snap);
  b.owns_ctx = true;
  b.owner = pyref();
  return fresh;
}

// The ctxvars context to read in the current stdlib context (empty handle: none yet).
const Binding* readable_binding(pyref& keep) {
  PyObject* b = current_binding();
  keep = pyref::steal(b);
  return b ? binding_of(b) : nullptr;
}
// The ctxvars context the current stdlib context writes to, bound on first write.
// In place when no other stdlib context can reach the Binding; else the owner
// freezes the shared Binding on a snapshot (the state every sharer saw) and binds
// its own context afresh; anyone else binds a copy (copy on first write).
ctxvars::context& writable() {
  // The fast path: a Binding owned here and reachable from here only (read off the
  // stdlib context's mapping directly: no look-up through the carrier, no reference).
  if (PyObject* here = PyThreadState_Get()->context) {
    PyObject* bobj = carrier_entry(here);
    if (bobj && Py_REFCNT(bobj) == 1) {
      Binding* b = binding_of(bobj);
      if (owned_here(*b, here)) return b->ctx;
    }
  }
  // The stdlib context first: creating it allocates, and a collection there may run
  // finalizers that write (and bind). Nothing below allocates until bind_here.
  PyObject* here = current_stdlib_context();
  PyObject* bobj = current_binding();
  struct owned {  // our reference to the Binding (the GIL is held throughout)
    PyObject* p;
    ~owned() { Py_XDECREF(p); }
  } keep{bobj};
  Binding* b = bobj ? binding_of(bobj) : nullptr;
  if (b && owned_here(*b, here) && exclusive(here, bobj)) return b->ctx;  // in place
  // From the state read above to its binding, no collection: bind_here allocates, and a
  // finalizer run by a collection there could set a variable, binding its own write
  // in this stdlib context, which our binding would then replace (issue 18, bug 6).
  // Declared after `keep`, so collections resume before the old Binding is released.
  const gc_paused no_collection;
  if (run_top && run_top->stdlib == here && !(b && owned_here(*b, here))) {
    // The first write inside Context.run: the Context's own context.
    return bind_here(*run_top->ctx, false).ctx;
  }
  if (b && owned_here(*b, here)) return freeze_and_rebind(*b).ctx;
  return bind_here(b ? b->ctx.copy() : ctxvars::context(), true).ctx;
}

bool cpp_writes_need_a_freeze(PyObject* stdlib_ctx, ctxvars::detail::context_impl* impl) noexcept {
  // Reads reference counts without the GIL (racy by design): while this thread's
  // stdlib context holds the only path to the Binding, no other thread can reach
  // these objects to change them; when another can, any value read other than the
  // exclusive one sends the caller to the checked path under the GIL.
  PyObject* bobj = carrier_entry(stdlib_ctx);
  if (!bobj || Py_REFCNT(bobj) != 1) return true;
  const Binding& b = *binding_of(bobj);
  return ctxvars::detail::context_access::impl(b.ctx) != impl || !owned_here(b, stdlib_ctx);
}

void freeze_for_cpp_write(ctxvars::detail::context_impl* impl) {
  PyObject* here = current_stdlib_context();
  pyref keep = pyref::steal(current_binding());
  if (!keep.get()) return;
  Binding& b = *binding_of(keep.get());
  // Only the Binding that holds the context C++ writes, owned here; an exclusive one
  // is written in place.
  if (ctxvars::detail::context_access::impl(b.ctx) != impl || !owned_here(b, here)) return;
  if (exclusive(here, keep.get())) return;
  const gc_paused no_collection;
  freeze_and_rebind(b);
}

// A copy of the current ctxvars context (copy_context()).
ctxvars::context copy_current() {
  pyref keep;
  const Binding* b = readable_binding(keep);
  if (!b) return ctxvars::context();
  ctxvars::detail::context_impl* impl = ctxvars::detail::context_access::impl(b->ctx);
  // No C++ code holds the context (context_impl::needs_lock): the map is read in place.
  if (!impl->needs_lock()) return ctxvars::detail::context_access::adopt(ctxvars::detail::plain_copy_of(impl, true));
  return b->ctx.copy();
}

}  // namespace ctxvars_python
