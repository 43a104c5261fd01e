#include "ctxvars/flow.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "counted.hpp"
#include "ctxvars/ctxvars.hpp"
#include "ctxvars/task.hpp"
#include "ctxvars/thread_pool.hpp"

using namespace ctxvars;
using ctxvars_test::counted;

namespace {

// Every test runs in a context of its own, so the thread's base context does
// not carry values from one test to the next.
template <class F>
void in_fresh_context(F&& f) {
  context().run(std::forward<F>(f));
}

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

// ---- the rules, one by one -------------------------------------------------

TEST(Flow, AnIsolatedVariableIsAbsentInAForkWhichSeesItsDefault) {
  context_var<int> retries("retries", 0, flow::isolate);
  in_fresh_context([&] {
    retries.set(3);
    context child = fork_context();
    EXPECT_FALSE(child.contains(retries));
    EXPECT_EQ(child.run([&] { return retries.get(); }), 0);
    EXPECT_EQ(retries.get(), 3);  // the parent keeps its value
  });
}

TEST(Flow, AnIsolatedVariableWithoutDefaultIsUnsetInAFork) {
  context_var<std::string> secret("secret", flow::isolate);
  in_fresh_context([&] {
    secret.set("s3cr3t");
    context child = fork_context();
    child.run([&] {
      EXPECT_THROW(secret.get(), lookup_error);
      EXPECT_EQ(secret.try_get(), std::nullopt);
      EXPECT_EQ(secret.get("fallback"), "fallback");
    });
  });
}

TEST(Flow, InheritIsTheDefaultAndAForkSeesTheParentsValue) {
  context_var<int> plain("plain", 0);
  context_var<int> inherit("inherit", 0, flow::inherit);
  EXPECT_EQ(plain.flow_policy(), flow::inherit);
  EXPECT_EQ(inherit.flow_policy(), flow::inherit);
  in_fresh_context([&] {
    plain.set(1);
    inherit.set(2);
    context child = fork_context();
    EXPECT_EQ(child.get(plain), 1);
    EXPECT_EQ(child.get(inherit), 2);
  });
}

TEST(Flow, OnForkGivesTheForkFOfTheParentsValueAndLeavesTheParentAlone) {
  context_var<int> depth("depth", 0, on_fork([](const int& d) { return d + 1; }));
  EXPECT_EQ(depth.flow_policy(), std::nullopt);
  in_fresh_context([&] {
    depth.set(5);
    context child = fork_context();
    EXPECT_EQ(child.get(depth), 6);
    EXPECT_EQ(depth.get(), 5);
    EXPECT_EQ(copy_context().get(depth), 5);
  });
}

TEST(Flow, OnForkIsNotCalledForAnUnsetVariableWhichStaysUnset) {
  int calls = 0;
  context_var<int> with_default("with_default", 7, on_fork([&calls](const int& v) {
                                  ++calls;
                                  return v * 2;
                                }));
  context_var<int> without_default("without_default", on_fork([&calls](const int& v) {
                                     ++calls;
                                     return v * 2;
                                   }));
  in_fresh_context([&] {
    context child = fork_context();
    EXPECT_FALSE(child.contains(with_default));
    EXPECT_FALSE(child.contains(without_default));
    EXPECT_EQ(child.run([&] { return with_default.get(); }), 7);  // the default, not f(default)
    child.run([&] { EXPECT_THROW(without_default.get(), lookup_error); });
    EXPECT_EQ(calls, 0);
    without_default.set(4);
    EXPECT_EQ(fork_context().get(without_default), 8);
    EXPECT_EQ(calls, 1);
  });
}

TEST(Flow, AResetVariableIsNotForkedAndNotMapped) {
  int calls = 0;
  context_var<int> v("v", on_fork([&calls](const int& x) {
                       ++calls;
                       return x;
                     }));
  context_var<int> iso("iso", flow::isolate);
  in_fresh_context([&] {
    auto t = v.set(1);
    auto u = iso.set(1);
    v.reset(t);
    iso.reset(u);
    context child = fork_context();
    EXPECT_FALSE(child.contains(v));
    EXPECT_FALSE(child.contains(iso));
    EXPECT_EQ(calls, 0);
  });
}

TEST(Flow, AnOnForkThatThrowsMakesTheForkThrowAndChangesNothing) {
  counted::alive = 0;
  {
    bool fail = true;
    context_var<counted> a("a", counted(0), on_fork([&fail](const counted& c) {
                             if (fail) throw boom();
                             return counted(c.v + 1);
                           }));
    context_var<counted> b("b", counted(0), on_fork([](const counted& c) { return counted(c.v + 10); }));
    context_var<int> iso("iso", 0, flow::isolate);
    in_fresh_context([&] {
      b.set(counted(1));
      a.set(counted(1));
      iso.set(1);
      const long alive_before = counted::alive;
      const std::size_t size_before = copy_context().size();
      EXPECT_THROW(fork_context(), boom);
      EXPECT_EQ(counted::alive, alive_before);  // whatever the failed fork built is gone
      EXPECT_EQ(copy_context().size(), size_before);
      EXPECT_EQ(a.get().v, 1);
      EXPECT_EQ(b.get().v, 1);
      EXPECT_EQ(iso.get(), 1);
      fail = false;
      context child = fork_context();
      EXPECT_EQ(child.get(a)->v, 2);
      EXPECT_EQ(child.get(b)->v, 11);
      EXPECT_FALSE(child.contains(iso));
    });
  }
  EXPECT_EQ(counted::alive, 0);
}

TEST(Flow, CopyContextAndContextCopyStayPlainSnapshots) {
  int calls = 0;
  context_var<int> iso("iso", 0, flow::isolate);
  context_var<int> mapped("mapped", 0, on_fork([&calls](const int& x) {
                            ++calls;
                            return x + 1;
                          }));
  in_fresh_context([&] {
    iso.set(1);
    mapped.set(1);
    context c = copy_context();
    EXPECT_EQ(c.get(iso), 1);
    EXPECT_EQ(c.get(mapped), 1);
    context cc = c.copy();
    EXPECT_EQ(cc.get(iso), 1);
    EXPECT_EQ(cc.get(mapped), 1);
    EXPECT_EQ(calls, 0);
    // ...and a plain copy carries the policies along: forking from inside it applies them.
    cc.run([&] {
      context child = fork_context();
      EXPECT_FALSE(child.contains(iso));
      EXPECT_EQ(child.get(mapped), 2);
    });
    EXPECT_EQ(calls, 1);
  });
}

TEST(Flow, NestedForksApplyThePolicyAtEachLevel) {
  context_var<int> depth("depth", 0, on_fork([](const int& d) { return d + 1; }));
  context_var<int> iso("iso", 0, flow::isolate);
  in_fresh_context([&] {
    depth.set(0);
    iso.set(1);
    fork_context().run([&] {
      EXPECT_EQ(depth.get(), 1);
      EXPECT_EQ(iso.get(), 0);
      iso.set(2);  // the child's own value: isolated from its children too
      fork_context().run([&] {
        EXPECT_EQ(depth.get(), 2);
        EXPECT_EQ(iso.get(), 0);
        fork_context().run([&] { EXPECT_EQ(depth.get(), 3); });
      });
      EXPECT_EQ(depth.get(), 1);
      EXPECT_EQ(iso.get(), 2);
    });
  });
}

TEST(Flow, PlainVariablesAreSharedAndOnlyPolicyBearingOnesChange) {
  std::vector<std::unique_ptr<context_var<int>>> many;
  for (int i = 0; i < 300; ++i) many.push_back(std::make_unique<context_var<int>>("v" + std::to_string(i)));
  context_var<int> iso("iso", flow::isolate);
  context_var<int> mapped("mapped", on_fork([](const int& x) { return -x; }));
  in_fresh_context([&] {
    for (int i = 0; i < 300; ++i) many[i]->set(i);
    iso.set(1);
    mapped.set(9);
    context child = fork_context();
    EXPECT_EQ(child.size(), 301u);
    for (int i = 0; i < 300; ++i) ASSERT_EQ(child.get(*many[i]), i);
    EXPECT_EQ(child.get(mapped), -9);
    EXPECT_FALSE(child.contains(iso));
  });
}

TEST(Flow, OnForkRunsInTheParentsContextAndItsSetsStayThere) {
  context_var<int> other("other", 0);
  context_var<int> mapped("mapped", 0, on_fork([&other](const int& x) {
                            EXPECT_EQ(other.get(), 40);  // the parent is current
                            other.set(41);               // goes to the parent, not to the child
                            return x + other.get();
                          }));
  in_fresh_context([&] {
    other.set(40);
    mapped.set(1);
    context child = fork_context();
    EXPECT_EQ(child.get(mapped), 42);
    EXPECT_EQ(child.get(other), 40);  // the child was copied before f ran
    EXPECT_EQ(other.get(), 41);
  });
}

TEST(Flow, OnForkMayForkAgainAndSetItsOwnVariableInTheParent) {
  context_var<int> inner("inner", 0, flow::isolate);
  context_var<int>* self = nullptr;
  int depth = 0;
  context_var<int> mapped("mapped", 0, on_fork([&](const int& x) {
                            if (depth++ == 0) {
                              // A fork inside f (of the parent, which holds this
                              // variable: f runs again, one level down).
                              context nested = fork_context();
                              EXPECT_FALSE(nested.contains(inner));
                              EXPECT_EQ(nested.get(*self), x + 1);
                              self->set(100);  // the parent's value changes
                            }
                            --depth;
                            return x + 1;
                          }));
  self = &mapped;
  in_fresh_context([&] {
    inner.set(1);
    mapped.set(1);
    context child = fork_context();
    EXPECT_EQ(child.get(mapped), 2);  // f saw the value at the fork
    EXPECT_EQ(mapped.get(), 100);
  });
}

TEST(Flow, ABracedDefaultStillMeansADefault) {
  context_var<std::string> s("s", {});
  context_var<int> i("i", {});
  EXPECT_EQ(s.get(), "");
  EXPECT_EQ(i.get(), 0);
  context_var<std::string> iso("iso", {}, flow::isolate);
  EXPECT_EQ(iso.get(), "");
}

TEST(Flow, MoveOnlyValuesCanBeIsolatedOrMapped) {
  context_var<std::unique_ptr<int>> owned("owned", flow::isolate);
  context_var<std::unique_ptr<int>> cloned("cloned", on_fork([](const std::unique_ptr<int>& p) {
                                             return p ? std::make_unique<int>(*p + 1) : nullptr;
                                           }));
  context_var<int> no_default_inherit("no_default_inherit", flow::inherit);
  in_fresh_context([&] {
    owned.set(std::make_unique<int>(1));
    cloned.set(std::make_unique<int>(1));
    no_default_inherit.set(3);
    context child = fork_context();
    EXPECT_FALSE(child.contains(owned));
    child.run([&] {
      ASSERT_NE(cloned.peek(), nullptr);
      EXPECT_EQ(**cloned.peek(), 2);
      EXPECT_EQ(no_default_inherit.get(), 3);
    });
    EXPECT_EQ(**cloned.peek(), 1);
  });
}

// ---- where forks happen ----------------------------------------------------

TEST(Flow, BindAppliesThePoliciesOnceWhenBinding) {
  int calls = 0;
  context_var<int> iso("iso", 0, flow::isolate);
  context_var<int> mapped("mapped", 0, on_fork([&calls](const int& x) {
                            ++calls;
                            return x + 1;
                          }));
  in_fresh_context([&] {
    iso.set(1);
    mapped.set(1);
    auto f = bind([&] { return std::pair(iso.get(), mapped.get()); });
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(f(), std::pair(0, 2));
    EXPECT_EQ(f(), std::pair(0, 2));
    EXPECT_EQ(calls, 1);
    int on_thread = -1;
    std::thread([&, g = bind([&] { on_thread = mapped.get(); })] { g(); }).join();
    EXPECT_EQ(on_thread, 2);
    // bind(c, f) runs in c itself: no fork
    context c = copy_context();
    EXPECT_EQ(bind(c, [&] { return iso.get(); })(), 1);
  });
}

TEST(Flow, BindWithAThrowingOnForkThrowsAndBindsNothing) {
  context_var<int> mapped("mapped", 0, on_fork([](const int&) -> int { throw boom(); }));
  in_fresh_context([&] {
    mapped.set(1);
    bool ran = false;
    EXPECT_THROW((void)bind([&] { ran = true; }), boom);
    EXPECT_FALSE(ran);
  });
}

task<int> read_both(context_var<int>& a, context_var<int>& b) { co_return a.get() * 100 + b.get(); }

TEST(Flow, SpawnAndSyncWaitStartTheTaskInAFork) {
  context_var<int> iso("iso", 0, flow::isolate);
  context_var<int> mapped("mapped", 0, on_fork([](const int& x) { return x + 1; }));
  thread_pool pool(1);
  in_fresh_context([&] {
    iso.set(5);
    mapped.set(5);
    EXPECT_EQ(sync_wait(read_both(iso, mapped)), 6);
    EXPECT_EQ(spawn(pool, read_both(iso, mapped)).get(), 6);
    // spawn(sched, c, t) runs in c itself: no fork
    EXPECT_EQ(spawn(pool, copy_context(), read_both(iso, mapped)).get(), 505);
  });
}

task<void> mark(bool& ran) {
  ran = true;
  co_return;
}

TEST(Flow, SpawnWithAThrowingOnForkThrowsAndTheTaskNeverRuns) {
  context_var<int> mapped("mapped", 0, on_fork([](const int&) -> int { throw boom(); }));
  bool ran = false;
  {
    thread_pool pool(1);
    in_fresh_context([&] {
      mapped.set(1);
      EXPECT_THROW(spawn(pool, mark(ran)), boom);
      EXPECT_THROW(sync_wait(mark(ran)), boom);
    });
  }  // the pool ran what it was given
  EXPECT_FALSE(ran);
}

// ---- threads, lifetimes, odd types -----------------------------------------

TEST(Flow, ThreadsForkTheirOwnContextsAndASharedOneAtOnce) {
  std::atomic<int> calls{0};
  context_var<int> iso("iso", 0, flow::isolate);
  context_var<int> mapped("mapped", 0, on_fork([&calls](const int& x) {
                            calls.fetch_add(1, std::memory_order_relaxed);
                            return x + 1;
                          }));
  context shared;
  shared.run([&] {
    iso.set(1);
    mapped.set(1000);
  });
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      in_fresh_context([&] {
        for (int i = 0; i < 500; ++i) {
          iso.set(i);
          mapped.set(t * 1000 + i);
          context child = fork_context();
          if (child.contains(iso) || child.get(mapped) != t * 1000 + i + 1) ++failures;
          // a copy of a context another thread may be reading too, then a fork inside it
          shared.copy().run([&] {
            context c = fork_context();
            if (c.contains(iso) || c.get(mapped) != 1001) ++failures;
          });
        }
      });
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(calls, 4 * 500 * 2);
}

TEST(Flow, AThreadsOwnBaseContextForksLikeAnyOther) {
  context_var<int> iso("iso", 0, flow::isolate);
  context_var<int> mapped("mapped", 0, on_fork([](const int& x) { return x * 10; }));
  std::thread([&] {
    EXPECT_EQ(fork_context().size(), 0u);  // nothing set yet: an empty fork
    iso.set(1);
    mapped.set(2);
    context child = fork_context();
    EXPECT_FALSE(child.contains(iso));
    EXPECT_EQ(child.get(mapped), 20);
    std::thread(bind([&] {
      EXPECT_EQ(iso.get(), 0);
      EXPECT_EQ(mapped.get(), 20);
    })).join();
  }).join();
}

TEST(Flow, AVariableDestroyedWhileAContextHoldsItsValue) {
  counted::alive = 0;
  int calls = 0;
  {
    context holder;
    auto iso = std::make_unique<context_var<counted>>("iso", flow::isolate);
    auto mapped = std::make_unique<context_var<counted>>("mapped", on_fork([&calls](const counted& c) {
                                                           ++calls;
                                                           return counted(c.v + 1);
                                                         }));
    holder.run([&] {
      iso->set(counted(1));
      mapped->set(counted(1));
    });
    iso.reset();
    mapped.reset();
    EXPECT_EQ(holder.size(), 2u);
    holder.run([&] {
      context child = fork_context();
      ASSERT_EQ(child.size(), 1u);  // isolation outlives the variable
      const context::entry e = *child.begin();
      EXPECT_EQ(e.name(), "mapped");
      EXPECT_EQ(e.value<counted>().v, 1);  // inherited as it is: f is gone with its variable
    });
    EXPECT_EQ(calls, 0);
  }
  EXPECT_EQ(counted::alive, 0);
}

TEST(Flow, DestroyingAVariableWaitsForAnOnForkRunningOnAnotherThread) {
  std::atomic<bool> in_f{false}, f_done{false};
  auto v = std::make_unique<context_var<int>>("slow", on_fork([&](const int& x) {
                                                in_f = true;
                                                std::this_thread::sleep_for(std::chrono::milliseconds(50));
                                                f_done = true;
                                                return x;
                                              }));
  context c;
  c.run([&] { v->set(1); });
  std::thread forker([&] { c.run([] { (void)fork_context(); }); });
  while (!in_f) std::this_thread::yield();
  v.reset();  // waits for f
  EXPECT_TRUE(f_done);
  forker.join();
}

struct alignas(128) wide {
  unsigned char bytes[128] = {};
  int v = 0;
};

TEST(Flow, OverAlignedValuesAreMappedIntoAlignedBoxes) {
  context_var<wide> w("w", on_fork([](const wide& x) {
                        wide y = x;
                        ++y.v;
                        return y;
                      }));
  in_fresh_context([&] {
    w.set(wide{{}, 1});
    context child = fork_context();
    child.run([&] {
      const wide* p = w.peek();
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % alignof(wide), 0u);
      EXPECT_EQ(p->v, 2);
    });
  });
}

