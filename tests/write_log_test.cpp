#include "ctxvars/detail/write_log.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "fuzz/int_box.hpp"

using ctxvars::detail::layered_map;
using ctxvars_test::int_box;
using ctxvars_test::int_ptr;

namespace {

struct id_hash {
  std::uint64_t operator()(std::uint64_t k) const noexcept { return k; }
};
struct weak_hash {  // 4 buckets: the trie below is all collision nodes
  std::uint64_t operator()(std::uint64_t k) const noexcept { return k & 3; }
};

template <class Hash, unsigned B, unsigned L, unsigned D>
struct config {
  using map = layered_map<int_ptr, Hash, ctxvars::detail::default_layer_alloc, B, L, D>;
};

template <class C>
class WriteLog : public ::testing::Test {
 protected:
  using map_type = typename C::map;
  void TearDown() override { EXPECT_EQ(int_box::alive.load(), 0) << "values leaked or freed twice"; }
};
using configs = ::testing::Types<config<id_hash, 5, 8, 4>, config<id_hash, 2, 2, 1>, config<weak_hash, 5, 3, 2>,
                                 config<weak_hash, 2, 1, 1>>;
TYPED_TEST_SUITE(WriteLog, configs);

template <class Map>
std::map<std::uint64_t, int> contents(const Map& m) {
  std::map<std::uint64_t, int> out;
  for (const auto& e : m) EXPECT_TRUE(out.emplace(e.key, e.value.value()).second) << "key seen twice";
  EXPECT_EQ(out.size(), m.size());
  for (const auto& [k, v] : out) {
    const int_ptr* p = m.find(k);
    EXPECT_TRUE(p && p->value() == v);
  }
  m.check_invariants();
  return out;
}

TYPED_TEST(WriteLog, StartsEmptyAndFindsNothing) {
  typename TestFixture::map_type m;
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.find(7), nullptr);
  EXPECT_EQ(m.begin(), m.end());
  EXPECT_FALSE(m.remove(7));
  m.check_invariants();
}

TYPED_TEST(WriteLog, AssignReplaceRemoveReportTheOldValueAndTheSize) {
  typename TestFixture::map_type m;
  for (std::uint64_t k = 0; k < 100; ++k) EXPECT_TRUE(m.assign(k, int_ptr(static_cast<int>(k))));
  EXPECT_EQ(m.size(), 100u);
  int_ptr old;
  typename TestFixture::map_type::retired r;
  EXPECT_FALSE(m.assign(5, int_ptr(500), old, r));
  EXPECT_EQ(old.value(), 5);
  old = int_ptr();
  EXPECT_TRUE(m.remove(6, old, r));
  EXPECT_EQ(old.value(), 6);
  EXPECT_FALSE(m.remove(6));
  EXPECT_EQ(m.size(), 99u);
  auto c = contents(m);
  EXPECT_EQ(c[5], 500);
  EXPECT_EQ(c.count(6), 0u);
}

TYPED_TEST(WriteLog, ACopyNeverSeesWritesToTheOriginalNorTheReverse) {
  using map = typename TestFixture::map_type;
  map a;
  for (std::uint64_t k = 0; k < 50; ++k) a.assign(k, int_ptr(static_cast<int>(k)));
  const auto before = contents(a);
  std::vector<map> copies;
  std::vector<std::map<std::uint64_t, int>> expect;
  // Generations of copies, each changed a little: stacks grow and fold.
  for (int g = 0; g < 12; ++g) {
    copies.push_back(g == 0 ? a : copies.back());
    expect.push_back(g == 0 ? before : expect.back());
    map& c = copies.back();
    auto& e = expect.back();
    const std::uint64_t k = static_cast<std::uint64_t>(100 + g), r = static_cast<std::uint64_t>(g * 3);
    c.assign(k, int_ptr(g));
    e[k] = g;
    c.remove(r);
    e.erase(r);
    c.assign(r + 1, int_ptr(-g));
    e[r + 1] = -g;
    EXPECT_LE(c.layers(), map::max_depth + 1);
  }
  a.assign(1000, int_ptr(1));
  a.remove(0);
  for (std::size_t i = 0; i < copies.size(); ++i) EXPECT_EQ(contents(copies[i]), expect[i]) << "generation " << i;
  auto now = before;
  now[1000] = 1;
  now.erase(0);
  EXPECT_EQ(contents(a), now);
}

