// A persistent map from 64-bit keys to owning pointers: a hamt::trie under a
// short stack of small write logs ("layers"). What a context stores.
//
// Why. A request copies its server's context and sets a few variables. In a
// bare trie each such set finds every node on its path shared with the server
// and copies it, retaining every other child and value of every copied node
// with a locked increment: ~100 of them per set at 100 000 variables. Here the
// copy's first write allocates one small layer (recycled per thread) that
// points to the copied state as its parent, and writes go to the layer's log:
// no trie node is copied and no other entry is touched.
//
// Structure. `top_` points to a layer; a layer holds
//   - a log of up to L entries {hash, key, value} (a null value is a
//     tombstone: the key is absent although a layer below or the trie has it),
//   - `parent`, the layer it was copied from (one counted reference; the log
//     entries below stay owned by their own layers, not counted again),
//   - `base`, the trie: owned by the bottom layer (depth 0), borrowed (not
//     counted) by the layers above it, which keep the bottom alive,
//   - `filter`: bit (key % 64) set for every key logged in it or below, so a
//     lookup of a key logged nowhere goes straight to the trie,
//   - `size`, the number of keys visible through it.
// A key's value is its entry in the topmost layer that logs it, else its
// entry in the trie.
//
// Updates. A layer, like a trie node, is changed in place only while this
// handle holds the only reference to it (`unique()`), and only then; shared
// layers are immutable. A write to a shared top makes a child layer (depth + 1)
// holding just that write. A write to a unique top replaces its own log entry
// in place, or (bottom layer only) replaces or inserts in the trie in place
// when the trie's path belongs to it alone, or appends to the log.
//
// Folding. When the top's log is full, or a new child would be deeper than D,
// the whole stack is folded: a fresh bottom layer gets a copy of the trie
// (one reference) with every layer's entries applied from the bottom up
// (path copies, but several writes share the upper nodes they copy) and the
// pending write applied last; its log starts empty. All of it is built before anything visible
// changes; a throw (std::bad_alloc) discards the new layer and leaves the map
// and the value unchanged. During the fold every reference dropped is one the
// old stack also holds, so nothing is destroyed before the old top is released
// — by `retired`, which the caller owns and destroys once its public
// operation is complete (the old layers may hold the last reference to
// masked values, whose destructors are user code).
//
// Costs. Copy: O(1), one counted reference. Lookup: the filter test, then at
// most (D + 1) * L key comparisons, then the trie's O(log32 n). A write after
// a copy: one layer, and no reference counted but the displaced value's (which
// goes to the caller, for a token). Memory: one layer (~250 bytes
// with L = 8) per written copy, up to D + 1 per stack; values a child layer
// masks stay alive with their parent until the stack folds or dies.
//
// Thread safety: as for the trie — const operations on handles sharing layers
// are safe from any threads; one handle is not synchronised.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "../config.hpp"
#include "hamt/trie.hpp"

namespace ctxvars::detail {

struct default_layer_alloc {
  static void* allocate(std::size_t n) { return ::operator new(n); }
  static void deallocate(void* p, std::size_t) noexcept { ::operator delete(p); }
};

// Ptr: a nothrow copyable and movable owning pointer, null when
// default-constructed, testable with `explicit operator bool`.
// Alloc: where layers come from (allocate may throw std::bad_alloc).
template <class Ptr, class Hash, class Alloc = default_layer_alloc, unsigned B = 5, unsigned L = 8,
          unsigned D = 4>
class layered_map {
  static_assert(L >= 1 && L <= 64, "log size");
  static_assert(D >= 1, "at least one layer above the bottom");

 public:
  using key_type = std::uint64_t;
  using trie_type = hamt::trie<std::uint64_t, Ptr, Hash, std::equal_to<std::uint64_t>, B>;
  using entry_type = typename trie_type::entry_type;
  using hash_t = hamt::hash_t;
  static constexpr unsigned log_capacity = L;
  static constexpr unsigned max_depth = D;

 private:
  struct layer {
    // Memory ordering as for trie nodes (node.hpp): increments relaxed (made
    // from an existing reference), decrements acq_rel, unique() acquire.
    std::atomic<std::uint32_t> refs{1};
    std::uint32_t count = 0;  // log entries in use: [0, count)
    std::uint32_t depth = 0;  // layers below this one
    std::uint64_t filter = 0;
    std::size_t size = 0;
    layer* parent = nullptr;  // counted reference
    trie_type base;           // owned at depth 0, borrowed above
    std::uint32_t cap = 0;  // log capacity: L, or 0 for a map's first bottom layer
    // The log follows the layer in the same allocation: [0, count) built.

