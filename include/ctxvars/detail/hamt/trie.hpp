// A persistent hash array mapped trie (CHAMP variant) with transient updates.
//
// `trie` is a handle to an immutable tree of nodes. Copying a handle is O(1)
// (one reference count). `insert`/`erase` on a handle change only that handle:
// nodes that the handle alone owns are updated in place, shared ones are
// copied along the path (O(log32 n) nodes), so other handles never see a
// change. `set`/`without` are the persistent spellings that leave *this alone.
//
// Strong exception guarantee: every update runs in three passes — descend
// (the only place Hash and Eq run, so they may throw), allocate every node the
// update needs, then build (noexcept). A throw leaves the trie and the
// arguments untouched. K and V must be nothrow copy- and move-constructible;
// a value passed as V&& is moved from only when the update succeeds.
//
// Thread safety: const operations on distinct handles sharing nodes are safe
// from any threads. A handle itself is not synchronised: one writer, or many
// readers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "bits.hpp"
#include "iterator.hpp"
#include "node.hpp"

namespace ctxvars::detail::hamt {

template <class K, class V>
struct entry {
  hash_t hash;
  K key;
  V value;
};

template <class K, class V, class Hash = std::hash<K>, class Eq = std::equal_to<K>,
          unsigned B = 5>
class trie {
 public:
  using key_type = K;
  using mapped_type = V;
  using entry_type = entry<K, V>;
  using node_type = node<entry_type>;
  using bits_type = bits<B>;
  using iterator = hamt::iterator<node_type, B>;
  using const_iterator = iterator;
  static constexpr unsigned max_depth = bits_type::max_depth;

  // Nodes an update stopped referencing. Releasing them may destroy values
  // (running arbitrary destructors), so it waits until the update is complete;
  // a caller holding a lock passes its own list and lets it die after unlocking.
  class retired {
   public:
    retired() noexcept = default;
    retired(const retired&) = delete;
    retired& operator=(const retired&) = delete;
    ~retired() {
      for (unsigned i = 0; i < count_; ++i) node_type::release(nodes_[i]);
    }
    void add(node_type* n) noexcept { nodes_[count_++] = n; }

   private:
    node_type* nodes_[bits_type::max_depth + 3];
    unsigned count_ = 0;
  };

  static_assert(std::is_nothrow_copy_constructible_v<K> && std::is_nothrow_move_constructible_v<K>,
                "trie keys must be nothrow copy/move constructible");
  static_assert(std::is_nothrow_copy_constructible_v<V> && std::is_nothrow_move_constructible_v<V>,
                "trie values must be nothrow copy/move constructible");