TYPED_TEST(WriteLog, AWriteToACopyAddsOneLayerAndLeavesTheTrieShared) {
  using map = typename TestFixture::map_type;
  map a;
  for (std::uint64_t k = 0; k < 300; ++k) a.assign(k, int_ptr(1));
  map b = a;
  const unsigned layers = b.layers();
  b.assign(1000, int_ptr(2));
  if (layers <= map::max_depth) {
    EXPECT_EQ(b.layers(), layers + 1);
    EXPECT_EQ(b.logged(), a.logged() + 1);
  } else {
    EXPECT_EQ(b.layers(), 1u) << "a stack at the depth limit folds";
  }
  EXPECT_EQ(contents(b).size(), 301u);
  EXPECT_EQ(contents(a).size(), 300u);
}

TYPED_TEST(WriteLog, AFullLogFoldsIntoTheTrieWithNothingLost) {
  using map = typename TestFixture::map_type;
  map a;
  for (std::uint64_t k = 0; k < 40; ++k) a.assign(k, int_ptr(1));
  map keep = a;
  std::map<std::uint64_t, int> e = contents(a);
  bool folded = false;
  for (std::uint64_t i = 0; i < map::log_capacity + 2; ++i) {
    a.assign(500 + i, int_ptr(static_cast<int>(i)));
    e[500 + i] = static_cast<int>(i);
    if (a.logged() == 0) folded = true;
    EXPECT_EQ(contents(a), e);
  }
  EXPECT_TRUE(folded) << "the log filled and folded";
  EXPECT_EQ(contents(keep).size(), 40u);
}

TYPED_TEST(WriteLog, RemovingMasksAKeyBelowAndDropsOneLoggedOnlyHere) {
  using map = typename TestFixture::map_type;
  map a;
  for (std::uint64_t k = 0; k < 10; ++k) a.assign(k, int_ptr(static_cast<int>(k)));
  map b = a;
  b.assign(77, int_ptr(77));  // logged only in b's top layer
  EXPECT_TRUE(b.remove(77));
  EXPECT_TRUE(b.remove(3));  // lives below: masked
  EXPECT_EQ(b.find(3), nullptr);
  EXPECT_NE(a.find(3), nullptr);
  EXPECT_TRUE(b.assign(3, int_ptr(33)));  // set again over the mask
  EXPECT_EQ(b.find(3)->value(), 33);
  EXPECT_EQ(contents(b).size(), 10u);
  EXPECT_EQ(contents(a).size(), 10u);
}

TYPED_TEST(WriteLog, ValuesAreReleasedWithTheLastMapHoldingThem) {
  using map = typename TestFixture::map_type;
  {
    map a;
    a.assign(1, int_ptr(1));
    {
      map b = a;
      b.assign(1, int_ptr(2));
      EXPECT_EQ(int_box::alive.load(), 2);
    }
    EXPECT_EQ(int_box::alive.load(), 1);
    int_ptr old;
    typename map::retired r;
    a.remove(1, old, r);
    EXPECT_EQ(int_box::alive.load(), 1) << "the old value went to `old`";
  }
  EXPECT_EQ(int_box::alive.load(), 0);
}

