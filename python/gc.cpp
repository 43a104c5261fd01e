// The garbage collector's view of what the core holds (gc.hpp).
//
// Holders and pieces. Python objects that hold core references — Context, _Binding
// (a context handle each), Token (a box), hamt and its iterator (a trie root) — are
// the holders. What they reach is made of shared pieces, each with its own reference
// count: contexts (several Python objects may hold one), write-log layers, trie nodes
// and value boxes; a box of a Python variable holds two Python references (the
// ContextVar and the value). CPython's collector must see each Python reference once
// per real reference (its HAMT nodes are GC objects for that reason; ours are not).
//
// CPython 3.11's collector (Modules/gcmodule.c) calls tp_traverse in several passes:
//   - subtract_refs: tp_traverse(op, visit_decref, op) — `arg` is the object itself —
//     once per object of the generation being collected. Each visit lowers the
//     visited object's count of references from outside. Reporting a reference more
//     often than it exists makes that count too small: a live object would be
//     collected. Reporting it less keeps the object alive (a leak, never a crash).
//   - every other pass (move_unreachable, with `arg` a generation's list head; the
//     passes about legacy finalizers; gc.get_referents): a visit only marks objects
//     reachable, so reporting more is harmless and reporting less is not: there every
//     holder reports everything it reaches ("all" below).
//   - handle_resurrected_objects runs a second subtract pass in the same collection,
//     over a subset of the first one's objects (those left unreachable).
//
// The subtract pass ("exact"). Each holder walks from what it holds; each counted
// reference it meets to a piece P adds one to seen(P) in a side table for this pass.
// When seen(P) reaches P's reference count, every reference to P came from a holder
// of this pass or from a piece walked this way: P is complete, and what it holds is
// walked in turn (children counted the same way; a Python entry's var and value
// reported). A piece completes at most once per pass, so each Python reference is
// reported at most once; a piece some reference from outside keeps (a C++ handle, a
// thread inside the context, a holder in an older generation, a call under
// calling_context, which holds the context) never completes, and the Python objects
// under it count as referenced from outside — conservative. A piece with one
// reference completes at once, without the table.
//
// Why it is sound with C++ threads writing without the GIL. The collector holds the
// GIL throughout the passes. Other threads change only contexts they hold a counted
// reference to (entered, or the calling_context guard's reference), and every piece
// under such a context stays incomplete; a complete piece is reachable only through
// complete pieces and holders, so nobody can reach it to change it until the
// collection ends (new references are made from existing ones, and those are the
// collector's). A count read while another thread drops a reference is only ever
// smaller than before by references that thread held: reaching equality then means
// nobody else holds the piece any more. Memory: a context's map is walked under its
// writer lock (read_locked); every piece walked is kept alive by that map.
//
// Passes and collections. The side table belongs to one subtract pass. A new
// collection is recognised by CPython's count of finished collections (read from the
// collector's state, gc_state.hpp), the second pass of a collection by a holder
// traversed twice in subtract mode (every object of the second pass was in the
// first). A subtract-mode traversal outside a collection, or when the collector's
// state was not found, or after running out of memory for the table, reports only
// what is reached through pieces held once ("unique_only": the rule of earlier
// versions, always safe).
//
// move_unreachable ("all_once"): a piece walked once in this pass is not walked again
// by the next holder — everything under it was marked reachable then, and the part of
// it that the subtract pass counted cannot have changed since.
#include "gc.hpp"

#include "gc_state.hpp"

#include <new>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>

namespace ctxvars_python {

// The collector must see the reference a token holds through the box its set displaced
// (token<T>::old_box_, private to the core). An explicit instantiation may name a
// private member ([temp.spec.general]/6): the usual way to reach it without editing
// the core's headers.
namespace {
template <auto Member>
struct private_member {
  friend auto old_box_of(ctxvars::token<py_entry>& t) noexcept -> ctxvars::detail::box_ptr& { return t.*Member; }
};
ctxvars::detail::box_ptr& old_box_of(ctxvars::token<py_entry>& t) noexcept;
template struct private_member<&ctxvars::token<py_entry>::old_box_>;
}  // namespace

ctxvars::detail::box_ptr& token_old_box(ctxvars::token<py_entry>& t) noexcept { return old_box_of(t); }

namespace {

constexpr std::uint32_t complete = ~std::uint32_t{0};

// Read and written under the GIL only (every tp_traverse runs with it).
struct collector_state {
  collector_view gc;
  bool found = false;
  std::uint64_t collection = ~std::uint64_t{0};  // gc.finished() of the collection the tables belong to
  bool out_of_memory = false;                    // the rest of this collection is counted conservatively
  std::unordered_set<PyObject*> holders;         // traversed in this subtract pass
  std::unordered_map<const void*, std::uint32_t> seen;  // references reached (or `complete`), pieces held more than once
  std::unordered_set<const void*> walked;        // pieces walked in this collection's move_unreachable
  gc_counters counters{};

