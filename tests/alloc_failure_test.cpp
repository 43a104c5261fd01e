// Allocation failure: operator new is replaced in this binary so that the Nth
// allocation from now throws std::bad_alloc. Every operation is swept over N
// until it succeeds; after each failure the state must be exactly as before
// (strong guarantee) and nothing may leak (counted values).
#include "ctxvars/ctxvars.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <thread>
#include <vector>
#include <memory>

#include "counted.hpp"
#include "failing_new.hpp"
#include "ctxvars/task.hpp"
#include "ctxvars/watch.hpp"

using namespace ctxvars;
using ctxvars_test::counted;

namespace {

using ctxvars_test::allocations;
using ctxvars_test::drain_layer_cache;
using ctxvars_test::fail_countdown;
using ctxvars_test::sweep;

struct report_points : ::testing::Environment {
  void TearDown() override {
    std::printf("[figures] allocation failure: %ld failure points swept\n", ctxvars_test::swept_points);
  }
};
const auto* const reporter = ::testing::AddGlobalTestEnvironment(new report_points);

std::map<std::string, int> snapshot(const context& c) {
  std::map<std::string, int> m;
  for (auto e : c)
    if (auto* v = e.get_if<counted>()) m[std::string(e.name())] = v->v;
  return m;
}

struct vars {
  context_var<counted> a{"a"}, b{"b"}, c{"c"};
  std::vector<std::unique_ptr<context_var<counted>>> many;
  vars() {
    for (int i = 0; i < 200; ++i) many.push_back(std::make_unique<context_var<counted>>("m" + std::to_string(i)));
  }
};

TEST(AllocationFailure, SetIntoAFreshOrSharedContextIsAllOrNothing) {
  const long alive_before = counted::alive.load();
  {
    vars v;
    context ctx;
    ctx.run([&] {
      for (auto& m : v.many) (void)m->set(counted(1));
    });
    int points = 0;
    for (int round = 0; round < 3; ++round) {
      context keep = ctx.copy();  // shares the trie: the set must path-copy
      const auto before = snapshot(ctx);
      points += ctx.run([&] {
        return sweep([&] { (void)v.a.set(counted(round)); },
                     [&] {
                       EXPECT_EQ(snapshot(ctx), before);
                       EXPECT_EQ(v.a.peek() == nullptr, round == 0);
                     });
      });
      EXPECT_EQ(ctx.get(v.a)->v, round);
      EXPECT_EQ(snapshot(keep), before) << "the copy never changes";
    }
    EXPECT_GT(points, 0);
  }
  EXPECT_EQ(counted::alive.load(), alive_before);
}

TEST(AllocationFailure, GrowingASharedContextVariableByVariable) {
  const long alive_before = counted::alive.load();
  {
    vars v;
    context ctx;
    int points = 0;
    for (std::size_t i = 0; i < v.many.size(); i += 3) {
      context keep = ctx.copy();  // every set below must copy the path
      const auto before = snapshot(ctx);
      points += ctx.run([&] {
        return sweep([&] { (void)v.many[i]->set(counted(static_cast<int>(i))); },
                     [&] { EXPECT_EQ(snapshot(ctx), before); });
      });
      EXPECT_EQ(snapshot(keep), before);
      // ... and every reset to "no value" must erase from a shared trie. The
      // loop never sets many[i + 1], so its token's old value is missing.
      if (i % 2 == 0 && i + 1 < v.many.size()) {
        context_var<counted>& fresh = *v.many[i + 1];
        const auto without = snapshot(ctx);
        auto t = ctx.run([&] { return fresh.set(counted(-1)); });
        context keep2 = ctx.copy();  // shares the trie: the erase must copy the path
        const auto with = snapshot(ctx);
        ctx.run([&] {
          points += sweep([&] { fresh.reset(t); },
                          [&] {
                            EXPECT_FALSE(t.used());
                            EXPECT_EQ(ctx.get(fresh)->v, -1);
                            EXPECT_EQ(snapshot(ctx), with);
                          });
        });
        EXPECT_TRUE(t.used());
        EXPECT_FALSE(ctx.contains(fresh));
        EXPECT_EQ(snapshot(ctx), without);
        EXPECT_EQ(snapshot(keep2), with);
      }
    }
    EXPECT_GT(points, 50);
  }
  EXPECT_EQ(counted::alive.load(), alive_before);
}

TEST(AllocationFailure, ResetThatMustCopyThePathIsAllOrNothing) {
  const long alive_before = counted::alive.load();
  {
    vars v;
    context ctx;
    std::optional<token<counted>> t;
    ctx.run([&] {
      for (auto& m : v.many) (void)m->set(counted(2));
      t.emplace(v.b.set(counted(5)));
    });
    context keep = ctx.copy();
    const auto before = snapshot(ctx);
    const int points = ctx.run([&] {
      return sweep(
          [&] {
            drain_layer_cache();
            v.b.reset(*t);
          },
          [&] {
            EXPECT_FALSE(t->used()) << "a failed reset must not use the token";
            EXPECT_EQ(snapshot(ctx), before);
          });
    });
    EXPECT_GT(points, 0) << "the shared context needs a new layer";
    EXPECT_TRUE(t->used());
    EXPECT_FALSE(ctx.contains(v.b));
    EXPECT_EQ(keep.get(v.b)->v, 5);
  }
  EXPECT_EQ(counted::alive.load(), alive_before);
}

// The write log's folding step: a copy's log fills up (8 entries) and is
// folded into a copy of the trie, with every allocation of the fold failing
// in turn; then a stack of copies reaches the depth limit and folds.
TEST(AllocationFailure, FoldingAFullWriteLogIsAllOrNothing) {
  const long alive_before = counted::alive.load();
  {
    vars v;
    std::vector<std::unique_ptr<context_var<counted>>> fresh;
    for (int i = 0; i < 20; ++i) fresh.push_back(std::make_unique<context_var<counted>>("f" + std::to_string(i)));
    context ctx;
    ctx.run([&] {
      for (auto& m : v.many) (void)m->set(counted(1));
    });
    context keep = ctx.copy();
    const auto kept = snapshot(keep);
    int most = 0;
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      const auto before = snapshot(ctx);
      const int points = ctx.run([&] {
        return sweep(
            [&] {
              drain_layer_cache();
              if (i % 5 == 4) {
                (void)v.many[i]->set(counted(-static_cast<int>(i)));  // replace a value below the log
              } else {
                (void)fresh[i]->set(counted(static_cast<int>(i)));
              }
            },
            [&] { EXPECT_EQ(snapshot(ctx), before); });
      });
      most = std::max(most, points);
      EXPECT_EQ(snapshot(keep), kept) << "the copy never changes";
    }
    EXPECT_GT(most, 3) << "a fold copies trie paths: several allocations";
    EXPECT_EQ(ctx.size(), 216u);  // 200 + 16 fresh ones (every fifth set replaced a value)
  }
  EXPECT_EQ(counted::alive.load(), alive_before);
}

