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
  using trie_t = context_map::trie_type;
  using node_t = trie_t::node_type;
  using entry_t = trie_t::entry_type;
  using bits_t = trie_t::bits_type;

  // `skip`: sorted keys compared elsewhere (written to a log above the tries).
  trie_differ(F& f, const std::vector<std::uint64_t>& skip) : f_(f), skip_(skip) {}

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
  // A difference found in the tries, unless its key is compared elsewhere.
  void report(const entry_t* a, const entry_t* b) {
    if (!std::binary_search(skip_.begin(), skip_.end(), (a ? a : b)->key)) emit(a, b);
  }
  void emit(const entry_t* a, const entry_t* b) {
    const entry_t* any = a ? a : b;
    change c{any->key, any->value->info->name, std::nullopt, std::nullopt};
    if (a) c.before.emplace(context_access::entry(a->value));
    if (b) c.after.emplace(context_access::entry(b->value));
    f_(static_cast<const change&>(c));
  }
  F& f_;
  const std::vector<std::uint64_t>& skip_;
};

}  // namespace detail

namespace detail {
// diff() over two maps the caller keeps alive and unchanged meanwhile (watch.cpp
// hands it copies taken on the thread that writes them).
template <class F>
void diff_maps(const context_map& a, const context_map& b, F& f) {
  // A context is a trie under small write logs (detail/write_log.hpp): keys
  // written to either side's logs are compared by look-up; the tries are
  // walked side by side with those keys left out.
  std::vector<std::uint64_t> logged;
  a.for_each_logged_key([&](std::uint64_t k) { logged.push_back(k); });
  b.for_each_logged_key([&](std::uint64_t k) { logged.push_back(k); });
  std::sort(logged.begin(), logged.end());
  logged.erase(std::unique(logged.begin(), logged.end()), logged.end());
  using entry_t = context_map::entry_type;
  trie_differ<F> d(f, logged);
  for (std::uint64_t k : logged) {
    const box_ptr* pa = a.find(k, k);
    const box_ptr* pb = b.find(k, k);
    if ((pa ? pa->get() : nullptr) == (pb ? pb->get() : nullptr)) continue;
    // report() reads only key and value of the entries it is given.
    const entry_t ea{k, k, pa ? *pa : box_ptr()}, eb{k, k, pb ? *pb : box_ptr()};
    d.emit(pa ? &ea : nullptr, pb ? &eb : nullptr);
  }
  d.walk(a.base_trie().root(), b.base_trie().root());
}
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
  detail::diff_maps(a, b, f);
}

}  // namespace ctxvars