// Copying throws when asked to; moving may throw too.
struct touchy {
  static inline bool throw_on_copy = false;
  int v = 0;
  explicit touchy(int x) : v(x) {}
  touchy(const touchy& o) : v(o.v) {
    if (throw_on_copy) throw boom();
  }
  touchy(touchy&& o) noexcept(false) : v(o.v) {
    if (throw_on_copy) throw boom();
  }
};

TEST(Flow, AThrowingValueTypeLeavesNothingBehind) {
  context_var<touchy> t("t", touchy(0), on_fork([](const touchy& x) { return touchy(x.v + 1); }));
  in_fresh_context([&] {
    t.set(touchy(1));
    touchy::throw_on_copy = true;
    EXPECT_THROW(fork_context(), boom);  // building the child's value throws
    touchy::throw_on_copy = false;
    EXPECT_EQ(t.get().v, 1);
    EXPECT_EQ(fork_context().get(t)->v, 2);
  });
  // a default whose copy throws: no identity leaks (checked under ASan)
  touchy::throw_on_copy = true;
  EXPECT_THROW(context_var<touchy>("u", touchy(0), flow::isolate), boom);
  touchy::throw_on_copy = false;
}

TEST(Flow, AContextListsOnlyThePolicyKeysItMayHold) {
  context_var<int> plain("plain", 0);
  context_var<int> a("a", flow::isolate), b("b", flow::isolate), c("c", flow::isolate);
  in_fresh_context([&] {
    const detail::context_impl* cur = detail::this_thread_state().current;
    plain.set(1);
    EXPECT_EQ(cur->policy_keys().size(), 0u);  // the fast path: a fork is a copy
    auto ta = a.set(1);
    b.set(1);
    auto ta2 = a.set(2);  // already listed
    EXPECT_EQ(cur->policy_keys().size(), 2u);
    a.reset(ta2);
    a.reset(ta);  // a is gone; its id stays until the list grows
    c.set(1);
    EXPECT_EQ(cur->policy_keys().size(), 2u);  // b and c: a was dropped
  });
}

}  // namespace