TEST(AllocationFailure, FoldingADeepStackOfCopiesIsAllOrNothing) {
  const long alive_before = counted::alive.load();
  {
    vars v;
    context ctx;
    ctx.run([&] {
      for (auto& m : v.many) (void)m->set(counted(1));
    });
    std::vector<context> keeps;
    int most = 0;
    for (int g = 0; g < 12; ++g) {
      keeps.push_back(ctx.copy());  // each set below adds a layer over a shared one
      const auto before = snapshot(ctx);
      const int points = ctx.run([&] {
        return sweep(
            [&] {
              drain_layer_cache();
              if (g % 3 == 2) {
                (void)v.a.set(counted(g));
              } else {
                (void)v.many[static_cast<std::size_t>(g)]->set(counted(100 + g));
              }
            },
            [&] { EXPECT_EQ(snapshot(ctx), before); });
      });
      most = std::max(most, points);
    }
    EXPECT_GT(most, 3) << "the stack reached the depth limit and folded";
    // keeps[g] was copied before generation g's set: it has those before it.
    for (std::size_t g = 1; g < keeps.size(); ++g) {
      const std::size_t j = g - 1;
      EXPECT_EQ(keeps[g].get(*v.many[j])->v, j % 3 == 2 ? 1 : 100 + static_cast<int>(j));
      EXPECT_EQ(keeps[g].get(*v.many[g])->v, 1);
    }
  }
  EXPECT_EQ(counted::alive.load(), alive_before);
}

