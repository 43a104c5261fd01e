// Differential fuzzing of the trie against std::unordered_map: random
// insert / erase / lookup / snapshot / iterate sequences, with deliberately
// weak hashes (full collisions, long shared prefixes) and two branching
// factors, checking the structural invariants after every step. The same
// input then drives the layered map of write_log.hpp (the trie under write
// logs, what a context stores) with tiny logs and stacks, so that layers are
// added, masked and folded at every few steps, on the main handle and on
// its snapshots.
//
// libFuzzer entry point; tests/fuzz/replay_main.cpp replays saved inputs
// (the corpus and every crash ever found) without libFuzzer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ctxvars/detail/hamt/trie.hpp"
#include "ctxvars/detail/write_log.hpp"
#include "int_box.hpp"

namespace {

struct weak_hash {  // 3 bits of hash: most keys collide in full
  std::size_t operator()(int k) const noexcept { return static_cast<std::size_t>(k % 8); }
};
struct prefix_hash {  // distinct, but equal in the first 40 bits
  std::size_t operator()(int k) const noexcept { return static_cast<std::size_t>(k) << 40; }
};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "hamt_fuzz: %s\n", what);
  std::abort();
}

template <class Trie>
void check_equal(const Trie& t, const std::unordered_map<int, int>& ref) {
  if (t.size() != ref.size()) fail("size differs");
  std::size_t n = 0;
  for (const auto& e : t) {
    auto it = ref.find(e.key);
    if (it == ref.end() || it->second != e.value) fail("iteration differs");
    ++n;
  }
  if (n != ref.size()) fail("iteration count differs");
}

template <class Trie>
void run(const std::uint8_t* data, std::size_t size) {
  Trie t;
  std::unordered_map<int, int> ref;
  std::vector<std::pair<Trie, std::unordered_map<int, int>>> snaps;
  for (std::size_t i = 0; i + 1 < size; i += 2) {
    const int op = data[i] % 8;
    const int key = data[i + 1];
    const int val = static_cast<int>(i);
    switch (op) {
      case 0:
      case 1: {
        int old = -1;
        const bool added = t.insert(key, val, &old);
        auto it = ref.find(key);
        if (added != (it == ref.end())) fail("insert: added flag");
        if (!added && old != it->second) fail("insert: old value");
        ref[key] = val;
        break;
      }
      case 2:
      case 3: {
        int old = -1;
        const bool erased = t.erase(key, &old);
        auto it = ref.find(key);
        if (erased != (it != ref.end())) fail("erase: result");
        if (erased) {
          if (old != it->second) fail("erase: old value");
          ref.erase(it);
        }
        break;
      }
      case 4: {
        const int* v = t.find(key);
        auto it = ref.find(key);
        if ((v != nullptr) != (it != ref.end()) || (v && *v != it->second)) fail("find");
        break;
      }
      case 5:
        if (snaps.size() < 8) snaps.emplace_back(t, ref);
        break;
      case 6:
        if (!snaps.empty()) snaps.erase(snaps.begin() + static_cast<long>(key % snaps.size()));
        break;
      default: {
        // a persistent update must leave its source alone
        Trie u = t.set(key, val + 1);
        Trie w = u.without(key ^ 1);
        check_equal(t, ref);
        if (!u.find(key) || *u.find(key) != val + 1) fail("persistent set");
        w.check_invariants();
        break;
      }
    }
    t.check_invariants();
    if (t.size() != ref.size()) fail("size after step");
  }
  check_equal(t, ref);
  for (auto& [s, r] : snaps) {
    s.check_invariants();
    check_equal(s, r);
  }
}

template <class Map>
void check_layered(const Map& m, const std::unordered_map<int, int>& ref) {
  m.check_invariants();
  if (m.size() != ref.size()) fail("layered: size differs");
  std::size_t n = 0;
  for (const auto& e : m) {
    auto it = ref.find(static_cast<int>(e.key));
    if (it == ref.end() || it->second != e.value.value()) fail("layered: iteration differs");
    ++n;
  }
  if (n != ref.size()) fail("layered: iteration count differs");
  for (const auto& [k, v] : ref) {
    const auto* p = m.find(static_cast<std::uint64_t>(k));
    if (!p || p->value() != v) fail("layered: find differs");
  }
}