    layer() noexcept = default;
    layer(const layer&) = delete;
    layer& operator=(const layer&) = delete;
    ~layer() {
      for (std::uint32_t i = 0; i < count; ++i) log()[i].~entry_type();
    }
    entry_type* log() noexcept { return std::launder(reinterpret_cast<entry_type*>(this + 1)); }
    const entry_type* log() const noexcept {
      return std::launder(reinterpret_cast<const entry_type*>(this + 1));
    }
    void append(hash_t h, key_type k, Ptr&& v) noexcept {
      ::new (static_cast<void*>(log() + count)) entry_type{h, k, std::move(v)};
      ++count;
    }

    bool unique() const noexcept { return refs.load(std::memory_order_acquire) == 1; }
    int index_of(key_type k) const noexcept {  // newest first: recent writes are read and reset
      for (std::uint32_t i = count; i-- > 0;)
        if (log()[i].key == k) return static_cast<int>(i);
      return -1;
    }
  };

 public:
  // What an update stopped referencing, released when this dies: releasing
  // may destroy values and run their destructors (user code). The caller
  // destroys it after its lock and after everything user code could observe
  // (a lookup cache, a token, watchers) is updated.
  class retired {
   public:
    retired() noexcept = default;
    retired(const retired&) = delete;
    retired& operator=(const retired&) = delete;
    ~retired() { release(layer_); }
    typename trie_type::retired nodes;

   private:
    friend class layered_map;
    layer* layer_ = nullptr;
  };

  layered_map() noexcept = default;
  layered_map(const layered_map& o) noexcept : top_(o.top_) {
    if (top_) top_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  layered_map(layered_map&& o) noexcept : top_(std::exchange(o.top_, nullptr)) {}
  layered_map& operator=(layered_map o) noexcept {
    std::swap(top_, o.top_);
    return *this;
  }
  ~layered_map() { release(top_); }

  std::size_t size() const noexcept { return top_ ? top_->size : 0; }
  bool empty() const noexcept { return size() == 0; }
  // O(1): the same snapshot.
  bool identical(const layered_map& o) const noexcept { return top_ == o.top_; }
  // Layers in the stack (0 when empty): for tests and benchmarks.
  unsigned layers() const noexcept { return top_ ? top_->depth + 1 : 0; }
  std::size_t logged() const noexcept {
    std::size_t n = 0;
    for (const layer* l = top_; l; l = l->parent) n += l->count;
    return n;
  }

  static hash_t hash_of(key_type k) noexcept(noexcept(Hash{}(k))) { return static_cast<hash_t>(Hash{}(k)); }

  // The value of k, or nullptr. Valid while this handle is neither updated
  // nor destroyed. No allocation.
  const Ptr* find(key_type k) const { return find(k, hash_of(k)); }
  const Ptr* find(key_type k, hash_t h) const {
    const layer* top = top_;
    if (!top) return nullptr;
    const std::uint64_t bit = filter_bit(k);
    for (const layer* l = top; l && (l->filter & bit); l = l->parent) {
      const int i = l->index_of(k);
      if (i >= 0) return l->log()[i].value ? &l->log()[i].value : nullptr;
    }
    return top->base.find(k, h);
  }
  bool contains(key_type k) const { return find(k) != nullptr; }

  // Sets k to v. Returns true when k was absent. k's previous value goes to
  // `old` (moved if this map owned it alone, else a new reference); what the
  // update dropped goes to `r`. Strong guarantee: on throw (std::bad_alloc)
  // nothing changed and v was not moved from.
  bool assign(key_type k, Ptr&& v, Ptr& old, retired& r) { return assign(k, hash_of(k), std::move(v), old, r); }
  bool assign(key_type k, hash_t h, Ptr&& v, Ptr& old, retired& r) {
    // The hot path (set+reset of a variable in a context nobody shares):
    // replace in the bottom layer's trie, in place.
    layer* top = top_;
    if (top && top->depth == 0 && !(top->filter & filter_bit(k)) && top->unique() &&
        top->base.replace_if_owned(h, k, v, old))
      return false;
    return write(k, h, &v, old, r);
  }
  // Removes k. Returns whether it was present; its value goes to `old`.
  // Strong guarantee as for assign.
  bool remove(key_type k, Ptr& old, retired& r) {
    if (!find(k)) return false;
    write(k, hash_of(k), nullptr, old, r);
    return true;
  }
  bool remove(key_type k, hash_t h, Ptr& old, retired& r) {
    if (!find(k, h)) return false;
    write(k, h, nullptr, old, r);
    return true;
  }

  // Convenience for tests: persistent updates.
  bool assign(key_type k, Ptr v) {
    Ptr old;
    retired r;
    return assign(k, std::move(v), old, r);
  }
  bool remove(key_type k) {
    Ptr old;
    retired r;
    return remove(k, old, r);
  }

  // Iteration over the visible entries {hash, key, value}, each key once, in
  // no particular order. No allocation.
  class iterator {
   public:
    using value_type = entry_type;
    using reference = const entry_type&;
    using pointer = const entry_type*;
    using difference_type = std::ptrdiff_t;
    using iterator_category = std::forward_iterator_tag;

    iterator() noexcept = default;
    reference operator*() const noexcept { return *cur_; }
    pointer operator->() const noexcept { return cur_; }
    iterator& operator++() noexcept {
      advance();
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator t = *this;
      advance();
      return t;
    }
    friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.cur_ == b.cur_; }

   private:
    friend class layered_map;
    explicit iterator(const layer* top) noexcept : top_(top), l_(top) {
      if (top_) advance();
    }
    // Is k logged in a layer above `below` (all layers if below is null)?
    bool masked(key_type k, const layer* below) const noexcept {
      if (!(top_->filter & filter_bit(k))) return false;
      for (const layer* l = top_; l != below; l = l->parent)
        if (l->index_of(k) >= 0) return true;
      return false;
    }
    void advance() noexcept {
      while (l_) {
        while (i_ < l_->count) {
          const entry_type& e = l_->log()[i_++];
          if (e.value && !masked(e.key, l_)) {
            cur_ = &e;
            return;
          }
        }
        l_ = l_->parent;
        i_ = 0;
        if (!l_) it_ = top_->base.begin();
      }
      while (it_ != typename trie_type::iterator()) {
        const entry_type& e = *it_;
        ++it_;
        if (!masked(e.key, nullptr)) {
          cur_ = &e;
          return;
        }
      }
      cur_ = nullptr;
    }

    const layer* top_ = nullptr;
    const layer* l_ = nullptr;
    std::uint32_t i_ = 0;
    typename trie_type::iterator it_{};
    const entry_type* cur_ = nullptr;
  };
  using const_iterator = iterator;
  iterator begin() const noexcept { return iterator(top_); }
  iterator end() const noexcept { return iterator(); }