  trie() noexcept = default;
  explicit trie(Hash h, Eq e = Eq{}) noexcept : hash_(std::move(h)), eq_(std::move(e)) {}
  trie(const trie& o) noexcept : root_(o.root_), size_(o.size_), hash_(o.hash_), eq_(o.eq_) {
    if (root_) root_->retain();
  }
  trie(trie&& o) noexcept
      : root_(std::exchange(o.root_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        hash_(std::move(o.hash_)),
        eq_(std::move(o.eq_)) {}
  trie& operator=(trie o) noexcept {
    swap(o);
    return *this;
  }
  ~trie() {
    if (root_) node_type::release(root_);
  }
  void swap(trie& o) noexcept {
    std::swap(root_, o.root_);
    std::swap(size_, o.size_);
    std::swap(hash_, o.hash_);
    std::swap(eq_, o.eq_);
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  // O(1): true when both handles are the same snapshot (same root node).
  bool identical(const trie& o) const noexcept { return root_ == o.root_; }
  const node_type* root() const noexcept { return root_; }

  iterator begin() const noexcept { return iterator(root_); }
  iterator end() const noexcept { return iterator(); }

  hash_t hash_of(const K& k) const { return static_cast<hash_t>(hash_(k)); }

  // Lookup: O(log32 n), no allocation. The pointer stays valid while this
  // handle is neither updated nor destroyed.
  const V* find(const K& k) const { return find(k, hash_of(k)); }
  const V* find(const K& k, hash_t h) const {
    const node_type* n = root_;
    unsigned depth = 0;
    while (n) {
      if (n->collision) {
        const entry_type* d = n->data();
        for (std::uint32_t i = 0; i < n->ndata; ++i)
          if (eq_(d[i].key, k)) return &d[i].value;
        return nullptr;
      }
      const bitmap_t bit = bits_type::bit(h, depth);
      if (n->datamap & bit) {
        const entry_type& e = n->data()[index_of(n->datamap, bit)];
        return (e.hash == h && eq_(e.key, k)) ? &e.value : nullptr;
      }
      if (!(n->nodemap & bit)) return nullptr;
      n = n->children()[index_of(n->nodemap, bit)];
      ++depth;
    }
    return nullptr;
  }
  bool contains(const K& k) const { return find(k) != nullptr; }

  // True when every node on the path to hash h (as far as it exists) belongs
  // to this handle alone, so that an insert there changes nodes in place.
  bool owns_path(hash_t h) const noexcept {
    const node_type* n = root_;
    for (unsigned depth = 0; n; ++depth) {
      if (!n->unique()) return false;
      if (n->collision) return true;
      const bitmap_t bit = bits_type::bit(h, depth);
      if (!(n->nodemap & bit)) return true;
      n = n->children()[index_of(n->nodemap, bit)];
    }
    return true;
  }

  // Borrowed handles (used by write_log.hpp): `borrow(o)` makes this empty
  // handle read o's nodes without counting a reference; the caller keeps o's
  // nodes alive, never updates this handle, and calls `forget()` before it
  // is destroyed.
  void borrow(const trie& o) noexcept {
    root_ = o.root_;
    size_ = o.size_;
  }
  void forget() noexcept {
    root_ = nullptr;
    size_ = 0;
  }

  // Persistent updates: a new handle, *this unchanged.
  trie set(K k, V v) const {
    trie t(*this);
    t.insert(std::move(k), std::move(v));
    return t;
  }
  trie without(const K& k) const {
    trie t(*this);
    t.erase(k);
    return t;
  }

  // Inserts or replaces. Returns true when the key was new. When it was not and
  // `old` is given, the previous value is moved (or copied, if shared) there.
  // Displaced values and nodes are destroyed when the call returns, or, given
  // `old` and `r`, when the caller lets them go.
  bool insert(K k, V&& v, V* old = nullptr) {
    const hash_t h = hash_of(k);
    return insert(h, std::move(k), std::move(v), old);
  }
  bool insert(K k, const V& v, V* old = nullptr) {
    V copy(v);
    return insert(std::move(k), std::move(copy), old);
  }
  bool insert(hash_t h, K k, V&& v, V* old = nullptr, retired* r = nullptr);

  // The hot path of insert: if the key is present and every node on its path
  // belongs to this handle alone, swaps the value in place (the previous one
  // goes to `old`) and returns true; otherwise changes nothing and returns
  // false. Never allocates.
  bool replace_if_owned(hash_t h, const K& k, V& v, V& old) {
    node_type* n = root_;
    if (!n || !n->unique()) return false;
    for (unsigned depth = 0;; ++depth) {
      if (n->collision) {
        entry_type* d = n->data();
        for (std::uint32_t i = 0; i < n->ndata; ++i)
          if (eq_(d[i].key, k)) {
            old = std::move(d[i].value);
            d[i].value = std::move(v);
            return true;
          }
        return false;
      }
      const bitmap_t bit = bits_type::bit(h, depth);
      if (n->datamap & bit) {
        entry_type& e = n->data()[index_of(n->datamap, bit)];
        if (e.hash != h || !eq_(e.key, k)) return false;
        old = std::move(e.value);
        e.value = std::move(v);
        return true;
      }
      if (!(n->nodemap & bit)) return false;
      n = n->children()[index_of(n->nodemap, bit)];
      if (!n->unique()) return false;
    }
  }

  // Removes the key if present (returns whether it was); its value goes to `old`.
  bool erase(const K& k, V* old = nullptr) { return erase(hash_of(k), k, old); }
  bool erase(hash_t h, const K& k, V* old = nullptr, retired* r = nullptr);

  // Throws std::logic_error describing the first broken structural rule.
  void check_invariants() const;

  // Calls f(entry) for the entries that belong to this handle alone: those in
  // nodes reached from a uniquely held root through uniquely held nodes. (A
  // garbage collector may count these references as this handle's; shared
  // ones belong to no single handle.) Stops and returns f's first non-zero
  // result. Only meaningful while no other thread changes the counts.
  template <class F>
  int for_each_owned(F&& f) const {
    if (!root_ || !root_->unique()) return 0;
    auto walk = [&](auto& self, const node_type* n) -> int {
      for (std::uint32_t i = 0; i < n->ndata; ++i)
        if (int r = f(n->data()[i])) return r;
      for (std::uint32_t i = 0; i < n->nchild; ++i) {
        const node_type* c = n->children()[i];
        if (c->unique())
          if (int r = self(self, c)) return r;
      }
      return 0;
    };
    return walk(walk, root_);
  }

  // Every counted reference this handle holds, for a collector outside the core
  // that counts references itself (the Python module's, python/gc.cpp): v.enter(n,
  // refs) for each reference to a node — the root's, then each parent's to its
  // children — with the node's reference count (acquire); when it returns true, the
  // node's entries (v.entry(e), false: stop the walk) and children follow. A node
  // reached through several references is entered once per reference. Returns
  // false if v stopped it. No allocation; recursion depth at most max_levels.
  // Thread safety: as for const operations, while no handle that owns one of these
  // nodes alone is updated (the caller holds whatever lock keeps this handle still).
  template <class Visitor>
  bool walk_references(Visitor& v) const {
    return !root_ || walk_node(root_, v);
  }
  template <class Visitor>
  static bool walk_node(const node_type* n, Visitor& v) {
    if (!v.enter(static_cast<const void*>(n), n->refs.load(std::memory_order_acquire))) return true;
    const entry_type* d = n->data();
    for (std::uint32_t i = 0; i < n->ndata; ++i)
      if (!v.entry(d[i])) return false;
    node_type* const* c = n->children();
    for (std::uint32_t i = 0; i < n->nchild; ++i)
      if (!walk_node(c[i], v)) return false;
    return true;
  }

 private:
  static constexpr unsigned max_levels = max_depth + 1;  // inner levels + collision level

  struct step {
    node_type* n;
    bitmap_t bit;
    bool owned;
  };

  // Nodes allocated before the build pass; freed raw if anything throws.
  struct fresh_nodes {
    node_type* nodes[2 * max_levels + 2];
    unsigned count = 0, next = 0;
    node_type* alloc(std::uint32_t nd, std::uint32_t nc, bool coll) {
      node_type* n = node_type::allocate(nd, nc, coll);
      nodes[count++] = n;
      return n;
    }
    node_type* take() noexcept { return nodes[next++]; }
    void commit() noexcept { count = 0; }
    ~fresh_nodes() {
      for (unsigned i = 0; i < count; ++i) node_type::deallocate(nodes[i]);
    }
  };

  static void put_entry(entry_type* dst, entry_type& src, bool steal) noexcept {
    if (steal)
      ::new (static_cast<void*>(dst)) entry_type(std::move(src));
    else
      ::new (static_cast<void*>(dst)) entry_type(src);
  }
  static void put_child(node_type** dst, node_type* c, bool steal) noexcept {
    if (!steal) c->retain();
    *dst = c;
  }
  // Copies (or, when stealing, moves) src's entries into m, skipping entry
  // `skip_data` and leaving a hole at `hole_data`; likewise for children.
  static void transfer(node_type* m, node_type* src, bool steal, std::uint32_t skip_data,
                       std::uint32_t hole_data, std::uint32_t skip_child,
                       std::uint32_t hole_child) noexcept {
    entry_type* sd = src->data();
    entry_type* md = m->data();
    for (std::uint32_t i = 0, j = 0; i < src->ndata; ++i) {
      if (i == skip_data) continue;
      if (j == hole_data) ++j;
      put_entry(md + j++, sd[i], steal);
    }
    node_type** sc = src->children();
    node_type** mc = m->children();
    for (std::uint32_t i = 0, j = 0; i < src->nchild; ++i) {
      if (i == skip_child) continue;
      if (j == hole_child) ++j;
      put_child(mc + j++, sc[i], steal);
    }
  }
  static constexpr std::uint32_t none = ~std::uint32_t{0};

  // Replace the child at `bit` of level `s` by `child` (the node the level
  // below became), in place when owned, else in a copy. Returns the node that
  // now stands for this level.
  static node_type* rebuild_parent(const step& s, node_type* old_child, bool old_child_disposed,
                                   node_type* child, fresh_nodes& fresh, retired& r) noexcept {
    const std::uint32_t ci = index_of(s.n->nodemap, s.bit);
    if (s.owned) {
      if (child != old_child) {
        if (!old_child_disposed) r.add(old_child);
        s.n->children()[ci] = child;
      }
      return s.n;
    }
    node_type* m = fresh.take();
    m->datamap = s.n->datamap;
    m->nodemap = s.n->nodemap;
    transfer(m, s.n, false, none, none, ci, ci);
    m->children()[ci] = child;
    return m;
  }

  void publish_root(node_type* new_root, bool old_root_disposed, retired& r) noexcept {
    if (new_root == root_) return;
    if (root_ && !old_root_disposed) r.add(root_);
    root_ = new_root;
  }

  node_type* root_ = nullptr;
  std::size_t size_ = 0;
  [[no_unique_address]] Hash hash_{};
  [[no_unique_address]] Eq eq_{};
};

// ---------------------------------------------------------------------------

template <class K, class V, class H, class E, unsigned B>
bool trie<K, V, H, E, B>::insert(hash_t h, K k, V&& v, V* old, retired* rp) {
  V displaced_local{};
  if (!old) old = &displaced_local;
  retired retired_local;
  retired& r = rp ? *rp : retired_local;
  if (!root_) {
    node_type* n = node_type::allocate(1, 0, false);
    n->datamap = bits_type::bit(h, 0);
    ::new (static_cast<void*>(n->data())) entry_type{h, std::move(k), std::move(v)};
    root_ = n;
    size_ = 1;
    return true;
  }

  // Pass 1: descend. Eq may throw here; nothing has changed yet.
  enum class action { replace, insert, split, append } act;
  step path[max_levels];
  unsigned depth = 0;
  node_type* n = root_;
  bool owned = n->unique();
  std::uint32_t idx = 0;
  for (;;) {
    if (n->collision) {
      act = action::append;
      entry_type* d = n->data();
      for (std::uint32_t i = 0; i < n->ndata; ++i)
        if (eq_(d[i].key, k)) {
          act = action::replace;
          idx = i;
          break;
        }
      break;
    }
    const bitmap_t bit = bits_type::bit(h, depth);
    if (n->datamap & bit) {
      idx = index_of(n->datamap, bit);
      const entry_type& e = n->data()[idx];
      act = (e.hash == h && eq_(e.key, k)) ? action::replace : action::split;
      break;
    }
    if (n->nodemap & bit) {
      path[depth] = {n, bit, owned};
      node_type* c = n->children()[index_of(n->nodemap, bit)];
      owned = owned && c->unique();
      n = c;
      ++depth;
      continue;
    }
    act = action::insert;
    break;
  }

  // Pass 2: allocate everything the build needs.
  fresh_nodes fresh;
  unsigned chain = 0;  // split: single-child nodes between this level and the pair
  hash_t other_hash = 0;
  bool pair_collides = false;
  switch (act) {
    case action::replace:
      if (!owned) fresh.alloc(n->ndata, n->nchild, n->collision);
      break;
    case action::insert:
    case action::append:
      fresh.alloc(n->ndata + 1, n->nchild, act == action::append);
      break;
    case action::split: {
      other_hash = n->data()[idx].hash;
      unsigned d = depth + 1;
      while (d < max_depth && bits_type::bit(other_hash, d) == bits_type::bit(h, d)) {
        ++chain;
        ++d;
      }
      pair_collides = (d == max_depth);
      fresh.alloc(n->ndata - 1, n->nchild + 1, false);
      for (unsigned i = 0; i < chain; ++i) fresh.alloc(0, 1, false);
      fresh.alloc(2, 0, pair_collides);
      break;
    }
  }
  for (unsigned i = depth; i-- > 0;)
    if (!path[i].owned) fresh.alloc(path[i].n->ndata, path[i].n->nchild, false);

  // Pass 3: build. Nothing below throws.
  fresh.commit();
  node_type* result = n;
  bool disposed = false;
  bool added = false;
  switch (act) {
    case action::replace: {
      entry_type& e = n->data()[idx];
      if (owned) {
        *old = std::move(e.value);
        e.value = std::move(v);
      } else {
        node_type* m = fresh.take();
        m->datamap = n->datamap;
        m->nodemap = n->nodemap;
        transfer(m, n, false, idx, idx, none, none);
        ::new (static_cast<void*>(m->data() + idx)) entry_type{e.hash, e.key, std::move(v)};
        *old = e.value;
        result = m;
      }
      break;
    }
    case action::insert:
    case action::append: {  // a new entry in this node (inner or collision)
      node_type* m = fresh.take();
      std::uint32_t at = n->ndata;
      if (act == action::insert) {
        const bitmap_t bit = bits_type::bit(h, depth);
        m->datamap = n->datamap | bit;
        m->nodemap = n->nodemap;
        at = index_of(m->datamap, bit);
      }
      transfer(m, n, owned, none, at, none, none);
      ::new (static_cast<void*>(m->data() + at)) entry_type{h, std::move(k), std::move(v)};
      if (owned) {
        node_type::dispose_shell(n);
        disposed = true;
      }
      result = m;
      added = true;
      break;
    }
    case action::split: {
      const bitmap_t bit = bits_type::bit(h, depth);
      node_type* m = fresh.take();
      node_type* links[max_levels];
      for (unsigned i = 0; i < chain; ++i) links[i] = fresh.take();
      node_type* pair = fresh.take();
      // The pair: the displaced entry and the new one, ordered by branch.
      entry_type& displaced = n->data()[idx];
      const unsigned pd = depth + 1 + chain;
      std::uint32_t at_old = 0, at_new = 1;
      if (!pair_collides) {
        const bitmap_t bo = bits_type::bit(other_hash, pd), bn = bits_type::bit(h, pd);
        pair->datamap = bo | bn;
        at_old = index_of(pair->datamap, bo);
        at_new = index_of(pair->datamap, bn);
      }
      put_entry(pair->data() + at_old, displaced, owned);
      ::new (static_cast<void*>(pair->data() + at_new)) entry_type{h, std::move(k), std::move(v)};
      node_type* below = pair;
      for (unsigned i = chain; i-- > 0;) {
        links[i]->nodemap = bits_type::bit(h, depth + 1 + i);
        links[i]->children()[0] = below;
        below = links[i];
      }
      m->datamap = n->datamap & ~bit;
      m->nodemap = n->nodemap | bit;
      const std::uint32_t ci = index_of(m->nodemap, bit);
      transfer(m, n, owned, idx, none, none, ci);
      m->children()[ci] = below;
      if (owned) {
        node_type::dispose_shell(n);
        disposed = true;
      }
      result = m;
      added = true;
      break;
    }
  }
  for (unsigned i = depth; i-- > 0;) {
    node_type* old_child = (i + 1 == depth) ? n : path[i + 1].n;
    node_type* up = rebuild_parent(path[i], old_child, disposed, result, fresh, r);
    disposed = false;  // a parent is never disposed: it keeps its shape
    result = up;
  }
  publish_root(result, disposed, r);
  if (added) ++size_;
  return added;
}

template <class K, class V, class H, class E, unsigned B>
bool trie<K, V, H, E, B>::erase(hash_t h, const K& k, V* old, retired* rp) {
  if (!root_) return false;
  V displaced_local{};
  if (!old) old = &displaced_local;
  retired retired_local;
  retired& r = rp ? *rp : retired_local;

  // Pass 1: descend and find. Eq may throw; nothing has changed yet.
  step path[max_levels];
  unsigned depth = 0;
  node_type* n = root_;
  bool owned = n->unique();
  std::uint32_t idx = none;
  for (;;) {
    if (n->collision) {
      entry_type* d = n->data();
      for (std::uint32_t i = 0; i < n->ndata; ++i)
        if (eq_(d[i].key, k)) {
          idx = i;
          break;
        }
      break;
    }
    const bitmap_t bit = bits_type::bit(h, depth);
    if (n->datamap & bit) {
      const std::uint32_t i = index_of(n->datamap, bit);
      const entry_type& e = n->data()[i];
      if (e.hash == h && eq_(e.key, k)) idx = i;
      break;
    }
    if (!(n->nodemap & bit)) break;
    path[depth] = {n, bit, owned};
    node_type* c = n->children()[index_of(n->nodemap, bit)];
    owned = owned && c->unique();
    n = c;
    ++depth;
  }
  if (idx == none) return false;

  // Which levels collapse: a non-root node left with one entry and no child
  // is folded into its parent (canonical form), possibly all the way up.
  const bool leaf_collapses =
      depth > 0 && n->ndata == 2 && n->nchild == 0;  // also true of 2-entry collision nodes
  const bool root_empties = depth == 0 && n->ndata == 1 && n->nchild == 0;
  unsigned target = depth;  // the level that gets a new shape
  if (leaf_collapses) {
    target = depth - 1;
    while (target > 0 && path[target].n->ndata == 0 && path[target].n->nchild == 1) --target;
  }

  // Pass 2: allocate.
  fresh_nodes fresh;
  if (!root_empties) {
    node_type* t = (target == depth) ? n : path[target].n;
    if (target == depth)
      fresh.alloc(t->ndata - 1, t->nchild, t->collision);
    else
      fresh.alloc(t->ndata + 1, t->nchild - 1, false);
    for (unsigned i = target; i-- > 0;)
      if (!path[i].owned) fresh.alloc(path[i].n->ndata, path[i].n->nchild, false);
  }

  // Pass 3: build (noexcept).
  fresh.commit();
  entry_type* nd = n->data();
  *old = owned ? std::move(nd[idx].value) : nd[idx].value;
  if (root_empties) {
    if (owned)
      node_type::dispose_shell(n);
    else
      r.add(n);
    root_ = nullptr;
    size_ = 0;
    return true;
  }

  node_type* result;
  bool disposed = false;
  if (target == depth) {
    node_type* m = fresh.take();
    m->datamap = n->datamap;
    m->nodemap = n->nodemap;
    if (!n->collision) m->datamap &= ~bits_type::bit(h, depth);
    transfer(m, n, owned, idx, none, none, none);
    if (owned) {
      node_type::dispose_shell(n);
      disposed = true;
    }
    result = m;
  } else {
    // The survivor of the collapsing leaf climbs to level `target`.
    entry_type& survivor = nd[idx == 0 ? 1 : 0];
    node_type* t = path[target].n;
    const bool t_owned = path[target].owned;
    const bitmap_t bit = path[target].bit;
    node_type* m = fresh.take();
    m->datamap = t->datamap | bit;
    m->nodemap = t->nodemap & ~bit;
    const std::uint32_t at = index_of(m->datamap, bit);
    const std::uint32_t ci = index_of(t->nodemap, bit);
    put_entry(m->data() + at, survivor, owned);
    transfer(m, t, t_owned, none, at, ci, none);
    // Drop the collapsed chain: nodes between target and the leaf, then the leaf.
    if (t_owned) {
      // t's reference to its child is ours to drop; below it, ownership decides.
      for (unsigned i = target + 1; i <= depth; ++i) {
        node_type* cur = (i == depth) ? n : path[i].n;
        const bool cur_owned = (i == depth) ? owned : path[i].owned;
        if (cur_owned) {
          if (i == depth)
            node_type::dispose_shell(cur);
          else
            node_type::deallocate(cur);  // no entries; its one child handled next
        } else {
          r.add(cur);
          break;  // the rest stays alive in whoever else shares it
        }
      }
      node_type::dispose_shell(t);
      disposed = true;
    }
    result = m;
  }
  for (unsigned i = target; i-- > 0;) {
    node_type* old_child = (i + 1 == depth) ? n : path[i + 1].n;
    node_type* up = rebuild_parent(path[i], old_child, disposed, result, fresh, r);
    disposed = false;
    result = up;
  }
  publish_root(result, disposed, r);
  --size_;
  return true;
}

template <class K, class V, class H, class E, unsigned B>
void trie<K, V, H, E, B>::check_invariants() const {
  auto fail = [](const std::string& what) { throw std::logic_error("hamt invariant: " + what); };
  std::size_t counted = 0;
  // Recursive walk: (node, depth, hash prefix bits that the path fixed).
  auto walk = [&](auto& self, const node_type* n, unsigned depth, hash_t prefix) -> void {
    if (n->refs.load(std::memory_order_relaxed) == 0) fail("node with zero references");
    const hash_t prefix_mask =
        bits_type::shift_of(depth) >= 64 ? ~hash_t{0} : ((hash_t{1} << bits_type::shift_of(depth)) - 1);
    const entry_type* d = n->data();
    if (n->collision) {
      if (depth != max_depth) fail("collision node above the last level");
      if (n->ndata < 2) fail("collision node with fewer than two entries");
      if (n->nchild != 0 || n->datamap || n->nodemap) fail("collision node with a map");
      for (std::uint32_t i = 0; i < n->ndata; ++i) {
        if (d[i].hash != d[0].hash) fail("collision node with different hashes");
        if ((d[i].hash & prefix_mask) != (prefix & prefix_mask)) fail("entry off its path");
        for (std::uint32_t j = 0; j < i; ++j)
          if (eq_(d[i].key, d[j].key)) fail("duplicate key in collision node");
      }
      counted += n->ndata;
      return;
    }
    if (depth >= max_depth) fail("inner node below the last level");
    if (static_cast<std::uint32_t>(popcount32(n->datamap)) != n->ndata) fail("datamap/ndata mismatch");
    if (static_cast<std::uint32_t>(popcount32(n->nodemap)) != n->nchild) fail("nodemap/nchild mismatch");
    if (n->datamap & n->nodemap) fail("branch holds both an entry and a child");
    if (depth > 0 && n->nchild == 0 && n->ndata < 2) fail("non-root node that should be inlined");
    if (depth > 0 && n->ndata + n->nchild == 0) fail("empty non-root node");
    if (depth == 0 && n->ndata + n->nchild == 0) fail("empty root node");
    for (std::uint32_t i = 0; i < n->ndata; ++i) {
      if ((d[i].hash & prefix_mask) != (prefix & prefix_mask)) fail("entry off its path");
      const bitmap_t bit = bits_type::bit(d[i].hash, depth);
      if (!(n->datamap & bit) || index_of(n->datamap, bit) != i) fail("entry in the wrong slot");
    }
    counted += n->ndata;
    std::uint32_t ci = 0;
    for (unsigned b = 0; b < bits_type::branching; ++b) {
      if (!(n->nodemap & (bitmap_t{1} << b))) continue;
      const hash_t p = prefix | (hash_t{b} << bits_type::shift_of(depth));
      self(self, n->children()[ci++], depth + 1, p);
    }
  };
  if (root_) walk(walk, root_, 0, 0);
  if (counted != size_) fail("size " + std::to_string(size_) + " but " + std::to_string(counted) + " entries");
}

}  // namespace ctxvars::detail::hamt