TYPED_TEST(WriteLog, ForEachOwnedSkipsWhatACopyShares) {
  using map = typename TestFixture::map_type;
  map a;
  for (std::uint64_t k = 0; k < 20; ++k) a.assign(k, int_ptr(1));
  int n = 0;
  a.for_each_owned([&](const auto&) { return ++n, 0; });
  EXPECT_EQ(n, 20);
  map b = a;
  n = 0;
  a.for_each_owned([&](const auto&) { return ++n, 0; });
  EXPECT_EQ(n, 0) << "everything is shared with b";
  b.assign(100, int_ptr(2));
  n = 0;
  b.for_each_owned([&](const auto&) { return ++n, 0; });
  EXPECT_GE(n, 1);
}

// A collector that counts references itself (python/gc.cpp): a piece is walked when
// every reference to it was reached.
struct counting_walk {
  std::map<const void*, std::uint32_t> seen;
  std::map<const void*, int> walked;          // how often each piece was walked
  std::map<const void*, int> entries;         // how often each entry was reported
  bool enter(const void* piece, std::uint32_t refs) {
    if (++seen[piece] != refs) return false;
    ++walked[piece];
    return true;
  }
  template <class E>
  bool entry(const E& e) {
    ++entries[&e];
    return true;
  }
};

struct stop_at_first {
  int n = 0;
  bool enter(const void*, std::uint32_t) { return true; }
  template <class E>
  bool entry(const E&) {
    return ++n < 1;
  }
};

TYPED_TEST(WriteLog, AWalkOfEveryHandleReportsEachEntryOnceAndNoneThatAnotherHandleShares) {
  using map = typename TestFixture::map_type;
  map a;
  for (std::uint64_t k = 0; k < 40; ++k) a.assign(k, int_ptr(1));
  map b = a;  // shares everything
  for (std::uint64_t k = 0; k < 5; ++k) b.assign(k, int_ptr(2));  // a layer (or a fold) over it
  map c = b;  // shares b's top
  c.assign(100, int_ptr(3));

  counting_walk all;
  for (const map* m : {&a, &b, &c}) EXPECT_TRUE(m->walk_references(all));
  for (const auto& [piece, n] : all.walked) EXPECT_EQ(n, 1);
  for (const auto& [entry, n] : all.entries) EXPECT_EQ(n, 1) << "an entry reported twice";
  // Every entry visible through a handle was reported.
  for (const map* m : {&a, &b, &c})
    for (const auto& e : *m) EXPECT_EQ(all.entries.count(&e), 1u);

  counting_walk without_c;  // c also holds b's pieces: nothing only they hold is reported
  for (const map* m : {&a, &b}) m->walk_references(without_c);
  for (const auto& [entry, n] : without_c.entries) EXPECT_EQ(n, 1);
  EXPECT_LT(without_c.entries.size(), all.entries.size());
  for (const auto& [piece, n] : without_c.walked) EXPECT_EQ(all.walked.count(piece), 1u);

  stop_at_first stop;
  EXPECT_FALSE(c.walk_references(stop));
  EXPECT_EQ(stop.n, 1);
}

TYPED_TEST(WriteLog, RandomWritesToManyCopiesMatchAReferenceMap) {
  using map = typename TestFixture::map_type;
  std::mt19937 rng(11);
  std::vector<std::pair<map, std::map<std::uint64_t, int>>> maps(4);
  for (int step = 0; step < 3000; ++step) {
    auto& [m, e] = maps[rng() % maps.size()];
    const std::uint64_t k = rng() % 64;
    switch (rng() % 5) {
      case 0:
      case 1:
        m.assign(k, int_ptr(step));
        e[k] = step;
        break;
      case 2:
        EXPECT_EQ(m.remove(k), e.erase(k) == 1);
        break;
      case 3:
        maps[rng() % maps.size()] = maps[rng() % maps.size()];  // copy one over another
        break;
      default:
        EXPECT_EQ(m.find(k) != nullptr, e.count(k) == 1);
    }
    if (step % 50 == 0) {
      for (auto& [mm, ee] : maps) EXPECT_EQ(contents(mm), ee);
    }
  }
}

}  // namespace