  // The trie under the logs (empty if none), and every key written to a log
  // above it (a set or an erase; a key may be visited more than once). With
  // them, two maps can be compared by walking their tries side by side and
  // looking up the logged keys (ctxvars::diff). No allocation.
  const trie_type& base_trie() const noexcept {
    static const trie_type empty;
    return top_ ? top_->base : empty;
  }
  template <class F>
  void for_each_logged_key(F&& f) const {
    for (const layer* l = top_; l; l = l->parent)
      for (std::uint32_t i = 0; i < l->count; ++i) f(l->log()[i].key);
  }

  // Calls f(entry) for the entries this handle alone holds (reached through
  // layers and trie nodes nobody else references); stops at f's first
  // non-zero result. Only meaningful while no other thread changes counts.
  template <class F>
  int for_each_owned(F&& f) const {
    for (const layer* l = top_; l; l = l->parent) {
      if (!l->unique()) return 0;
      for (std::uint32_t i = 0; i < l->count; ++i)
        if (l->log()[i].value)
          if (int r = f(l->log()[i])) return r;
      if (l->depth == 0) return l->base.for_each_owned(f);
    }
    return 0;
  }

  // Every counted reference this handle holds, for a collector outside the core
  // that counts references itself (the Python module's, python/gc.cpp): v.enter(l,
  // refs) for the reference to the top layer and each layer's to its parent, with
  // the layer's reference count (acquire); when it returns true, the layer's logged
  // entries with a value follow (v.entry(e), false: stop; masked ones too: the layer
  // holds them), then its parent — or, for the bottom layer, which owns the trie,
  // the trie's references (trie::walk_references; the layers above only borrow it).
  // Returns false if v stopped the walk. No allocation.
  // Thread safety: as for const operations, while this handle is not updated (the
  // caller holds the writer lock of the context that owns it).
  template <class Visitor>
  bool walk_references(Visitor& v) const {
    for (const layer* l = top_; l; l = l->parent) {
      if (!v.enter(static_cast<const void*>(l), l->refs.load(std::memory_order_acquire))) return true;
      for (std::uint32_t i = 0; i < l->count; ++i)
        if (l->log()[i].value && !v.entry(l->log()[i])) return false;
      if (!l->parent) return l->base.walk_references(v);
    }
    return true;
  }

