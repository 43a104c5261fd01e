// Differential fuzzing of the trie against std::unordered_map: random
// insert / erase / lookup / snapshot / iterate sequences, with deliberately
// weak hashes (full collisions, long shared prefixes) and two branching
// factors, checking the structural invariants after every step.
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using ctxvars::detail::hamt::trie;
  run<trie<int, int, weak_hash, std::equal_to<int>, 2>>(data, size);
  run<trie<int, int, prefix_hash, std::equal_to<int>, 5>>(data, size);
  run<trie<int, int, std::hash<int>, std::equal_to<int>, 5>>(data, size);
  return 0;
}
