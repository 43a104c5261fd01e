// Adversarial review of watchers (watch.hpp): re-entrancy through user code
// that runs inside set(), what value watchers are told about effects of
// context-switch callbacks, thread exit and lifetimes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/watch.hpp"
#include "ctxvars/task.hpp"
#include "ctxvars/thread_pool.hpp"

using namespace ctxvars;

namespace {

// A value whose (noexcept) copy constructor may run a hook once: user code
// inside set(), which context_var::set explicitly allows for ("the copy below
// is user code, which may set this very variable again").
// Live objects are tracked by address (a flag written by the destructor would
// be a dead store the compiler may drop).
std::set<const void*> live_reentrant;
struct reentrant {
  int v = 0;
  explicit reentrant(int x) noexcept : v(x) { live_reentrant.insert(this); }
  reentrant(reentrant&& o) noexcept : v(o.v) { live_reentrant.insert(this); }
  reentrant(const reentrant& o) noexcept : v(o.v) {
    live_reentrant.insert(this);
    if (hook) std::exchange(hook, nullptr)();
  }
  reentrant& operator=(const reentrant&) = delete;
  ~reentrant() { live_reentrant.erase(this); }
  bool alive() const { return live_reentrant.count(this) != 0; }
  static inline void (*hook)() = nullptr;
};
static_assert(std::is_nothrow_copy_constructible_v<reentrant>);

context_var<reentrant> rv("rv");

TEST(WatchAttack, ASetWhoseValueCopySetsTheVariableAgainMustNotReportADestroyedValue) {
  auto t0 = rv.set(reentrant(1));
  struct event {
    int after;
    bool after_alive;
  };
  std::vector<event> events;
  watcher w = watch(rv, [&](const value_change<reentrant>& c) {
    events.push_back({c.after && c.after->alive() ? c.after->v : -1, c.after ? c.after->alive() : true});
  });
  // set(2) displaces 1 and copies it into the token (noexcept copy: after the
  // change); that copy sets 99, which displaces the box holding 2 into a
  // token that dies at once: the box holding 2 is released.
  reentrant::hook = [] { (void)rv.set(reentrant(99)); };
  {
    auto t = rv.set(reentrant(2));
  }
  EXPECT_EQ(rv.get().v, 99);
  ASSERT_EQ(events.size(), 2u);
  // Every value a watcher is handed must be alive during the callback.
  for (const event& e : events) EXPECT_TRUE(e.after_alive) << "watcher handed a destroyed value (was " << e.after << ")";
  // And the last report must be the thread's actual view (99).
  EXPECT_EQ(events.back().after, 99) << "the watcher's last report is not the current value";
}

// The same, with the spare-box slot of the variable occupied when the box
// holding 2 is released, so that the box is freed (not parked): under ASan
// set() then reads freed memory (heap-use-after-free in notify_value's
// retained(added)).
TEST(WatchAttack, ASetWhoseValueCopySetsTheVariableAgainDoesNotTouchAFreedBox) {
  auto t0 = rv.set(reentrant(1));
  int calls = 0;
  watcher w = watch(rv, [&](const value_change<reentrant>&) { ++calls; });
  // A variable sharing rv's spare-box slot, to evict the parked shell.
  static std::vector<std::unique_ptr<context_var<reentrant>>> vars;
  static context_var<reentrant>* evictor = nullptr;
  while (!evictor) {
    vars.push_back(std::make_unique<context_var<reentrant>>("evictor"));
    if ((vars.back()->id() & (CTXVARS_SPARE_BOXES - 1)) == (rv.id() & (CTXVARS_SPARE_BOXES - 1))) evictor = vars.back().get();
  }
  reentrant::hook = [] {
    { auto t = rv.set(reentrant(99)); }  // the box holding 2 is released: parked as the slot's spare
    auto e = evictor->set(reentrant(5));
    evictor->reset(e);  // the box holding 5 is parked, evicting (freeing) the shell that held 2
  };
  {
    auto t = rv.set(reentrant(2));
  }
  EXPECT_EQ(rv.get().v, 99);
  EXPECT_GE(calls, 1);
}

TEST(WatchAttack, ASetMadeByASwitchCallbackIsNotReportedToValueWatchers) {
  // watch.hpp: "Nothing they do is reported to watchers (no nested
  // notifications on that thread)". A switch callback that sets a variable on
  // entering a context must therefore not show up in value watchers.
  context_var<std::string> v("v");
  std::vector<std::pair<std::string, bool>> seen;
  watcher w = watch(v, [&](const value_change<std::string>& c) {
    seen.emplace_back(c.after ? *c.after : "<none>", c.context_switched);
  });
  watcher s = on_context_switch([&](const context_switch& sw) {
    if (!sw.to_is_thread_base()) (void)v.set("set-by-switch-callback");
  });
  context c = copy_context();
  c.run([] {});
  // Entering: v is unset in both contexts, so no value change is due on
  // entering; only the leave reports the (now visible) set going away.
  for (const auto& [after, switched] : seen)
    EXPECT_NE(after, "set-by-switch-callback") << "a switch callback's own set was reported as a context switch";
}

// A value whose destructor sets a watched variable: runs at thread exit when
// the thread's base context is destroyed.
context_var<int> exit_watched("exit_watched");
struct sets_on_destroy {
  int n = 0;
  sets_on_destroy() = default;
  sets_on_destroy(const sets_on_destroy&) = default;
  ~sets_on_destroy() {
    if (n) (void)exit_watched.set(n);
  }
};
context_var<sets_on_destroy> exit_holder("exit_holder");

TEST(WatchAttack, ThreadExitWithWatchersAndDestructorsThatSetWatchedVariablesIsSafe) {
  std::atomic<int> calls{0};
  watcher w = watch(exit_watched, [&](const value_change<int>&) { calls.fetch_add(1); });
  watcher s = on_context_switch([&](const context_switch& sw) {
    sw.changes([](const change&) {});
  });
  for (int i = 0; i < 20; ++i) {
    std::thread([i] {
      if (i % 2) {
        context c = copy_context();
        c.run([] {});  // the watcher cache exists before the base context
      }
      sets_on_destroy d;
      d.n = i + 1;
      (void)exit_holder.set(d);
    }).join();
  }
  EXPECT_GE(calls.load(), 0);
}

TEST(WatchAttack, ACallbackThatStopsItselfIsDestroyedOnceTheThreadsThatRanItMoveOn) {
  // Regression (review): unwatch() from inside a callback used to skip
  // drop(), leaving the callback to die with the record's last reference —
  // held by every thread's cached list, which nothing refreshes once no
  // watcher is left. Now it is finished when the notification ends.
  auto sentinel = std::make_shared<int>(1);
  std::weak_ptr<int> alive = sentinel;
  std::optional<watcher> self;
  self.emplace(on_context_switch([keep = std::move(sentinel), &self](const context_switch&) {
    self.reset();  // stops itself from inside its callback
  }));
  context c = copy_context();
  c.run([] {});  // the callback stops itself on entering
  EXPECT_FALSE(self.has_value());
  EXPECT_EQ(detail::watching(), 0u);
  for (int i = 0; i < 10; ++i) c.run([] {});  // this thread moves on
  EXPECT_TRUE(alive.expired()) << "a watcher stopped from its own callback is never destroyed on this thread "
                                  "(its callback and captures leak until the thread exits)";
  // It goes only with the last thread caching it:
  std::thread([] {}).join();
}


// ---- task<T>: a mirroring value watcher stays in step with each thread's view ----

context_var<int> tv("tv");
thread_local std::optional<int> tmirror;
std::atomic<int> t_seq_bad{0}, t_view_bad{0}, t_calls{0};
void tcheck() {
  const int* p = tv.peek();
  if (tmirror != (p ? std::optional<int>(*p) : std::nullopt)) ++t_view_bad;
}

task<int> t_child(thread_pool& p, int id) {
  tcheck();
  auto tok = tv.set(id * 1000);
  co_await p.schedule();
  tcheck();
  tv.reset(tok);
  tcheck();
  co_return id;
}
task<int> t_root(thread_pool& p, int id) {
  tcheck();
  (void)tv.set(id);
  for (int i = 0; i < 5; ++i) {
    co_await p.schedule();
    tcheck();
    co_await t_child(p, id);
    tcheck();
  }
  co_return id;
}

TEST(WatchAttack, AMirroringValueWatcherStaysInStepWithEveryThreadsViewUnderTasks) {
  watcher w = watch(tv, [](const value_change<int>& c) {
    ++t_calls;
    const std::optional<int> before = c.before ? std::optional<int>(*c.before) : std::nullopt;
    if (before != tmirror) ++t_seq_bad;
    tmirror = c.after ? std::optional<int>(*c.after) : std::nullopt;
  });
  {
    thread_pool pool(3);
    std::vector<spawned<int>> all;
    context shared1 = copy_context(), shared2 = copy_context();
    for (int i = 1; i <= 40; ++i) {
      if (i % 3 == 0)
        all.push_back(spawn(pool, shared1, t_root(pool, i)));
      else if (i % 3 == 1)
        all.push_back(spawn(pool, shared2, t_root(pool, i)));
      else
        all.push_back(spawn(pool, t_root(pool, i)));
    }
    for (auto& s : all) (void)s.get();
  }
  tcheck();
  EXPECT_GT(t_calls.load(), 40 * 5 * 4);
  EXPECT_EQ(t_seq_bad.load(), 0);
  EXPECT_EQ(t_view_bad.load(), 0);
}

// ---- races: unwatch while other threads notify; callbacks use what unwatch frees ----

TEST(WatchAttack, UnwatchRacingNotificationsOnOtherThreadsNeverLetsACallRunAfterItReturns) {
  context_var<int> v("race_v");
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&, t] {
      context c = copy_context();
      while (!stop.load(std::memory_order_relaxed)) {
        c.run([&] {
          auto tok = v.set(t);
          v.reset(tok);
        });
      }
    });
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  int rounds = 0;
  while (rounds <= 10 || std::chrono::steady_clock::now() < until) {  // however loaded the machine
    auto buf = std::make_unique<std::atomic<int>[]>(4);
    std::atomic<int>* raw = buf.get();
    {
      watcher a = watch(v, [raw](const value_change<int>& c) { raw[c.after ? 1 : 0]++; });
      watcher b = on_context_switch([raw, &v](const context_switch& sw) {
        raw[2]++;
        sw.changes([&](const change&) { raw[3]++; });
        if (sw.to_is_thread_base()) (void)sw.from().get(v);
      });
      std::this_thread::yield();
    }  // unwatched: no call may run any more
    buf.reset();
    ++rounds;
  }
  stop = true;
  for (auto& t : ts) t.join();
  EXPECT_GT(rounds, 10);
}