TEST(AllocationFailure, CopyContextBindRunAndSpawnFailCleanly) {
  const long alive_before = counted::alive.load();
  {
    vars v;
    context ctx;
    ctx.run([&] { (void)v.a.set(counted(9)); });
    ctx.run([&] {
      sweep([&] { (void)copy_context(); }, [] {});
      sweep([&] { (void)ctx.copy(); }, [] {});
      auto f = [&] { return v.a.get().v; };
      sweep([&] { EXPECT_EQ(ctxvars::bind(f)(), 9); }, [&] { EXPECT_EQ(v.a.get().v, 9); });
    });
    // run itself never allocates.
    fail_countdown = 0;
    EXPECT_EQ(ctx.run([&] { return v.a.peek()->v; }), 9);
    fail_countdown = -1;
    // Spawning a task: the frame and the shared state may fail; nothing leaks.
    thread_pool pool(1);
    sweep([&] {
      auto s = ctx.copy().run([&] {
        return spawn(pool, [](context_var<counted>& a) -> task<int> { co_return a.get().v; }(v.a));
      });
      EXPECT_EQ(s.get(), 9);
    }, [&] { EXPECT_EQ(ctx.get(v.a)->v, 9); });
  }
  EXPECT_EQ(counted::alive.load(), alive_before);
}

TEST(AllocationFailure, ASetCountsItsAllocations) {
  vars v;
  context ctx;
  ctx.run([&] {
    for (auto& m : v.many) (void)m->set(counted(1));
    (void)v.a.set(counted(1));
    {  // the first set+reset allocates the box that later ones recycle
      auto t = v.a.set(counted(0));
      v.a.reset(t);
    }
    // Steady state of a bound variable: no allocation per set+reset.
    long before = allocations;
    for (int i = 0; i < 100; ++i) {
      auto t = v.a.set(counted(i));
      v.a.reset(t);
    }
    EXPECT_EQ(allocations - before, 0);
    before = allocations;
    for (int i = 0; i < 100; ++i) (void)v.a.get();
    EXPECT_EQ(allocations - before, 0) << "get never allocates for a counted value";
    before = allocations;
    for (int i = 0; i < 100; ++i) ctx.copy().run([] {});
    EXPECT_LE(allocations - before, 1) << "copies recycle the context state; run never allocates";
  });
}


TEST(AllocationFailure, RegisteringAWatcherIsAllOrNothing) {
  context_var<int> v("watched");
  int calls = 0;
  watcher w;
  const int points = sweep([&] { w = watch(v, [&](const value_change<int>&) { ++calls; }); },
                           [&] {
                             EXPECT_FALSE(w.active());
                             EXPECT_EQ(ctxvars::detail::watching(), 0u) << "nothing registered";
                           });
  EXPECT_GT(points, 0);
  context().run([&] { (void)v.set(1); });
  EXPECT_EQ(calls, 2) << "the set, then leaving the context";
  w.unwatch();
  EXPECT_EQ(ctxvars::detail::watching(), 0u);
}