// Ops on the layered map: assign / remove / find on the main handle, take or
// drop a snapshot, write to a snapshot, swap the main handle with one.
template <class Map>
void run_layered(const std::uint8_t* data, std::size_t size) {
  using ctxvars_test::int_ptr;
  {
    Map t;
    std::unordered_map<int, int> ref;
    std::vector<std::pair<Map, std::unordered_map<int, int>>> snaps;
    for (std::size_t i = 0; i + 1 < size; i += 2) {
      const int op = data[i] % 8;
      const int key = data[i + 1] % 64;
      const int val = static_cast<int>(i);
      const auto k = static_cast<std::uint64_t>(key);
      switch (op) {
        case 0:
        case 1: {
          int_ptr old;
          typename Map::retired r;
          const bool added = t.assign(k, int_ptr(val), old, r);
          auto it = ref.find(key);
          if (added != (it == ref.end())) fail("layered assign: added flag");
          if (!added && (!old || old.value() != it->second)) fail("layered assign: old value");
          ref[key] = val;
          break;
        }
        case 2: {
          int_ptr old;
          typename Map::retired r;
          const bool removed = t.remove(k, old, r);
          auto it = ref.find(key);
          if (removed != (it != ref.end())) fail("layered remove: result");
          if (removed) {
            if (!old || old.value() != it->second) fail("layered remove: old value");
            ref.erase(it);
          }
          break;
        }
        case 3: {
          const auto* p = t.find(k);
          auto it = ref.find(key);
          if ((p != nullptr) != (it != ref.end()) || (p && p->value() != it->second)) fail("layered find");
          break;
        }
        case 4:
          if (snaps.size() < 8) snaps.emplace_back(t, ref);
          break;
        case 5:
          if (!snaps.empty()) snaps.erase(snaps.begin() + static_cast<long>(static_cast<std::size_t>(key) % snaps.size()));
          break;
        case 6:
          if (!snaps.empty()) {
            auto& [s, r] = snaps[static_cast<std::size_t>(key) % snaps.size()];
            if (val % 3 == 0) {
              s.remove(k ^ 1);
              r.erase(key ^ 1);
            } else {
              s.assign(k ^ 1, int_ptr(val));
              r[key ^ 1] = val;
            }
            check_layered(s, r);
          }
          break;
        default:
          if (!snaps.empty()) {
            auto& [s, r] = snaps[static_cast<std::size_t>(key) % snaps.size()];
            std::swap(s, t);
            std::swap(r, ref);
          }
          break;
      }
      check_layered(t, ref);
    }
    for (auto& [s, r] : snaps) check_layered(s, r);
  }
  if (ctxvars_test::int_box::alive.load() != 0) fail("layered: values leaked or freed twice");
}

struct id_hash {
  std::uint64_t operator()(std::uint64_t k) const noexcept { return k; }
};
struct weak_id_hash {  // 3 bits: the trie below is mostly collision nodes
  std::uint64_t operator()(std::uint64_t k) const noexcept { return k % 8; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using ctxvars::detail::hamt::trie;
  run<trie<int, int, weak_hash, std::equal_to<int>, 2>>(data, size);
  run<trie<int, int, prefix_hash, std::equal_to<int>, 5>>(data, size);
  run<trie<int, int, std::hash<int>, std::equal_to<int>, 5>>(data, size);
  using ctxvars::detail::default_layer_alloc;
  using ctxvars::detail::layered_map;
  using ctxvars_test::int_ptr;
  run_layered<layered_map<int_ptr, id_hash, default_layer_alloc, 5, 8, 4>>(data, size);
  run_layered<layered_map<int_ptr, id_hash, default_layer_alloc, 2, 2, 1>>(data, size);
  run_layered<layered_map<int_ptr, weak_id_hash, default_layer_alloc, 2, 3, 2>>(data, size);
  return 0;
}
