#include "ctxvars/detail/hamt/trie.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <unordered_map>
#include <vector>

#include "counted.hpp"

using ctxvars::detail::hamt::trie;
using ctxvars_test::counted;

namespace {

struct weak_hash {  // 4 buckets: nearly every key collides in full
  std::size_t operator()(int k) const noexcept { return static_cast<std::size_t>(k & 3); }
};
struct prefix_hash {  // keys share long hash prefixes: deep chains of single-child nodes
  std::size_t operator()(int k) const noexcept { return static_cast<std::size_t>(k) << 40; }
};
struct mixing_hash {
  std::size_t operator()(int k) const noexcept {
    std::uint64_t x = static_cast<std::uint64_t>(k) * 0x9E3779B97F4A7C15ull;
    return static_cast<std::size_t>(x ^ (x >> 29));
  }
};

template <class Hash, unsigned Bits>
struct config {
  using map = trie<int, counted, Hash, std::equal_to<int>, Bits>;
};

template <class C>
class Trie : public ::testing::Test {
 protected:
  using map = typename C::map;
  void TearDown() override { EXPECT_EQ(counted::alive.load(), 0) << "values leaked or double-freed"; }
};

using configs = ::testing::Types<config<std::hash<int>, 5>, config<mixing_hash, 5>,
                                 config<mixing_hash, 2>, config<weak_hash, 5>, config<weak_hash, 2>,
                                 config<prefix_hash, 5>, config<prefix_hash, 3>>;
TYPED_TEST_SUITE(Trie, configs);

TYPED_TEST(Trie, StartsEmpty) {
  typename TestFixture::map m;
  EXPECT_EQ(m.size(), 0u);
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.find(1), nullptr);
  EXPECT_EQ(m.begin(), m.end());
  m.check_invariants();
}

TYPED_TEST(Trie, InsertFindReplaceErase) {
  typename TestFixture::map m;
  for (int i = 0; i < 300; ++i) EXPECT_TRUE(m.insert(i, counted(i * 10)));
  m.check_invariants();
  EXPECT_EQ(m.size(), 300u);
  for (int i = 0; i < 300; ++i) {
    ASSERT_NE(m.find(i), nullptr) << i;
    EXPECT_EQ(m.find(i)->v, i * 10);
  }
  EXPECT_EQ(m.find(300), nullptr);
  counted old;
  EXPECT_FALSE(m.insert(7, counted(-7), &old));
  EXPECT_EQ(old.v, 70);
  EXPECT_EQ(m.find(7)->v, -7);
  EXPECT_EQ(m.size(), 300u);
  for (int i = 0; i < 300; i += 2) EXPECT_TRUE(m.erase(i));
  EXPECT_FALSE(m.erase(0));
  m.check_invariants();
  EXPECT_EQ(m.size(), 150u);
  for (int i = 0; i < 300; ++i) EXPECT_EQ(m.find(i) != nullptr, i % 2 == 1) << i;
  for (int i = 1; i < 300; i += 2) EXPECT_TRUE(m.erase(i));
  m.check_invariants();
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.root(), nullptr);
}

TYPED_TEST(Trie, SnapshotsAreUnaffectedByLaterUpdates) {
  using trie_t = typename TestFixture::map;
  trie_t a;
  for (int i = 0; i < 100; ++i) a.insert(i, counted(i));
  trie_t b = a;  // O(1): same root
  EXPECT_TRUE(a.identical(b));
  b.insert(5, counted(500));
  b.insert(1000, counted(1000));
  b.erase(7);
  EXPECT_FALSE(a.identical(b));
  a.check_invariants();
  b.check_invariants();
  EXPECT_EQ(a.find(5)->v, 5);
  EXPECT_EQ(a.find(1000), nullptr);
  ASSERT_NE(a.find(7), nullptr);
  EXPECT_EQ(b.find(5)->v, 500);
  EXPECT_EQ(b.find(7), nullptr);
  EXPECT_EQ(a.size(), 100u);
  EXPECT_EQ(b.size(), 100u);
  trie_t c = a.set(3, counted(33));
  trie_t d = a.without(4);
  EXPECT_EQ(a.find(3)->v, 3);
  EXPECT_NE(a.find(4), nullptr);
  EXPECT_EQ(c.find(3)->v, 33);
  EXPECT_EQ(d.find(4), nullptr);
}

