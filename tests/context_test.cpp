#include "ctxvars/context.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <barrier>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "ctxvars/ctxvars.hpp"

using namespace ctxvars;

namespace {

TEST(Context, ANewContextIsEmpty) {
  context c;
  context_var<int> v("v");
  EXPECT_EQ(c.size(), 0u);
  EXPECT_TRUE(c.empty());
  EXPECT_FALSE(c.contains(v));
  EXPECT_EQ(c.get(v), std::nullopt);
  EXPECT_EQ(c.begin(), c.end());
  EXPECT_FALSE(c.entered());
}

TEST(Context, RunMakesItCurrentAndKeepsWhatFSet) {
  context_var<int> v("v");
  context c;
  const int r = c.run([&](int x) {
    EXPECT_TRUE(c.entered());
    (void)v.set(x);
    return v.get() * 2;
  }, 21);
  EXPECT_EQ(r, 42);
  EXPECT_FALSE(c.entered());
  EXPECT_EQ(c.get(v), 21);
  EXPECT_FALSE(v.try_get().has_value()) << "the outer context must not see it";
  c.run([&] { EXPECT_EQ(v.get(), 21); });
}

TEST(Context, RunRestoresThePreviousContextWhenFThrows) {
  context_var<int> v("v");
  context outer, inner;
  outer.run([&] {
    (void)v.set(1);
    EXPECT_THROW(inner.run([&] {
      (void)v.set(2);
      throw std::runtime_error("boom");
    }), std::runtime_error);
    EXPECT_EQ(v.get(), 1);
  });
  EXPECT_FALSE(inner.entered());
  EXPECT_EQ(inner.get(v), 2);
}

TEST(Context, RunPassesReferencesAndReturnsVoid) {
  context c;
  int x = 0;
  c.run([](int& r) { r = 5; }, x);
  EXPECT_EQ(x, 5);
  static_assert(std::is_same_v<decltype(c.run([] {})), void>);
  static_assert(std::is_same_v<decltype(c.run([]() -> int& { static int i; return i; })), int&>);
}

TEST(Context, EnteringTheSameContextTwiceThrowsContextInUseErrorAndChangesNothing) {
  context_var<int> v("v");
  context c;
  c.run([&] {
    (void)v.set(1);
    try {
      c.run([] {});
      FAIL();
    } catch (const context_in_use_error& e) {
      EXPECT_NE(std::string(e.what()).find("already entered"), std::string::npos);
    }
    EXPECT_THROW(c.copy().run([&] { c.run([] {}); }), std::logic_error);
    EXPECT_EQ(v.get(), 1) << "still inside c, unchanged";
    EXPECT_TRUE(c.entered());
  });
  EXPECT_FALSE(c.entered());
}

TEST(Context, TwoThreadsRacingToEnterOneContextExactlyOneWins) {
  for (int round = 0; round < 200; ++round) {
    context c;
    std::atomic<int> wins{0}, losses{0};
    std::barrier sync(2);
    std::atomic<bool> release{false};
    auto racer = [&] {
      sync.arrive_and_wait();
      try {
        c.run([&] {
          wins.fetch_add(1);
          while (!release.load()) std::this_thread::yield();
        });
      } catch (const context_in_use_error&) {
        losses.fetch_add(1);
        release = true;
      }
    };
    std::thread a(racer), b(racer);
    a.join();
    b.join();
    ASSERT_EQ(wins.load(), 1);
    ASSERT_EQ(losses.load(), 1);
    ASSERT_FALSE(c.entered());
  }
}

TEST(Context, MutationsInACopyNeverShowInTheOriginalAndTheReverse) {
  context_var<int> a("a"), b("b");
  context c;
  c.run([&] { (void)a.set(1); });
  context d = c.copy();
  EXPECT_FALSE(d == c);
  d.run([&] {
    EXPECT_EQ(a.get(), 1);
    (void)a.set(2);
    (void)b.set(3);
  });
  c.run([&] { (void)a.set(10); });
  EXPECT_EQ(c.get(a), 10);
  EXPECT_FALSE(c.contains(b));
  EXPECT_EQ(d.get(a), 2);
  EXPECT_EQ(d.get(b), 3);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(d.size(), 2u);
}

TEST(Context, HandleCopiesReferToTheSameContext) {
  context_var<int> v("v");
  context c;
  context alias = c;
  context moved = std::move(alias);
  EXPECT_TRUE(alias == c);  // moving is copying: the handle stays valid
  EXPECT_TRUE(moved == c);
  moved.run([&] { (void)v.set(4); });
  EXPECT_EQ(c.get(v), 4);
  EXPECT_THROW(c.run([&] { moved.run([] {}); }), context_in_use_error);
}

TEST(Context, MappingAccessNeverConsultsTheDefault) {
  context_var<int> v("v", 9);
  context c;
  EXPECT_FALSE(c.contains(v));
  EXPECT_EQ(c.get(v), std::nullopt);
}

TEST(Context, IterationGivesNamesAndTypedValues) {
  context_var<int> id("request_id");
  context_var<std::string> user("user");
  context c;
  c.run([&] {
    (void)id.set(7);
    (void)user.set("ann");
  });
  std::map<std::string, std::string> seen;
  for (auto e : c) {
    if (const int* i = e.get_if<int>()) seen[std::string(e.name())] = std::to_string(*i);
    if (const std::string* s = e.get_if<std::string>()) seen[std::string(e.name())] = *s;
    EXPECT_TRUE(e.is(id) || e.is(user));
    EXPECT_EQ(e.is(id), e.holds<int>());
  }
  EXPECT_EQ(seen, (std::map<std::string, std::string>{{"request_id", "7"}, {"user", "ann"}}));
  auto it = c.begin();
  EXPECT_THROW((void)(*it).value<double>(), std::bad_cast);
  EXPECT_EQ((*it).type() == typeid(int), (*it).holds<int>());
}

TEST(Context, IterationSeesASnapshot) {
  context_var<int> v("v"), w("w");
  context c;
  c.run([&] { (void)v.set(1); });
  auto it = c.begin();
  c.run([&] {
    (void)v.set(2);
    (void)w.set(3);
  });
  int n = 0;
  for (; it != c.end(); ++it, ++n) EXPECT_EQ((*it).value<int>(), 1);
  EXPECT_EQ(n, 1);
}

TEST(CopyContext, CopiesTheCurrentThreadsVariables) {
  context_var<int> v("v");
  context c;
  c.run([&] {
    (void)v.set(1);
    context snap = copy_context();
    (void)v.set(2);
    EXPECT_EQ(snap.get(v), 1);
    snap.run([&] { EXPECT_EQ(v.get(), 1); });
  });
}

TEST(Threads, ANewThreadStartsInAnEmptyContext) {
  context_var<int> v("v");
  context c;
  c.run([&] {
    (void)v.set(1);
    std::thread([&] {
      EXPECT_FALSE(v.try_get().has_value());
      EXPECT_EQ(copy_context().size(), 0u);
    }).join();
  });
}

TEST(Threads, EachThreadHasItsOwnCurrentContext) {
  context_var<int> v("v");
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&, i] {
      for (int k = 0; k < 2000; ++k) {
        auto t = v.set(i * 10000 + k);
        if (v.get() != i * 10000 + k) ++bad;
        v.reset(t);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Threads, ReadingAContextWhileItsOwnerSetsIsRaceFreeAndConsistent) {
  context_var<int> v("v");
  context_var<int> w("w");
  context c;
  std::atomic<bool> done{false}, reader_started{false};
  std::thread owner([&] {
    while (!reader_started.load()) std::this_thread::yield();
    c.run([&] {
      for (int i = 0; i < 20000; ++i) {
        (void)v.set(i);
        (void)w.set(-i);
      }
    });
    done = true;
  });
  long reads = 0;
  reader_started = true;
  do {
    auto a = c.get(v);
    auto snap = c.copy();
    auto x = snap.get(v), y = snap.get(w);
    if (x && y) {
      ASSERT_TRUE(*x == -*y || *x == -*y + 1) << *x << " " << *y;  // set order: v then w
    }
    for (auto e : c) (void)e.name();
    (void)c.size();
    (void)a;
    ++reads;
  } while (!done.load());
  owner.join();
  EXPECT_EQ(c.get(v), 19999);
  EXPECT_GT(reads, 0);
}

// The write log (design.md): a copy of a server's context gets layers, whose
// logs fill and fold, while other threads read it, copy it and iterate it.
TEST(Threads, ReadersOfACopySeeWholeStatesWhileItsLayersFillAndFold) {
  std::vector<std::unique_ptr<context_var<int>>> vs;
  for (int i = 0; i < 300; ++i) vs.push_back(std::make_unique<context_var<int>>("v" + std::to_string(i)));
  context server;
  server.run([&] {
    for (auto& v : vs) (void)v->set(0);
  });
  context c = server.copy();
  std::atomic<bool> done{false};
  std::atomic<long> reads{0};
  auto reader = [&] {
    while (!done.load(std::memory_order_acquire)) {
      context snap = c.copy();  // immutable while we hold it
      std::size_t n = 0;
      int lo = 1 << 30, hi = -1;
      for (auto e : snap) {
        ++n;
        const int x = *e.get_if<int>();
        lo = std::min(lo, x);
        hi = std::max(hi, x);
      }
      EXPECT_EQ(n, snap.size());
      EXPECT_GE(n, 300u);
      EXPECT_LE(n, 310u);
      EXPECT_LE(hi - lo, 1) << "a reader saw two rounds apart: a torn state";
      EXPECT_TRUE(c.contains(*vs[7]));
      reads.fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::thread r1(reader), r2(reader);
  while (reads.load(std::memory_order_relaxed) < 2) std::this_thread::yield();  // readers are running
  std::vector<context> keeps;
  for (int round = 1; round <= 60; ++round) {
    if (round % 7 == 0) keeps.push_back(c.copy());  // stacks of copies, folding at the depth limit
    c.run([&] {
      // Rounds write every variable: each one is a log filling and folding.
      // Readers may see a round half done, never values two rounds apart.
      for (auto& v : vs) (void)v->set(round);
      for (int i = 0; i < 10; ++i) {
        auto t = vs[static_cast<std::size_t>(i)]->set(round);
        vs[static_cast<std::size_t>(i)]->reset(t);
      }
    });
  }
  done.store(true, std::memory_order_release);
  r1.join();
  r2.join();
  EXPECT_GT(reads.load(), 0);
  for (auto& v : vs) EXPECT_EQ(c.get(*v), 60);
  for (auto& v : vs) EXPECT_EQ(server.get(*v), 0) << "the server never changes";
  for (std::size_t k = 0; k < keeps.size(); ++k)
    EXPECT_EQ(keeps[k].get(*vs[299]), static_cast<int>(7 * (k + 1) - 1));
}

}  // namespace