  template <class C>
  static void empty(C& c) {
    // A large table is given back rather than kept (clear() costs its bucket count).
    if (c.bucket_count() > 4096)
      C().swap(c);
    else
      c.clear();
  }
  void new_pass() {
    empty(holders);
    empty(seen);
    empty(walked);
    ++counters.exact_passes;
  }
};

collector_state& state() noexcept {
  static collector_state* s = new collector_state;  // never destroyed: collections run at exit
  return *s;
}

}  // namespace

void init_gc_support() noexcept {
  collector_state& s = state();
  const found_collector f = find_collector();
  s.gc = f.view;
  s.found = f.ok;
  s.counters.collector_found = f.ok;
}

gc_counters gc_info() noexcept { return state().counters; }

traversal::traversal(PyObject* self, visitproc fn, void* arg) noexcept : visit_(fn), arg_(arg) {
  collector_state& s = state();
  if (arg != self) {
    mode_ = mode::all;
    // move_unreachable of this collection's first pass, whose subtract pass reset `walked`.
    if (s.found && *s.gc.collecting && s.gc.finished() == s.collection)
      for (const void* head : s.gc.generation_heads)
        if (arg == head) mode_ = mode::all_once;
    return;
  }
  mode_ = mode::unique_only;
  if (!s.found || !*s.gc.collecting) {
    ++s.counters.conservative_traversals;
    return;
  }
  const std::uint64_t id = s.gc.finished();
  if (id != s.collection) {
    s.collection = id;
    s.out_of_memory = false;
    s.new_pass();
  } else if (s.out_of_memory) {
    ++s.counters.conservative_traversals;
    return;
  } else if (s.holders.count(self)) {
    s.new_pass();  // handle_resurrected_objects: the second subtract pass of this collection
  }
  try {
    s.holders.insert(self);
  } catch (const std::bad_alloc&) {
    // Without the record of this holder, a second pass could not be told from this
    // one: the rest of this collection counts conservatively.
    s.out_of_memory = true;
    ++s.counters.out_of_memory;
    ++s.counters.conservative_traversals;
    return;
  }
  mode_ = mode::exact;
}

bool traversal::enter(const void* piece, std::uint32_t refs) noexcept {
  switch (mode_) {
    case mode::exact: {
      if (refs == 0) return false;
      collector_state& s = state();
      auto it = s.seen.find(piece);
      if (it == s.seen.end()) {
        if (refs == 1) return true;  // its only reference: reached once per pass
        try {
          s.seen.emplace(piece, 1u);
        } catch (const std::bad_alloc&) {
          ++s.counters.out_of_memory;  // this reference goes uncounted: the piece never completes
        }
        return false;
      }
      std::uint32_t& n = it->second;
      if (n == complete) return false;
      ++n;
      if (n < refs) return false;
      const bool now = n == refs;
      n = complete;  // more references reached than exist cannot happen; if it did, stop here
      return now;
    }
    case mode::unique_only:
      return refs == 1;
    case mode::all:
      return true;
    case mode::all_once:
      try {
        return state().walked.insert(piece).second;
      } catch (const std::bad_alloc&) {
        return true;
      }
  }
  return false;
}

bool traversal::box(const ctxvars::detail::box_base* b) noexcept {
  // A C++ variable's value holds no Python reference the module knows of.
  if (*b->info->type != typeid(py_entry)) return true;
  if (!enter(b, b->refs.load(std::memory_order_acquire))) return true;
  const py_entry& e = ctxvars::detail::box_value<py_entry>(b);
  return visit(e.var.get()) && visit(e.value.get());
}

bool traversal::context(const ctxvars::context& c) noexcept {
  if (ctxvars::detail::context_access::empty(c)) return true;
  ctxvars::detail::context_impl* impl = ctxvars::detail::context_access::impl(c);
  if (!enter(impl, impl->references())) return true;
  struct walker {
    traversal& t;
    bool enter(const void* piece, std::uint32_t refs) noexcept { return t.enter(piece, refs); }
    bool entry(const ctxvars::detail::context_map::entry_type& e) noexcept { return t.box(e.value.get()); }
  } w{*this};
  // Under the context's writer lock: C++ code inside calling_context may write this
  // context on a thread without the GIL (call_guard<calling_context,
  // gil_scoped_release>), replacing and freeing the layers, nodes and boxes walked
  // here (issue 18, bug 2).
  return impl->read_locked([&](const ctxvars::detail::context_map& m) -> int { return m.walk_references(w) ? 1 : 0; }) != 0;
}

int traverse_token(PyObject* self, ctxvars::token<py_entry>& tok, visitproc visit, void* arg) {
  traversal t(self, visit, arg);
  // The token's own copy of the old entry, and the box its set displaced.
  if (const auto& o = tok.old_value()) {
    t.visit(o->var.get());
    t.visit(o->value.get());
  }
  if (const ctxvars::detail::box_base* b = token_old_box(tok).get()) t.box(b);
  return t.result();
}

}  // namespace ctxvars_python