// ---- over-aligned values reported by a switch, and by a switch watcher's changes() ----

struct alignas(256) wide {
  int v = 0;
};
context_var<wide> wv("wv");

TEST(WatchAttack, OverAlignedValuesReportedByASwitchArriveAligned) {
  int misaligned = 0, calls = 0;
  watcher w = watch(wv, [&](const value_change<wide>& c) {
    ++calls;
    for (const wide* p : {c.before, c.after})
      if (p && reinterpret_cast<std::uintptr_t>(p) % alignof(wide) != 0) ++misaligned;
  });
  watcher s = on_context_switch([&](const context_switch& sw) {
    sw.changes([&](const change& c) {
      if (c.after)
        if (const wide* p = c.after->get_if<wide>())
          if (reinterpret_cast<std::uintptr_t>(p) % alignof(wide) != 0) ++misaligned;
    });
  });
  (void)wv.set(wide{1});
  context c = copy_context();
  c.run([] { (void)wv.set(wide{2}); });
  c.run([] {});
  EXPECT_EQ(calls, 5);  // set; in c: set, leave; again: enter, leave (the first entry changes nothing)
  EXPECT_EQ(misaligned, 0);
}

// ---- user code a notification releases, and unwatch() during thread exit ----

struct on_destroy {
  std::function<void()> f;
  ~on_destroy() {
    if (f) f();
  }
};
using hook = std::shared_ptr<on_destroy>;

