// Trie nodes: one variable-size allocation holding a header, the child
// pointers and the entries (CHAMP layout: entries and children kept apart, so
// iteration and equality walk entries without type tests).
//
// Reference counting. A node is shared by every trie (snapshot) that reaches
// it; `refs` counts the parents and trie handles pointing at it. A node whose
// count is 1, reached through a path of such nodes from a trie handle whose
// root count is 1, belongs to that handle alone: an update may then change it
// in place (immer's "transient" updates) instead of copying the path.
//
// Memory ordering: increments are relaxed (a new reference is always made from
// an existing one). Decrements are acq_rel so that the thread freeing a node
// sees every write made through the other references. The "owned" test loads
// with acquire for the same reason: it pairs with another holder's release.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

#include "bits.hpp"

namespace ctxvars::detail::hamt {

template <class Entry>
struct node {
  std::atomic<std::uint32_t> refs{1};
  std::uint32_t ndata = 0;   // entries stored in this node
  std::uint32_t nchild = 0;  // child nodes (always 0 in a collision node)
  bitmap_t datamap = 0;      // inner node: which branches hold an entry
  bitmap_t nodemap = 0;      // inner node: which branches hold a child
  bool collision = false;    // entries all share one full hash

  static_assert(alignof(Entry) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__,
                "over-aligned trie entries are not supported");

  static constexpr std::size_t round_up(std::size_t n, std::size_t a) noexcept {
    return (n + a - 1) / a * a;
  }
  static constexpr std::size_t children_offset = round_up(sizeof(node), alignof(node*));

  std::size_t data_offset() const noexcept {
    return round_up(children_offset + nchild * sizeof(node*), alignof(Entry));
  }
  node** children() noexcept {
    return reinterpret_cast<node**>(reinterpret_cast<std::byte*>(this) + children_offset);
  }
  node* const* children() const noexcept {
    return reinterpret_cast<node* const*>(reinterpret_cast<const std::byte*>(this) +
                                          children_offset);
  }
  Entry* data() noexcept {
    return std::launder(
        reinterpret_cast<Entry*>(reinterpret_cast<std::byte*>(this) + data_offset()));
  }
  const Entry* data() const noexcept {
    return std::launder(reinterpret_cast<const Entry*>(reinterpret_cast<const std::byte*>(this) +
                                                       data_offset()));
  }

  static std::size_t bytes_for(std::uint32_t nd, std::uint32_t nc) noexcept {
    return round_up(children_offset + nc * sizeof(node*), alignof(Entry)) + nd * sizeof(Entry);
  }

  // Raw node: header built (refs = 1), entries and children not yet.
  // Throws std::bad_alloc; nothing else.
  static node* allocate(std::uint32_t nd, std::uint32_t nc, bool is_collision) {
    void* p = ::operator new(bytes_for(nd, nc));
    node* n = ::new (p) node;
    n->ndata = nd;
    n->nchild = nc;
    n->collision = is_collision;
    return n;
  }
  // Frees the storage only: entries must already be destroyed, children adopted.
  static void deallocate(node* n) noexcept {
    n->~node();
    ::operator delete(static_cast<void*>(n));
  }
  // Destroys the entries (possibly moved-from) and frees the storage, leaving
  // the children to whoever adopted them.
  static void dispose_shell(node* n) noexcept {
    Entry* d = n->data();
    for (std::uint32_t i = 0; i < n->ndata; ++i) d[i].~Entry();
    deallocate(n);
  }

  void retain() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  bool unique() const noexcept { return refs.load(std::memory_order_acquire) == 1; }

  static void release(node* n) noexcept {
    // A count of 1 seen with acquire means no other holder exists, and none can
    // appear (references are only made from references): skip the locked RMW.
    if (n->refs.load(std::memory_order_acquire) != 1 &&
        n->refs.fetch_sub(1, std::memory_order_acq_rel) != 1)
      return;
    node** c = n->children();
    for (std::uint32_t i = 0; i < n->nchild; ++i) release(c[i]);
    dispose_shell(n);
  }
};

}  // namespace ctxvars::detail::hamt