TYPED_TEST(Trie, IterationVisitsEveryEntryOnce) {
  typename TestFixture::map m;
  std::map<int, int> expect;
  for (int i = 0; i < 500; i += 3) {
    m.insert(i, counted(i + 1));
    expect[i] = i + 1;
  }
  std::map<int, int> seen;
  for (const auto& e : m) EXPECT_TRUE(seen.emplace(e.key, e.value.v).second);
  EXPECT_EQ(seen, expect);
}

TYPED_TEST(Trie, UniquelyOwnedUpdatesHappenInPlace) {
  typename TestFixture::map m;
  for (int i = 0; i < 64; ++i) m.insert(i, counted(i));
  const auto* root = m.root();
  counted::reset_counts();
  m.insert(9, counted(90));  // same shape, sole owner: no node copied
  EXPECT_EQ(m.root(), root);
  EXPECT_EQ(counted::copies.load(), 0);
  auto snap = m;
  m.insert(9, counted(91));  // shared now: path copied, snapshot intact
  EXPECT_NE(m.root(), root);
  EXPECT_EQ(snap.find(9)->v, 90);
  EXPECT_EQ(m.find(9)->v, 91);
}

TYPED_TEST(Trie, DifferentialAgainstUnorderedMap) {
  using trie_t = typename TestFixture::map;
  std::mt19937 rng(12345);
  trie_t m;
  std::unordered_map<int, int> ref;
  std::vector<std::pair<trie_t, std::unordered_map<int, int>>> snaps;
  for (int step = 0; step < 4000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    const int k = static_cast<int>(rng() % 200);
    if (op < 5) {
      const bool added = m.insert(k, counted(step));
      EXPECT_EQ(added, ref.find(k) == ref.end());
      ref[k] = step;
    } else if (op < 8) {
      EXPECT_EQ(m.erase(k), ref.erase(k) == 1);
    } else if (op == 8 && snaps.size() < 20) {
      snaps.emplace_back(m, ref);
    } else {
      const counted* v = m.find(k);
      auto it = ref.find(k);
      ASSERT_EQ(v != nullptr, it != ref.end());
      if (v) {
        EXPECT_EQ(v->v, it->second);
      }
    }
    if (step % 97 == 0) m.check_invariants();
    ASSERT_EQ(m.size(), ref.size());
  }
  m.check_invariants();
  for (auto& [s, r] : snaps) {
    s.check_invariants();
    ASSERT_EQ(s.size(), r.size());
    for (const auto& e : s) EXPECT_EQ(r.at(e.key), e.value.v);
  }
}

// Keys whose equality throws: the update must leave the trie untouched.
struct flaky_key {
  int k;
  static inline int throw_on = -1;
  friend bool operator==(const flaky_key& a, const flaky_key& b) {
    if (a.k == throw_on || b.k == throw_on) throw std::runtime_error("eq failed");
    return a.k == b.k;
  }
};
struct flaky_hash {
  std::size_t operator()(const flaky_key& f) const { return static_cast<std::size_t>(f.k & 1); }
};

TEST(TrieErrors, ThrowingEqualityLeavesTheTrieUnchanged) {
  using map = trie<flaky_key, counted, flaky_hash, std::equal_to<flaky_key>, 5>;
  {
    map m;
    for (int i = 0; i < 10; ++i) m.insert(flaky_key{i}, counted(i));
    const auto* root = m.root();
    flaky_key::throw_on = 4;
    EXPECT_THROW(m.insert(flaky_key{100}, counted(1)), std::runtime_error);
    EXPECT_THROW(m.erase(flaky_key{100}), std::runtime_error);
    EXPECT_THROW((void)m.set(flaky_key{4}, counted(1)), std::runtime_error);
    flaky_key::throw_on = -1;
    EXPECT_EQ(m.root(), root);
    EXPECT_EQ(m.size(), 10u);
    m.check_invariants();
    for (int i = 0; i < 10; ++i) EXPECT_EQ(m.find(flaky_key{i})->v, i);
  }
  EXPECT_EQ(counted::alive.load(), 0);
}

TEST(TrieErrors, CheckInvariantsDetectsACorruptedSize) {
  // A white-box check that the checker can fail: corrupt a copy's size field.
  struct probe : trie<int, int> {
    void corrupt() { *reinterpret_cast<std::size_t*>(reinterpret_cast<char*>(this) + sizeof(void*)) += 1; }
  };
  probe p;
  p.insert(1, 1);
  p.check_invariants();
  p.corrupt();
  EXPECT_THROW(p.check_invariants(), std::logic_error);
}

}  // namespace