  // Throws std::logic_error describing the first broken rule.
  void check_invariants() const {
    auto fail = [](const std::string& what) { throw std::logic_error("write_log invariant: " + what); };
    if (!top_) return;
    const layer* bottom = top_;
    while (bottom->parent) bottom = bottom->parent;
    bottom->base.check_invariants();
    for (const layer* l = top_; l; l = l->parent) {
      if (l->refs.load(std::memory_order_relaxed) == 0) fail("layer with zero references");
      if (l->count > l->cap || l->cap > L) fail("log overflow");
      if (l->depth != (l->parent ? l->parent->depth + 1 : 0)) fail("depth");
      if (l->depth > D) fail("stack deeper than D");
      if (l->base.root() != bottom->base.root() || l->base.size() != bottom->base.size())
        fail("layer does not see the bottom's trie");
      if (l->parent && (l->filter & l->parent->filter) != l->parent->filter) fail("filter lost a parent's key");
      for (std::uint32_t i = 0; i < l->count; ++i) {
        const entry_type& e = l->log()[i];
        if (e.hash != hash_of(e.key)) fail("log entry with a wrong hash");
        if (!(l->filter & filter_bit(e.key))) fail("filter misses a logged key");
        for (std::uint32_t j = 0; j < i; ++j)
          if (l->log()[j].key == e.key) fail("key logged twice in one layer");
        if (!e.value && !visible_below(l, e.key)) fail("tombstone over nothing");
      }
    }
    std::size_t n = 0;
    for (auto it = begin(); it != end(); ++it) ++n;
    if (n != top_->size) fail("size " + std::to_string(top_->size) + " but " + std::to_string(n) + " entries");
  }

 private:
  static std::uint64_t filter_bit(key_type k) noexcept { return std::uint64_t{1} << (k & 63); }

  static constexpr std::size_t layer_bytes(std::uint32_t cap) noexcept {
    static_assert(sizeof(layer) % alignof(entry_type) == 0 && alignof(layer) >= alignof(entry_type));
    return sizeof(layer) + cap * sizeof(entry_type);
  }

 public:
  // Bytes of a layer with a full log (what an allocator may pool); a map's
  // first bottom layer has no log and is smaller.
  static constexpr std::size_t full_layer_bytes() noexcept { return layer_bytes(L); }

 private:
  static layer* new_layer(std::uint32_t cap) {
    void* p = Alloc::allocate(layer_bytes(cap));
    layer* l = ::new (p) layer;
    l->cap = cap;
    return l;
  }
  static void destroy(layer* l) noexcept {
    if (l->depth) l->base.forget();
    const std::size_t bytes = layer_bytes(l->cap);
    l->~layer();
    Alloc::deallocate(l, bytes);
  }
  // Drops one reference; frees the layers (and what they own) that it kept.
  static void release(layer* l) noexcept {
    while (l) {
      if (l->refs.load(std::memory_order_acquire) != 1 &&
          l->refs.fetch_sub(1, std::memory_order_acq_rel) != 1)
        return;
      layer* p = l->parent;
      destroy(l);
      l = p;
    }
  }

  // The value of k as seen from the layers strictly below l, then the trie.
  static const Ptr* visible_below(const layer* l, key_type k) {
    const std::uint64_t bit = filter_bit(k);
    for (const layer* p = l->parent; p && (p->filter & bit); p = p->parent) {
      const int i = p->index_of(k);
      if (i >= 0) return p->log()[i].value ? &p->log()[i].value : nullptr;
    }
    return l->base.find(k, hash_of(k));
  }

