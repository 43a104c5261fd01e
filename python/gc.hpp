// The garbage collector's view of what the core holds: the Python references held by
// the layers, trie nodes and value boxes that contexts, tokens and hamts share, each
// reported exactly once per collection (see "Garbage collection" in docs/python.md and
// the comment at the top of gc.cpp).
#pragma once

#include "common.hpp"

#include <cstdint>

namespace ctxvars_python {

// The box a core token displaced (token<T>::old_box_, private to the core).
ctxvars::detail::box_ptr& token_old_box(ctxvars::token<py_entry>& t) noexcept;

// Finds the collector's state (module import; needs the GIL). Without it, every
// collection counts as in the conservative mode below.
void init_gc_support() noexcept;

// One tp_traverse call of an object that holds core references (a holder): decides
// how references reached through shared pieces are reported (gc.cpp), and reports them.
class traversal {
 public:
  traversal(PyObject* self, visitproc fn, void* arg) noexcept;
  traversal(const traversal&) = delete;
  traversal& operator=(const traversal&) = delete;

  // One counted reference to a shared piece (a context, layer, trie node or box) was
  // reached, the piece having `refs` references: true if what it holds is to be
  // walked (and reported) now.
  bool enter(const void* piece, std::uint32_t refs) noexcept;
  // Reports one reference to `o` (null: none). False once visit returned non-zero.
  bool visit(PyObject* o) noexcept {
    if (!o || result_) return !result_;
    result_ = visit_(o, arg_);
    return !result_;
  }
  // A counted reference to a box: its Python entry's var and value if it is walked.
  bool box(const ctxvars::detail::box_base* b) noexcept;
  // A context handle: its map, walked under the context's writer lock.
  bool context(const ctxvars::context& c) noexcept;
  // The first non-zero result of visit, or 0.
  int result() const noexcept { return result_; }

 private:
  enum class mode : unsigned char { exact, unique_only, all, all_once };
  visitproc visit_;
  void* arg_;
  int result_ = 0;
  mode mode_;
};

// tp_traverse bodies' parts: what a holder holds through the core.
inline int traverse_context(PyObject* self, const ctxvars::context& c, visitproc visit, void* arg) {
  traversal t(self, visit, arg);
  t.context(c);
  return t.result();
}
int traverse_token(PyObject* self, ctxvars::token<py_entry>& tok, visitproc visit, void* arg);

// A trie of Python keys and values (hamt.cpp's).
template <class Trie>
int traverse_trie(PyObject* self, const Trie& trie, visitproc visit, void* arg) {
  traversal t(self, visit, arg);
  struct walker {
    traversal& t;
    bool enter(const void* piece, std::uint32_t refs) noexcept { return t.enter(piece, refs); }
    bool entry(const typename Trie::entry_type& e) noexcept { return t.visit(e.key.get()) && t.visit(e.value.get()); }
  } w{t};
  trie.walk_references(w);
  return t.result();
}

// For tests (ctxvars._gc_info()): whether the collector's state was found, and how
// many subtract passes ran in each mode since import.
struct gc_counters {
  bool collector_found;
  std::uint64_t exact_passes, conservative_traversals, out_of_memory;
};
gc_counters gc_info() noexcept;

}  // namespace ctxvars_python