TEST(WatchAttack, AValueAWatcherKeptAliveLastIsDestroyedOutsideTheNotificationSoItsSetsAreSeen) {
  // Regression (issue 17, §3.1's class): notify_value kept the set's values
  // alive for its callbacks and released them while the thread was still
  // marked as running a callback, so a set made by that value's destructor
  // (user code, not a callback) was never reported.
  context_var<hook> hv("hv");
  context_var<int> other("other");
  std::vector<int> others_seen;
  watcher wo = watch(other, [&](const value_change<int>& c) { others_seen.push_back(c.after ? *c.after : -1); });
  watcher wh = watch(hv, [&](const value_change<hook>& c) {
    if (c.after && *c.after) (void)hv.set(hook());  // displaces the value just set; its token is dropped
  });
  context().run([&] {
    auto h = std::make_shared<on_destroy>();
    h->f = [&] { (void)other.set(42); };
    (void)hv.set(std::move(h));  // after the callback, the watcher's reference is the last
    EXPECT_EQ(other.get(), 42);
  });
  // The destructor's set, then leaving the context (a switch back to none).
  EXPECT_EQ(others_seen, (std::vector<int>{42, -1}));
}

TEST(WatchAttack, UnwatchFromACallbackDuringThreadExitWaitsForOtherThreadsAndDestroysTheCallback) {
  // Regression (issue 17, §3.5): once a thread's watcher cache was destroyed
  // at thread exit, unwatch() from a callback neither waited for the calls
  // running on other threads nor destroyed the callback.
  static thread_local bool exiting = false;
  static thread_local bool slow = false;
  std::atomic<bool> slow_entered{false}, slow_done{false}, stop_slow{false};
  auto sentinel = std::make_shared<int>(1);
  std::weak_ptr<int> alive = sentinel;
  watcher w;
  w = on_context_switch([&, keep = std::move(sentinel)](const context_switch&) {
    if (slow && !stop_slow.load()) {
      slow_entered = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      slow_done = true;
    } else if (exiting) {
      w.unwatch();  // from a callback, during thread exit
    }
  });
  context c = copy_context();
  c.run([] {});  // this thread's cache now holds the watcher list (and so the callback)
  std::thread slow_thread([&] {
    slow = true;
    context mine = copy_context();
    mine.run([] {});  // a call that runs for 200 ms
  });
  while (!slow_entered) std::this_thread::yield();
  std::thread([] {
    // Built before the thread's first notification, so destroyed after its
    // watcher cache: it switches contexts during thread exit.
    struct at_exit {
      ~at_exit() {
        exiting = true;
        context x = copy_context();
        x.run([] {});
      }
    };
    static thread_local at_exit e;
    (void)&e;
    context y = copy_context();
    y.run([] {});
  }).join();
  EXPECT_TRUE(slow_done.load()) << "unwatch() returned while a call ran on another thread";
  stop_slow = true;
  slow_thread.join();
  EXPECT_FALSE(w.active());
  EXPECT_EQ(detail::watching(), 0u);
  EXPECT_TRUE(alive.expired()) << "the callback of a watcher stopped during thread exit was never destroyed";
}

}  // namespace