  // Sets k to *v, or removes it (v null; the caller checked it is present).
  bool write(key_type k, hash_t h, Ptr* v, Ptr& old, retired& r) {
    layer* top = top_;
    if (!top) {
      // A bottom layer without a log (an unshared map needs none: its
      // writes go to its trie in place), so a small context stays small.
      layer* n = new_layer(0);  // may throw; nothing changed
      try {
        n->base.insert(h, k, std::move(*v));  // moved from only on success
      } catch (...) {
        destroy(n);
        throw;
      }
      n->size = 1;
      top_ = n;
      return true;
    }
    if (!top->unique()) return write_shared(top, k, h, v, old, r);
    // The top is ours alone: change it in place.
    const int own = (top->filter & filter_bit(k)) ? top->index_of(k) : -1;
    if (own >= 0) {  // the top's own entry
      entry_type& e = top->log()[own];
      const bool had = static_cast<bool>(e.value);
      old = std::move(e.value);
      e.value = Ptr();
      if (v) {
        e.value = std::move(*v);
        if (!had) ++top->size;
        return !had;
      }
      if (!visible_below(top, k)) {  // nothing to mask: drop the entry
        const std::uint32_t last = top->count - 1;
        if (static_cast<std::uint32_t>(own) != last) top->log()[own] = std::move(top->log()[last]);
        top->log()[last].~entry_type();
        top->count = last;
      }
      --top->size;
      return false;
    }
    // The bottom layer's trie, in place where its path is ours alone.
    if (top->depth == 0 && v && top->base.replace_if_owned(h, k, *v, old)) return false;
    const Ptr* cur = visible_below(top, k);
    const bool added = v && !cur;
    const std::size_t new_size = top->size + (added ? 1 : 0) - (v ? 0 : 1);
    // A new key, or an erase, in the bottom's trie, in place, if the path is
    // ours alone (an erase there destroys the value now rather than masking
    // it): the log is only for what sharing would make expensive.
    if (top->depth == 0 && top->base.owns_path(h)) {
      if (v)
        top->base.insert(h, k, std::move(*v), &old, &r.nodes);
      else
        top->base.erase(h, k, &old, &r.nodes);
      top->size = new_size;
      return added;
    }
    if (top->count < top->cap) {  // append to the top's log
      top->append(h, k, v ? std::move(*v) : Ptr());
      top->filter |= filter_bit(k);
      if (cur) old = *cur;
      top->size = new_size;
      return added;
    }
    fold(k, h, v, cur, old, r);
    return added;
  }

  // A write to a shared top: a child layer holding it. Our reference to the
  // top becomes the child's parent reference.
  bool write_shared(layer* top, key_type k, hash_t h, Ptr* v, Ptr& old, retired& r) {
    const int own = (top->filter & filter_bit(k)) ? top->index_of(k) : -1;
    const Ptr* cur = own >= 0 ? (top->log()[own].value ? &top->log()[own].value : nullptr) : visible_below(top, k);
    const bool added = v && !cur;
    const std::size_t new_size = top->size + (added ? 1 : 0) - (v ? 0 : 1);
    if (top->depth + 1 > D) {
      fold(k, h, v, cur, old, r);
      return added;
    }
    layer* n = new_layer(L);  // may throw; nothing changed
    n->depth = top->depth + 1;
    n->parent = top;
    n->base.borrow(top->base);
    n->filter = top->filter | filter_bit(k);
    n->append(h, k, v ? std::move(*v) : Ptr());
    n->size = new_size;
    if (cur) old = *cur;
    top_ = n;
    return added;
  }

  // Folds the whole stack and the pending write into a new bottom layer
  // whose log is empty.
  CTXVARS_NOINLINE void fold(key_type k, hash_t h, Ptr* v, const Ptr* cur, Ptr& old, retired& r) {
    layer* chain[D + 1];
    unsigned nl = 0;
    for (layer* l = top_; l; l = l->parent) chain[nl++] = l;
    layer* n = new_layer(L);
    try {
      n->base = trie_type(chain[nl - 1]->base);  // one reference to the shared trie
      for (unsigned j = nl; j-- > 0;) {
        const layer* l = chain[j];
        for (std::uint32_t i = 0; i < l->count; ++i) {
          const entry_type& e = l->log()[i];
          // Every reference these drop is also held by the old stack, so
          // releasing them here destroys nothing.
          if (e.value) {
            Ptr copy(e.value);
            n->base.insert(e.hash, e.key, std::move(copy));
          } else {
            n->base.erase(e.hash, e.key);
          }
        }
      }
      if (v)
        n->base.insert(h, k, std::move(*v));  // moved from only on success
      else
        n->base.erase(h, k);
    } catch (...) {
      destroy(n);
      throw;
    }
    n->size = n->base.size();
    if (cur) old = *cur;
    r.layer_ = top_;  // our reference; released by the caller, after its operation
    top_ = n;
  }

  layer* top_ = nullptr;
};

}  // namespace ctxvars::detail
