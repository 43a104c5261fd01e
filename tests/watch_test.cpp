// Watchers (watch.hpp): context-switch callbacks and per-variable change
// notifications, their rules (no nested notifications, unwatch waits, no
// throwing), and that with no watcher the process-wide flag is clear.
#include "ctxvars/watch.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/task.hpp"
#include "ctxvars/thread_pool.hpp"

using namespace ctxvars;

namespace {

struct seen {
  std::optional<std::string> before, after;
  bool switched;
  friend bool operator==(const seen&, const seen&) = default;
};
std::ostream& operator<<(std::ostream& o, const seen& s) {
  return o << (s.before ? *s.before : "<none>") << " -> " << (s.after ? *s.after : "<none>")
           << (s.switched ? " (switch)" : " (set/reset)");
}

// Records what a watcher of a string variable is told (on any thread).
struct recorder {
  std::mutex m;
  std::vector<seen> events;
  auto callback() {
    return [this](const value_change<std::string>& c) {
      std::lock_guard lk(m);
      events.push_back({c.before ? std::optional<std::string>(*c.before) : std::nullopt,
                        c.after ? std::optional<std::string>(*c.after) : std::nullopt, c.context_switched});
    };
  }
  std::vector<seen> take() {
    std::lock_guard lk(m);
    return std::exchange(events, {});
  }
};

const std::nullopt_t none = std::nullopt;

// Variables read by coroutines (which must not capture).
context_var<int> task_i("task_i");
context_var<std::string> task_s("task_s");

TEST(Watch, NoWatcherLeavesTheHotPathFlagClearAndAWatcherSetsItUntilItIsGone) {
  context_var<std::string> v("v");
  EXPECT_EQ(detail::watching(), 0u);
  {
    watcher w = watch(v, [](const value_change<std::string>&) {});
    EXPECT_EQ(detail::watching(), detail::watching_values);
    watcher s = on_context_switch([](const context_switch&) {});
    EXPECT_EQ(detail::watching(), detail::watching_values | detail::watching_switches);
    w.unwatch();
    EXPECT_FALSE(w.active());
    EXPECT_EQ(detail::watching(), detail::watching_switches);
  }
  EXPECT_EQ(detail::watching(), 0u);
}

TEST(Watch, SetAndResetReportBeforeAndAfterValues) {
  context_var<std::string> v("v", "default");
  recorder r;
  context().run([&] {
    watcher w = watch(v, r.callback());
    auto t1 = v.set("a");
    auto t2 = v.set("b");
    v.reset(t2);
    v.reset(t1);
    EXPECT_EQ(r.take(), (std::vector<seen>{{none, "a", false}, {"a", "b", false}, {"b", "a", false}, {"a", none, false}}))
        << "the default is not substituted for a missing value";
  });
}

TEST(Watch, OtherVariablesAreNotReported) {
  context_var<std::string> v("v"), other("other");
  recorder r;
  watcher w = watch(v, r.callback());
  context().run([&] {
    (void)other.set("x");
    auto s = other.scoped_set("y");
  });
  EXPECT_TRUE(r.take().empty());
}

TEST(Watch, ASwitchReportsOnlyVariablesWhoseValueDiffers) {
  context_var<std::string> v("v"), same("same");
  recorder r, rs;
  context c;
  context().run([&] {
    (void)same.set("shared");
    (void)v.set("outer");
    c = copy_context();
    c.run([&] { (void)v.set("inner"); });
    watcher w = watch(v, r.callback());
    watcher ws = watch(same, rs.callback());
    c.run([&] { EXPECT_EQ(r.take(), (std::vector<seen>{{"outer", "inner", true}})); });
    EXPECT_EQ(r.take(), (std::vector<seen>{{"inner", "outer", true}}));
    EXPECT_TRUE(rs.take().empty()) << "same value object in both contexts: no change";
    context empty;
    empty.run([] {});
    EXPECT_EQ(r.take(), (std::vector<seen>{{"outer", none, true}, {none, "outer", true}}));
  });
}

TEST(Watch, ASwitchAmongManyVariablesCostsWhatChangedAndReportsIt) {
  std::vector<std::unique_ptr<context_var<int>>> vars;
  for (int i = 0; i < 5000; ++i) vars.push_back(std::make_unique<context_var<int>>("v" + std::to_string(i)));
  context big;
  big.run([&] {
    for (auto& p : vars) (void)p->set(1);
  });
  context next = big.copy();
  next.run([&] { (void)vars[1234]->set(2); });
  std::vector<std::pair<std::string, int>> seen_changes;
  int calls = 0;
  watcher w = on_context_switch([&](const context_switch& s) {
    ++calls;
    s.changes([&](const change& c) {
      if (c.name.size() > 1 && c.name[0] == 'v')  // this test's variables only (whatever ran before)
        seen_changes.emplace_back(std::string(c.name), c.after ? c.after->value<int>() : -1);
    });
  });
  std::vector<std::pair<int, int>> v1234;
  watcher wv = watch(*vars[1234], [&](const value_change<int>& c) {
    v1234.emplace_back(c.before ? *c.before : -1, c.after ? *c.after : -1);
  });
  big.run([&] {
    seen_changes.clear();
    next.run([] {});
    // Entering `next` and leaving it: one variable each way, out of 5000.
    EXPECT_EQ(seen_changes, (std::vector<std::pair<std::string, int>>{{"v1234", 2}, {"v1234", 1}}));
  });
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(v1234, (std::vector<std::pair<int, int>>{{-1, 1}, {1, 2}, {2, 1}, {1, -1}}));

  // More than 16 watched variables: switches are diffed instead of looked up.
  std::vector<watcher> many;
  std::vector<int> changed_ids;
  for (int i = 1230; i < 1250; ++i)
    many.push_back(watch(*vars[static_cast<std::size_t>(i)], [&, i](const value_change<int>& c) {
      if (c.before && c.after) changed_ids.push_back(i);
    }));
  v1234.clear();
  big.run([&] {
    changed_ids.clear();
    next.run([] {});
  });
  EXPECT_EQ(changed_ids, (std::vector<int>{1234, 1234}));
  EXPECT_EQ(v1234, (std::vector<std::pair<int, int>>{{-1, 1}, {1, 2}, {2, 1}, {1, -1}}));
}

TEST(Watch, ContextSwitchWatchersSeeFromAndToWithTheNewContextCurrent) {
  context_var<int> v("v");
  context c;
  c.run([&] { (void)v.set(5); });
  std::vector<std::pair<bool, bool>> bases;
  std::vector<int> values;
  std::vector<bool> to_is_c;
  watcher w = on_context_switch([&](const context_switch& s) {
    bases.emplace_back(s.from_is_thread_base(), s.to_is_thread_base());
    values.push_back(v.get(-1));  // the new context is current
    to_is_c.push_back(s.to() == c);
    EXPECT_EQ(s.from().get(v).value_or(-1) == 5, s.from() == c);
  });
  c.run([] {});
  EXPECT_EQ(bases, (std::vector<std::pair<bool, bool>>{{true, false}, {false, true}}));
  EXPECT_EQ(values, (std::vector<int>{5, -1}));
  EXPECT_EQ(to_is_c, (std::vector<bool>{true, false}));
}

TEST(Watch, ATaskPrivateContextIsHandedOutAsACopyNeverAsAHandle) {
  thread_pool pool(1);
  std::atomic<int> copies{0}, handles{0};
  watcher w = on_context_switch([&](const context_switch& s) {
    if (s.to_is_thread_base()) return;
    context t = s.to();
    // A handle to a context the thread entered would refuse run() (it is in
    // use); a copy runs.
    bool ran = false;
    try {
      t.run([&] { ran = true; });
    } catch (const context_in_use_error&) {
    }
    (ran ? copies : handles)++;
  });
  spawn(pool, []() -> task<int> { co_return task_i.get(0); }()).get();
  EXPECT_GT(copies.load(), 0);
  EXPECT_EQ(handles.load(), 0);
}

TEST(Watch, TaskResumptionsReportTheTasksValuesOnTheThreadThatRunsThem) {
  thread_pool pool(2);
  recorder r;
  auto creator = task_s.set("creator");  // reset at the end: later tests see the thread as it was
  watcher w = watch(task_s, r.callback());
  auto s = spawn(pool, [](thread_pool& p) -> task<int> {
    co_await p.schedule();
    (void)task_s.set("task");
    co_await p.schedule();
    co_return 0;
  }(pool));
  s.get();
  const auto ev = r.take();
  // Every event on a worker: entering the task's copy ("creator" from the
  // worker's empty base), the set, and each step's leave and re-entry.
  ASSERT_FALSE(ev.empty());
  EXPECT_NE(std::find(ev.begin(), ev.end(), seen{"creator", "task", false}), ev.end());
  EXPECT_NE(std::find(ev.begin(), ev.end(), seen{none, "task", true}), ev.end()) << "re-entry after a suspension";
  w.unwatch();
  EXPECT_EQ(task_s.get(), "creator");
  task_s.reset(creator);
}

TEST(Watch, CallbacksMaySetAndRunContextsWithoutNestedNotifications) {
  context_var<std::string> v("v");
  context other;
  std::atomic<int> calls{0};
  watcher w = watch(v, [&](const value_change<std::string>& c) {
    ++calls;
    if (c.after && *c.after == "a") {
      (void)v.set("from-callback");  // not reported
      other.run([&] { (void)v.set("other"); });
    }
  });
  watcher s = on_context_switch([&](const context_switch&) { ++calls; });
  context().run([&] {
    calls = 0;
    (void)v.set("a");
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(v.get(), "from-callback");
  });
  EXPECT_EQ(other.get(v), "other");
}

TEST(Watch, UnwatchWaitsForACallRunningOnAnotherThreadAndDestroysTheCallback) {
  context_var<int> v("v");
  std::latch inside(1), release(1);
  std::atomic<bool> destroyed{false}, unwatched{false};
  struct on_destroy {
    std::atomic<bool>* flag;
    ~on_destroy() {
      if (flag) flag->store(true);
    }
    on_destroy(std::atomic<bool>* f) : flag(f) {}
    on_destroy(on_destroy&& o) noexcept : flag(std::exchange(o.flag, nullptr)) {}
  };
  watcher w = watch(v, [&, d = on_destroy(&destroyed)](const value_change<int>&) {
    inside.count_down();
    release.wait();
  });
  std::thread t([&] { (void)v.set(1); });
  inside.wait();
  std::thread u([&] {
    w.unwatch();
    unwatched = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(unwatched.load()) << "unwatch() returned while the callback still ran";
  EXPECT_FALSE(destroyed.load());
  release.count_down();
  u.join();
  t.join();
  EXPECT_TRUE(unwatched.load());
  EXPECT_TRUE(destroyed.load()) << "the callback is destroyed by unwatch()";
  (void)v.set(2);  // no call after unwatch
}

TEST(Watch, AWatcherMayStopItselfAndOthersFromItsCallback) {
  context_var<int> v("v");
  int calls = 0;
  watcher other = watch(v, [&](const value_change<int>&) { calls += 100; });
  watcher self;
  self = watch(v, [&](const value_change<int>&) {
    ++calls;
    self.unwatch();
    other.unwatch();
  });
  context().run([&] {
    (void)v.set(1);
    (void)v.set(2);
  });
  EXPECT_TRUE(calls == 1 || calls == 101) << calls;  // `other` may run first, once
  EXPECT_EQ(detail::watching(), 0u);
}

// Move-assigning from a watcher that the target's own callback owns: stopping
// the old watcher destroys that callback and the source with it, so the source
// is taken first (it was read after being freed).
TEST(Watch, AssigningFromAWatcherTheOldCallbackOwnsIsSafe) {
  context_var<int> v("v");
  int next_calls = 0;
  auto next = std::make_shared<watcher>(watch(v, [&](const value_change<int>&) { ++next_calls; }));
  watcher* src = next.get();
  watcher w = watch(v, [next](const value_change<int>&) {});
  next.reset();  // only w's callback keeps *src alive
  w = std::move(*src);
  EXPECT_TRUE(w.active());
  context().run([&] { (void)v.set(1); });
  EXPECT_EQ(next_calls, 2) << "w now is the watcher it was assigned (the set, and leaving the context)";
  w.unwatch();
  EXPECT_EQ(detail::watching(), 0u) << "both watchers stopped: the hot-path flags are clear";
  context().run([&] { (void)v.set(2); });
  EXPECT_EQ(next_calls, 2);
}

TEST(Watch, AWatcherOutlivesItsVariable) {
  recorder r;
  watcher w;
  context c;
  {
    context_var<std::string> v("short-lived");
    w = watch(v, r.callback());
    c.run([&] { (void)v.set("kept"); });
    EXPECT_EQ(r.take(), (std::vector<seen>{{none, "kept", false}, {"kept", none, true}}));
  }
  c.run([] {});  // the context still holds the dead variable's value
  EXPECT_EQ(r.take(), (std::vector<seen>{{none, "kept", true}, {"kept", none, true}}));
}

struct alignas(64) wide {
  int x;
};

TEST(Watch, OverAlignedValuesArriveAligned) {
  context_var<wide> v("wide");
  std::vector<int> xs;
  watcher w = watch(v, [&](const value_change<wide>& c) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(c.after) % 64, 0u);
    xs.push_back(c.after ? c.after->x : -1);
  });
  context().run([&] {
    auto t = v.set(wide{3});
    v.reset(t);
  });
  EXPECT_EQ(xs, (std::vector<int>{3, -1}));
}

TEST(WatchDeathTest, ACallbackThatThrowsTerminatesWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        context_var<int> v("v");
        watcher w = watch(v, [](const value_change<int>&) { throw std::runtime_error("boom"); });
        (void)v.set(1);
      },
      "watcher callback threw");
}

TEST(Watch, ThreadChurnWithWatchersComingAndGoingIsSafe) {
  context_var<int> v("v");
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0};
  std::thread churn([&] {
    while (!stop) {
      watcher a = watch(v, [&](const value_change<int>&) { ++calls; });
      watcher b = on_context_switch([&](const context_switch& s) {
        s.changes([&](const change&) { ++calls; });
      });
      std::this_thread::yield();
    }
  });
  for (int round = 0; round < 20; ++round) {
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i)
      ts.emplace_back([&, i] {
        context c;
        for (int k = 0; k < 200; ++k)
          c.run([&] {
            auto s = v.scoped_set(i * 1000 + k);
            context().run([&] { (void)v.set(k); });
          });
      });
    for (auto& t : ts) t.join();
  }
  stop = true;
  churn.join();
  EXPECT_EQ(detail::watching(), 0u);
}

}  // namespace
