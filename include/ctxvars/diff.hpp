// What changed between two contexts: the building block of watchers
// (per-variable change notifications, as .NET's AsyncLocal offers).
//
//   ctxvars::diff(before, after, [](const ctxvars::change& c) {
//     std::cout << c.name << ": " << (c.before ? to_string(*c.before) : "unset") << " -> "
//               << (c.after ? to_string(*c.after) : "unset") << "\n";
//   });
//
// The two tries are walked side by side and every subtree the two snapshots
// share (the same node) is skipped, so the cost follows what changed, not the
// size of the contexts: a copy that set one variable is one path. A variable
// counts as changed when its value is another value object (a set, even to an
// equal value, is a change; a set undone by reset is not).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "context.hpp"

namespace ctxvars {

// One variable whose value differs: `before` is absent when it was added,
// `after` when it was removed. Entries give typed access (entry::get_if<T>).
struct change {
  std::uint64_t var_id;
  std::string_view name;  // valid during the callback
  std::optional<context::entry> before, after;
};

namespace detail {

template <class F>
class trie_differ {
 public:
  using node_t = context_map::node_type;
  using entry_t = context_map::entry_type;
  using bits_t = context_map::bits_type;

  explicit trie_differ(F& f) : f_(f) {}

  void walk(const node_t* a, const node_t* b) {
    if (a == b) return;
    if (!a || !b || a->collision || b->collision) return merge(collect(a), collect(b));
    for (unsigned i = 0; i < bits_t::branching; ++i) {
      const hamt::bitmap_t bit = hamt::bitmap_t{1} << i;
      const bool ad = a->datamap & bit, an = a->nodemap & bit, bd = b->datamap & bit, bn = b->nodemap & bit;
      if (!(ad || an || bd || bn)) continue;
      if (an && bn) {
        walk(a->children()[hamt::index_of(a->nodemap, bit)], b->children()[hamt::index_of(b->nodemap, bit)]);
      } else if (ad && bd) {
        const entry_t& ea = a->data()[hamt::index_of(a->datamap, bit)];
        const entry_t& eb = b->data()[hamt::index_of(b->datamap, bit)];
        if (ea.key == eb.key) {
          if (ea.value.get() != eb.value.get()) report(&ea, &eb);
        } else {
          merge({&ea}, {&eb});
        }
      } else {
        std::vector<const entry_t*> la, lb;
        if (ad) la.push_back(&a->data()[hamt::index_of(a->datamap, bit)]);
        if (an) collect(a->children()[hamt::index_of(a->nodemap, bit)], la);
        if (bd) lb.push_back(&b->data()[hamt::index_of(b->datamap, bit)]);
        if (bn) collect(b->children()[hamt::index_of(b->nodemap, bit)], lb);
        merge(std::move(la), std::move(lb));
      }
    }
  }

 private:
  static void collect(const node_t* n, std::vector<const entry_t*>& out) {
    if (!n) return;
    for (std::uint32_t i = 0; i < n->ndata; ++i) out.push_back(&n->data()[i]);
    for (std::uint32_t i = 0; i < n->nchild; ++i) collect(n->children()[i], out);
  }
  static std::vector<const entry_t*> collect(const node_t* n) {
    std::vector<const entry_t*> v;
    collect(n, v);
    return v;
  }
  // Subtrees of different shapes: compare their entries by key.
  void merge(std::vector<const entry_t*> a, std::vector<const entry_t*> b) {
    auto by_key = [](const entry_t* x, const entry_t* y) { return x->key < y->key; };
    std::sort(a.begin(), a.end(), by_key);
    std::sort(b.begin(), b.end(), by_key);
    std::size_t i = 0, j = 0;
    while (i < a.size() || j < b.size()) {
      if (j == b.size() || (i < a.size() && a[i]->key < b[j]->key)) {
        report(a[i++], nullptr);
      } else if (i == a.size() || b[j]->key < a[i]->key) {
        report(nullptr, b[j++]);
      } else {
        if (a[i]->value.get() != b[j]->value.get()) report(a[i], b[j]);
        ++i, ++j;
      }
    }
  }
  void report(const entry_t* a, const entry_t* b) {
    const entry_t* any = a ? a : b;
    change c{any->key, any->value->info->name, std::nullopt, std::nullopt};
    if (a) c.before.emplace(context_access::entry(a->value));
    if (b) c.after.emplace(context_access::entry(b->value));
    f_(static_cast<const change&>(c));
  }
  F& f_;
};

}  // namespace detail

// Calls f(const change&) for every variable whose value differs between
// `before` and `after` (snapshots taken at the call; safe while other threads
// run in either). Order: unspecified. Cost: O(changes x log32 n) plus the
// subtrees whose shape differs; O(1) when `after` is an unchanged copy of
// `before`. Allocates only where subtree shapes differ. Throws what f throws.
template <class F>
void diff(const context& before, const context& after, F&& f) {
  const detail::context_map a = detail::context_access::impl(before)->snapshot();
  const detail::context_map b = detail::context_access::impl(after)->snapshot();
  detail::trie_differ<std::remove_reference_t<F>> d(f);
  d.walk(a.root(), b.root());
}

}  // namespace ctxvars
