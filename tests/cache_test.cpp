// The per-thread lookup cache must never serve a stale value. Each test warms
// the cache (a get), changes what the current context maps by one route, and
// reads again.
#include "ctxvars/context_var.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/task.hpp"

using namespace ctxvars;

namespace {

TEST(Cache, ASetIsSeenByTheNextGet) {
  context_var<int> v("v", 0);
  context().run([&] {
    EXPECT_EQ(v.get(), 0);  // caches "absent"
    auto t = v.set(1);
    EXPECT_EQ(v.get(), 1);
    auto t2 = v.set(2);
    EXPECT_EQ(v.get(), 2);
    v.reset(t2);
    EXPECT_EQ(v.get(), 1);
    v.reset(t);
    EXPECT_EQ(v.get(), 0);
    EXPECT_EQ(v.peek(), nullptr);
  });
}

TEST(Cache, ASetOfOneVariableLeavesOthersCachedValuesValid) {
  context_var<std::string> a("a"), b("b");
  context().run([&] {
    (void)a.set("alpha");
    (void)b.set("beta");
    EXPECT_EQ(a.get(), "alpha");  // both cached
    EXPECT_EQ(b.get(), "beta");
    context keep = copy_context();  // shares the trie: the next set copies the path
    for (int i = 0; i < 100; ++i) (void)b.set("beta" + std::to_string(i));
    EXPECT_EQ(a.get(), "alpha");
    EXPECT_EQ(b.get(), "beta99");
    EXPECT_EQ(keep.get(b), "beta");
  });
}

TEST(Cache, EnteringAndLeavingAnotherContextInvalidates) {
  context_var<int> v("v", 0);
  context a, b;
  a.run([&] { (void)v.set(1); });
  b.run([&] { (void)v.set(2); });
  a.run([&] {
    EXPECT_EQ(v.get(), 1);
    b.run([&] { EXPECT_EQ(v.get(), 2); });
    EXPECT_EQ(v.get(), 1);
    context().run([&] { EXPECT_EQ(v.get(), 0); });
    EXPECT_EQ(v.get(), 1);
  });
  EXPECT_EQ(v.get(), 0);
}

TEST(Cache, ReenteringAContextChangedByAnotherThreadSeesTheChange) {
  context_var<int> v("v", 0);
  context c;
  c.run([&] {
    (void)v.set(1);
    EXPECT_EQ(v.get(), 1);
  });
  std::thread([&] { c.run([&] { (void)v.set(2); }); }).join();
  c.run([&] { EXPECT_EQ(v.get(), 2); });
}

TEST(Cache, ReenteringAnUnchangedContextReusesItsSlotsAndStaysCorrect) {
  context_var<int> v("v", 0), w("w", 0);
  context a, b;
  a.run([&] {
    (void)v.set(1);
    (void)w.set(10);
  });
  b.run([&] { (void)v.set(2); });
  for (int round = 0; round < 3; ++round) {
    a.run([&] {
      EXPECT_EQ(v.get(), 1);
      EXPECT_EQ(w.get(), 10);
    });
    b.run([&] {
      EXPECT_EQ(v.get(), 2);
      EXPECT_EQ(w.get(), 0);
    });
  }
  // The same thread changes `a` in one visit; the next visit sees it.
  a.run([&] { (void)w.set(11); });
  b.run([&] { EXPECT_EQ(w.get(), 0); });
  a.run([&] {
    EXPECT_EQ(w.get(), 11);
    EXPECT_EQ(v.get(), 1);
  });
  // Another thread changes `a` between two visits of this thread.
  a.run([&] { EXPECT_EQ(v.get(), 1); });
  std::thread([&] { a.run([&] { (void)v.set(3); }); }).join();
  a.run([&] { EXPECT_EQ(v.get(), 3); });
  // Another thread only reads `a` in between: still correct.
  std::thread([&] { a.run([&] { EXPECT_EQ(v.get(), 3); }); }).join();
  a.run([&] { EXPECT_EQ(v.get(), 3); });
}

TEST(Cache, ReturningToTheOuterContextAfterANestedRunIsCorrect) {
  context_var<int> v("v", 0);
  context outer, inner;
  outer.run([&] {
    (void)v.set(1);
    EXPECT_EQ(v.get(), 1);  // cached under outer's version
    inner.run([&] {
      EXPECT_EQ(v.get(), 0);
      (void)v.set(5);
      EXPECT_EQ(v.get(), 5);
    });
    EXPECT_EQ(v.get(), 1);  // the outer version again: its slot was rewritten by inner
    auto t = v.set(2);
    inner.run([&] { EXPECT_EQ(v.get(), 5); });
    EXPECT_EQ(v.get(), 2);
    v.reset(t);
    EXPECT_EQ(v.get(), 1);
  });
  EXPECT_EQ(v.get(), 0);
}

TEST(Cache, EachThreadHasItsOwnCache) {
  context_var<int> v("v", 0);
  (void)v.set(5);
  EXPECT_EQ(v.get(), 5);
  int other = -1;
  std::thread([&] { other = v.get(); }).join();
  EXPECT_EQ(other, 0);
  auto t = v.set(0);
  (void)t;
}

TEST(Cache, ACoroutineResumeOnAnotherThreadSeesItsOwnContext) {
  context_var<int> v("v", 0);
  thread_pool pool(2);
  (void)v.set(7);
  EXPECT_EQ(v.get(), 7);  // cached on this thread
  const int seen = sync_wait([](context_var<int>& var, thread_pool& p) -> task<int> {
    (void)var.set(8);
    co_await p.schedule();
    const int a = var.get();
    co_await p.schedule();
    co_return a * 10 + var.get();
  }(v, pool));
  EXPECT_EQ(seen, 88);
  EXPECT_EQ(v.get(), 7);
}

TEST(Cache, AVariableDestroyedAndRecreatedAtTheSameAddressMisses) {
  alignas(context_var<int>) unsigned char buf[sizeof(context_var<int>)];
  context().run([&] {
    auto* a = new (buf) context_var<int>("a", 0);
    (void)a->set(1);
    EXPECT_EQ(a->get(), 1);
    a->~context_var();
    auto* b = new (buf) context_var<int>("b", 0);
    EXPECT_EQ(b->get(), 0);
    (void)b->set(2);
    EXPECT_EQ(b->get(), 2);
    b->~context_var();
  });
}

TEST(Cache, ManyVariablesSharingCacheSlotsNeverMixUp) {
  std::vector<std::unique_ptr<context_var<int>>> vars;
  for (int i = 0; i < 1000; ++i) vars.push_back(std::make_unique<context_var<int>>("v", -1));
  context().run([&] {
    for (int i = 0; i < 1000; ++i) (void)vars[static_cast<std::size_t>(i)]->set(i);
    for (int round = 0; round < 3; ++round)
      for (int i = 0; i < 1000; i += 7) ASSERT_EQ(vars[static_cast<std::size_t>(i)]->get(), i);
  });
}

}  // namespace