TEST(AllocationFailure, ASwitchWhoseChangesCannotBeComputedSkipsOnlyItsValueNotifications) {
  // More than 16 value watchers: a switch diffs the two contexts, which
  // allocates (its list of changes). With few, it looks each variable up and
  // allocates nothing (the second half).
  context_var<int> v("watched");
  context c;
  c.run([&] { (void)v.set(1); });
  int value_calls = 0, switch_calls = 0;
  std::vector<watcher> ws;
  for (int i = 0; i < 20; ++i) ws.push_back(watch(v, [&](const value_change<int>&) { ++value_calls; }));
  watcher s = on_context_switch([&](const context_switch&) { ++switch_calls; });
  context().run([] {});  // this thread's cached list of watchers is filled
  value_calls = switch_calls = 0;
  int failed_switches = 0;
  for (int n = 0; n < 50; ++n) {
    const int vc = value_calls;
    fail_countdown = n;
    c.run([&] { EXPECT_EQ(v.get(), 1) << "the switch itself never fails"; });
    const bool failed = fail_countdown < 0;  // the nth allocation was reached
    fail_countdown = -1;
    if (failed) ++failed_switches;
    if (!failed) {
      EXPECT_EQ(value_calls, vc + 40) << "no allocation failed: both switches reported to all 20";
    } else {
      EXPECT_TRUE(value_calls == vc || value_calls == vc + 20) << "a switch is reported whole or not at all";
    }
  }
  EXPECT_GT(failed_switches, 0);
  EXPECT_EQ(switch_calls, 100) << "context-switch watchers are always called";

  ws.resize(1);  // one value watcher: looked up, no allocation
  context().run([] {});
  value_calls = 0;
  const long before = allocations;
  for (int i = 0; i < 10; ++i) c.run([] {});
  EXPECT_EQ(allocations, before) << "switches with few value watchers allocate nothing";
  EXPECT_EQ(value_calls, 20);
}


TEST(AllocationFailure, AWatcherWhoseUnwatchRanOutOfMemoryIsGoneAfterTheNextRegistrationChange) {
  // From the adversarial review: the record left listed by a failed unwatch
  // was copied into every later list, keeping the hot-path flag set forever.
  context_var<int> v("v");
  int calls = 0;
  watcher w = watch(v, [&](const value_change<int>&) { ++calls; });
  ASSERT_EQ(ctxvars::detail::watching(), ctxvars::detail::watching_values);
  fail_countdown = 0;  // the copy of the list in remove_watcher fails
  w.unwatch();
  fail_countdown = -1;
  EXPECT_FALSE(w.active());
  (void)v.set(1);
  EXPECT_EQ(calls, 0) << "an unwatched watcher was called";
  { watcher other = on_context_switch([](const context_switch&) {}); }
  EXPECT_EQ(ctxvars::detail::watching(), 0u) << "the leftover record went with the next list built";
}

TEST(AllocationFailure, AForkAndTheFirstSetOfAPolicyBearingVariableAreAllOrNothing) {
  const long alive_before = counted::alive.load();
  {
    vars v;
    context_var<counted> iso("iso", flow::isolate);
    context_var<counted> mapped("mapped", on_fork([](const counted& c) { return counted(c.v + 1); }));
    context ctx;
    context child;
    int points = 0;
    ctx.run([&] {
      for (auto& m : v.many) (void)m->set(counted(1));
      context keep = ctx.copy();  // shared: the sets below must not write in place
      const auto before = snapshot(ctx);
      // the first set of each: the context's list of policy-bearing keys grows
      points += sweep([&] { (void)iso.set(counted(7)); },
                      [&] {
                        EXPECT_EQ(snapshot(ctx), before);
                        EXPECT_EQ(iso.peek(), nullptr);
                      });
      const auto with_iso = snapshot(ctx);
      points += sweep([&] { (void)mapped.set(counted(5)); }, [&] { EXPECT_EQ(snapshot(ctx), with_iso); });
      const auto full = snapshot(ctx);
      const long alive = counted::alive.load();
      points += sweep(
          [&] {
            drain_layer_cache();  // the child's write-log layer must be allocated
            child = fork_context();
          },
          [&] {
            EXPECT_EQ(snapshot(ctx), full);
            EXPECT_EQ(counted::alive.load(), alive) << "the failed fork's values were destroyed";
          });
    });
    EXPECT_FALSE(child.contains(iso));
    EXPECT_EQ(child.get(mapped)->v, 6);
    EXPECT_EQ(ctx.get(mapped)->v, 5);
    EXPECT_GT(points, 2);
  }
  EXPECT_EQ(counted::alive.load(), alive_before);
}

}  // namespace
