#include "ctxvars/generator.hpp"

#include <gtest/gtest.h>

#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "counted.hpp"
#include "ctxvars/ctxvars.hpp"
#include "ctxvars/task.hpp"

using namespace ctxvars;
using ctxvars_test::counted;

namespace {

static_assert(std::ranges::input_range<generator<int>>);
static_assert(std::ranges::view<generator<int>>);
static_assert(std::input_iterator<generator<int>::iterator>);
static_assert(std::is_same_v<std::iter_reference_t<generator<int>::iterator>, int&&>);
static_assert(std::is_same_v<std::iter_reference_t<generator<const std::string&>::iterator>, const std::string&>);
static_assert(!std::is_copy_constructible_v<generator<int>>);

context_var<int> a("a", -1);
context_var<int> b("b", -1);
context_var<std::string> s("s");

// Each value the body saw, as it saw it.
generator<int> read_a_forever() {
  for (;;) co_yield a.get();
}

TEST(Generator, BodyDoesNotStartBeforeBegin) {
  int runs = 0;
  auto g = [](int& r) -> generator<int> {
    ++r;
    co_yield 1;
  }(runs);
  EXPECT_EQ(runs, 0);
  auto it = g.begin();
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(*it, 1);
}

TEST(Generator, YieldsEveryValueThenEnds) {
  auto g = [](int n) -> generator<int> {
    for (int i = 0; i < n; ++i) co_yield i;
  }(4);
  std::vector<int> got;
  for (int v : g) got.push_back(v);
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3}));
}

TEST(Generator, BodySeesTheConsumersCurrentValueAtEachResume) {
  context().run([] {
    a.set(1);
    auto g = read_a_forever();
    auto it = g.begin();
    EXPECT_EQ(*it, 1);
    a.set(2);
    ++it;
    EXPECT_EQ(*it, 2);
    ++it;  // unchanged: the cached lookup stays right
    EXPECT_EQ(*it, 2);
    auto t = a.set(3);
    ++it;
    EXPECT_EQ(*it, 3);
    a.reset(t);
    ++it;
    EXPECT_EQ(*it, 2);
  });
}

generator<int> set_a_then_read(int v) {
  a.set(v);
  for (;;) co_yield a.get();
}

TEST(Generator, OwnSetsPersistAcrossSuspensionsAndMaskTheConsumersChanges) {
  context().run([] {
    a.set(1);
    auto g = set_a_then_read(10);
    auto it = g.begin();
    EXPECT_EQ(*it, 10);
    a.set(2);
    ++it;
    EXPECT_EQ(*it, 10);
    EXPECT_EQ(a.get(), 2);
  });
}

generator<std::pair<int, int>> set_a_read_both() {
  a.set(100);
  for (;;) co_yield {a.get(), b.get()};
}

TEST(Generator, OwnSetsNeverReachTheConsumer) {
  context().run([] {
    b.set(1);
    auto g = set_a_read_both();
    auto it = g.begin();
    EXPECT_EQ(*it, (std::pair{100, 1}));
    EXPECT_EQ(a.get(), -1);
    EXPECT_FALSE(copy_context().contains(a));
    b.set(2);
    ++it;
    EXPECT_EQ(*it, (std::pair{100, 2}));
    EXPECT_EQ(a.get(), -1);
  });
  // And a consumer with no context of its own yet (the thread's base).
  std::thread([] {
    auto g = set_a_read_both();
    EXPECT_EQ(*g.begin(), (std::pair{100, -1}));
    EXPECT_EQ(a.get(), -1);
    EXPECT_TRUE(copy_context().empty());
  }).join();
}

generator<token<int>*> hand_out_token(bool& reset_ok) {
  token<int> t = a.set(7);
  co_yield &t;
  a.reset(t);  // still the body's to use
  reset_ok = true;
  co_yield &t;
}

TEST(Generator, ItsTokensAreForeignToTheConsumer) {
  context().run([] {
    a.set(1);
    bool reset_ok = false;
    auto g = hand_out_token(reset_ok);
    auto it = g.begin();
    token<int>& t = **it;
    EXPECT_THROW(a.reset(t), foreign_token_error);
    EXPECT_FALSE(t.used());
    EXPECT_EQ(a.get(), 1);  // nothing changed
    ++it;
    EXPECT_TRUE(reset_ok);
    EXPECT_TRUE(t.used());
  });
}

generator<int> reset_foreign(token<int>& t) {
  bool foreign = false;
  try {
    a.reset(t);
  } catch (const foreign_token_error&) {
    foreign = true;
  }
  co_yield foreign ? 1 : 0;
}

TEST(Generator, TheConsumersTokensAreForeignToIt) {
  context().run([] {
    auto t = a.set(1);
    auto g = reset_foreign(t);
    EXPECT_EQ(*g.begin(), 1);
    EXPECT_FALSE(t.used());
    EXPECT_EQ(a.get(), 1);
  });
}

// set, yield, reset, yield what is visible.
generator<int> set_yield_reset(int v) {
  token<int> t = a.set(v);
  co_yield a.get();
  a.reset(t);
  co_yield a.get();
  // set and reset within one resume
  token<int> u = a.set(v + 1);
  a.reset(u);
  co_yield a.get();
}

TEST(Generator, ResettingItsOwnTokenShowsTheConsumersCurrentValueNotAStaleOne) {
  context().run([] {
    a.set(1);
    auto g = set_yield_reset(50);
    auto it = g.begin();
    EXPECT_EQ(*it, 50);
    a.set(2);  // the token's old value (1) is stale now
    ++it;
    EXPECT_EQ(*it, 2);
    a.set(3);
    ++it;
    EXPECT_EQ(*it, 3);
    // and, after the reset, the consumer's later changes show again
    EXPECT_EQ(g.promise()->layer().own_count(), 0u);
  });
}

TEST(Generator, ResetToNoValueShowsAValueTheConsumerSetSince) {
  context().run([] {
    auto g = set_yield_reset(50);  // `a` has no value in the consumer yet
    auto it = g.begin();
    EXPECT_EQ(*it, 50);
    a.set(4);
    ++it;
    EXPECT_EQ(*it, 4);
  });
}

generator<int> two_sets_reset_in_order() {
  token<int> t1 = a.set(10);
  token<int> t2 = a.set(20);
  co_yield a.get();
  a.reset(t2);
  co_yield a.get();  // the body's own first value
  a.reset(t1);
  co_yield a.get();  // the consumer's
}

TEST(Generator, ResettingALaterTokenRestoresItsOwnEarlierValue) {
  context().run([] {
    a.set(1);
    auto g = two_sets_reset_in_order();
    auto it = g.begin();
    EXPECT_EQ(*it, 20);
    a.set(2);
    ++it;
    EXPECT_EQ(*it, 10);
    a.set(3);
    ++it;
    EXPECT_EQ(*it, 3);
  });
}

generator<std::optional<int>> token_old_values() {
  token<int> t = a.set(10);
  co_yield t.old_value();
  token<int> u = a.set(20);
  co_yield u.old_value();
}

TEST(Generator, ATokenOfTheBodySaysWhatTheBodySawBeforeItsSet) {
  context().run([] {
    a.set(1);
    auto g = token_old_values();
    auto it = g.begin();
    EXPECT_EQ(*it, 1);
    ++it;
    EXPECT_EQ(*it, 10);
  });
}

generator<int> scoped_across_yields() {
  {
    auto guard = a.scoped_set(9);
    co_yield a.get();
    co_yield a.get();
  }
  co_yield a.get();
}

TEST(Generator, AScopedSetHeldAcrossYieldsUndoesIntoTheConsumersCurrentValue) {
  context().run([] {
    a.set(1);
    auto g = scoped_across_yields();
    auto it = g.begin();
    EXPECT_EQ(*it, 9);
    a.set(2);
    ++it;
    EXPECT_EQ(*it, 9);
    a.set(3);
    ++it;
    EXPECT_EQ(*it, 3);
    EXPECT_EQ(a.get(), 3);
  });
}

// Records what a cleanup saw.
struct cleanup_probe {
  std::vector<std::pair<int, int>>* seen;
  ~cleanup_probe() {
    seen->push_back({a.get(), b.get()});
    b.set(-50);       // a set during cleanup: stays in the layer
    (void)s.set("from cleanup");
  }
};

generator<int> with_cleanup(std::vector<std::pair<int, int>>& seen) {
  cleanup_probe probe{&seen};  // destroyed after the guard below
  auto guard = a.scoped_set(77);
  b.set(88);
  for (;;) co_yield a.get();
}

TEST(Generator, DestroyingASuspendedGeneratorRunsItsCleanupInItsLayerOverTheConsumersCurrentContext) {
  context().run([] {
    std::vector<std::pair<int, int>> seen;
    a.set(1);
    b.set(2);
    {
      auto g = with_cleanup(seen);
      EXPECT_EQ(*g.begin(), 77);
      a.set(5);  // what the cleanup must see once the guard is undone
    }
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].first, 5);  // the guard reset into the consumer's current value
    EXPECT_EQ(seen[0].second, 88);  // the body's own set
    EXPECT_EQ(a.get(), 5);
    EXPECT_EQ(b.get(), 2);
    EXPECT_FALSE(s.try_get());
  });
}

TEST(Generator, DestroyingItOnAnotherThreadLayersTheCleanupOverThatThreadsContext) {
  std::vector<std::pair<int, int>> seen;
  std::optional<generator<int>> g;
  context().run([&] {
    a.set(1);
    g.emplace(with_cleanup(seen));
    EXPECT_EQ(*g->begin(), 77);
  });
  std::thread([&] {
    context().run([&] {
      a.set(6);
      b.set(7);
      g.reset();
      EXPECT_EQ(b.get(), 7);
      EXPECT_FALSE(s.try_get());
    });
  }).join();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (std::pair{6, 88}));
}

TEST(Generator, AGeneratorThatNeverStartedRunsNoCleanupInALayer) {
  std::vector<std::pair<int, int>> seen;
  {
    auto g = with_cleanup(seen);  // the body's locals were never built
  }
  EXPECT_TRUE(seen.empty());
}

TEST(Generator, LeavingARangeForLoopEarlyRunsTheCleanup) {
  context().run([] {
    std::vector<std::pair<int, int>> seen;
    a.set(3);
    std::vector<int> got;
    for (int v : with_cleanup(seen)) {
      got.push_back(v);
      if (got.size() == 2) break;
    }
    EXPECT_EQ(got, (std::vector<int>{77, 77}));
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0], (std::pair{3, 88}));
    EXPECT_EQ(b.get(), -1);
  });
}

// clang 14 cannot compile libstdc++ 12's range adaptors (any of them).
#if !defined(__clang__) || __clang_major__ >= 15
TEST(Generator, StoppingEarlyThroughARangeAdaptorRunsTheCleanup) {
  context().run([] {
    std::vector<std::pair<int, int>> seen;
    a.set(3);
    std::vector<int> got;
    for (int v : with_cleanup(seen) | std::views::take(2)) got.push_back(v);
    EXPECT_EQ(got, (std::vector<int>{77, 77}));
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0], (std::pair{3, 88}));
    EXPECT_EQ(b.get(), -1);
  });
}
#endif

generator<int> set_then_throw(bool before_first_yield) {
  a.set(500);
  b.set(600);
  if (before_first_yield) throw std::runtime_error("early");
  co_yield 1;
  a.set(501);
  throw std::runtime_error("late");
}

TEST(Generator, AnExceptionThrownOutOfItLeavesTheConsumersContextAsItWas) {
  context().run([] {
    a.set(1);
    auto before = copy_context();
    {
      auto g = set_then_throw(true);
      EXPECT_THROW((void)g.begin(), std::runtime_error);
      EXPECT_TRUE(g.begin() == g.end());
    }
    EXPECT_EQ(a.get(), 1);
    EXPECT_EQ(b.get(), -1);
    {
      auto g = set_then_throw(false);
      auto it = g.begin();
      EXPECT_EQ(*it, 1);
      EXPECT_THROW(++it, std::runtime_error);
      EXPECT_TRUE(it == g.end());
    }
    EXPECT_EQ(a.get(), 1);
    EXPECT_EQ(b.get(), -1);
    EXPECT_EQ(copy_context().size(), before.size());
  });
}

// Nesting: level n sets its own variable to n, reads every level's variable.
context_var<int> level1("level1", 0), level2("level2", 0), level3("level3", 0);

generator<std::vector<int>> innermost() {
  level3.set(3);
  for (;;) {
    // (not a braced list in the co_yield: g++ 12 rejects an initializer_list in a coroutine frame)
    std::vector<int> v;
    for (const context_var<int>* var : {&a, &level1, &level2, &level3}) v.push_back(var->get());
    co_yield std::move(v);
  }
}
generator<std::vector<int>> middle() {
  level2.set(2);
  auto inner = innermost();
  auto it = inner.begin();
  for (;;) {
    std::vector<int> v = *it;
    v.push_back(level3.get());  // never the inner's
    co_yield std::move(v);
    a.set(a.get() + 1000);  // the inner sees this, the outer does not
    ++it;
  }
}
generator<std::vector<int>> outer() {
  level1.set(1);
  auto mid = middle();
  auto it = mid.begin();
  for (;;) {
    std::vector<int> v = *it;
    v.push_back(level2.get());
    co_yield std::move(v);
    ++it;
  }
}

TEST(Generator, NestedThreeDeepEachLevelLayersOverTheOneThatIteratesIt) {
  context().run([] {
    a.set(1);
    auto g = outer();
    auto it = g.begin();
    // inner sees: a, level1 (outer's), level2 (middle's), level3 (own)
    EXPECT_EQ(*it, (std::vector<int>{1, 1, 2, 3, 0, 0}));
    a.set(2);
    ++it;
    // the middle set a from the consumer's current 2: the inner sees that
    EXPECT_EQ(*it, (std::vector<int>{1002, 1, 2, 3, 0, 0}));
    EXPECT_EQ(a.get(), 2);
    EXPECT_EQ(level1.get(), 0);
    EXPECT_EQ(level2.get(), 0);
    EXPECT_EQ(level3.get(), 0);
  });
}

generator<int> reads_level_vars() {
  for (;;) co_yield level1.get() * 100 + level2.get() * 10 + level3.get();
}
generator<int> passes_through(context_var<int>& v, int value, generator<int> inner) {
  v.set(value);
  for (int x : inner) co_yield x;
}

TEST(Generator, NestedThreeDeepTheInnermostSeesTheConsumersChangesThroughEveryLayer) {
  context().run([] {
    auto g = passes_through(level1, 1, passes_through(level2, 2, reads_level_vars()));
    level3.set(5);
    auto it = g.begin();
    EXPECT_EQ(*it, 125);
    level3.set(6);
    ++it;
    EXPECT_EQ(*it, 126);
    level1.set(9);  // masked by the outer's own set
    ++it;
    EXPECT_EQ(*it, 126);
  });
}

generator<int> set_b_read_a() {
  b.set(42);
  for (;;) co_yield a.get() * 1000 + b.get();
}

TEST(Generator, AConsumerMayPullInsideOtherContextsBetweenPulls) {
  std::thread([] {  // a fresh thread: its base context is written below
    context c1, c2;
    c1.run([] { a.set(1); });
    c2.run([] { a.set(2); });
    a.set(0);
    auto g = set_b_read_a();
    auto it = g.begin();
    EXPECT_EQ(*it, 42);
    c1.run([&] { ++it; });
    EXPECT_EQ(*it, 1042);
    c2.run([&] {
      ++it;
      EXPECT_EQ(b.get(), -1);
    });
    EXPECT_EQ(*it, 2042);
    ++it;
    EXPECT_EQ(*it, 42);
    EXPECT_FALSE(c1.contains(b));
    EXPECT_FALSE(c2.contains(b));
    EXPECT_EQ(b.get(), -1);
    context c3;
    c3.run([&] { ++it; });  // an empty context: a shows its default
    EXPECT_EQ(*it, -1000 + 42);
    g = generator<int>(set_b_read_a());  // move-assignment destroys the old one
    EXPECT_EQ(*g.begin(), 42);
    EXPECT_EQ(b.get(), -1);
  }).join();
}

TEST(Generator, MovedBetweenThreadsEachResumeLayersOverTheResumingThreadsContext) {
  std::optional<generator<int>> g;
  generator<int>::iterator it;
  std::thread([&] {
    a.set(1);
    g.emplace(set_b_read_a());
    it = g->begin();
    EXPECT_EQ(*it, 1042);
    EXPECT_EQ(b.get(), -1);
  }).join();
  std::thread([&] {
    context().run([&] {
      a.set(2);
      ++it;
      EXPECT_EQ(*it, 2042);
      EXPECT_EQ(b.get(), -1);
    });
  }).join();
  std::thread([&] {
    ++it;  // a thread with no context yet
    EXPECT_EQ(*it, -1000 + 42);
    EXPECT_TRUE(copy_context().empty());
    g.reset();
  }).join();
}

generator<context> copies_its_context() {
  b.set(3);
  co_yield copy_context();
}

TEST(Generator, CopyContextInsideTheBodySeesTheLayeredView) {
  context().run([] {
    a.set(1);
    auto g = copies_its_context();
    context c = *g.begin();
    EXPECT_EQ(c.get(a), 1);
    EXPECT_EQ(c.get(b), 3);
    EXPECT_EQ(c.size(), 2u);
  });
}

generator<int> runs_another_context(context c) {
  b.set(1);
  c.run([] {
    b.set(2);
    a.set(2);
  });
  co_yield b.get();
  co_yield c.run([] { return b.get(); });
}

TEST(Generator, ContextRunInsideTheBodyWritesThatContextOnly) {
  context().run([] {
    a.set(9);
    context c;
    auto g = runs_another_context(c);
    auto it = g.begin();
    EXPECT_EQ(*it, 1);
    ++it;
    EXPECT_EQ(*it, 2);
    EXPECT_EQ(c.get(b), 2);
    EXPECT_EQ(a.get(), 9);
    EXPECT_EQ(b.get(), -1);
  });
}

task<int> read_b_in_task() { co_return b.get(); }

generator<int> awaits_a_task_synchronously() {
  b.set(5);
  co_yield sync_wait(read_b_in_task());
}

TEST(Generator, TasksStartedInsideTheBodyCopyTheLayeredView) {
  auto g = awaits_a_task_synchronously();
  EXPECT_EQ(*g.begin(), 5);
  EXPECT_EQ(b.get(), -1);
}

// Resumes the awaiting coroutine on a new thread (touching nothing of the
// awaiter once the thread runs: the frame may be gone), joined by join_hops().
std::mutex hops_m;
std::vector<std::thread> hops;
struct hop_to_thread {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    std::lock_guard lk(hops_m);
    hops.emplace_back([h] { h.resume(); });
  }
  void await_resume() const noexcept {}
};
// Joins until none is left (a hop thread starts the next hop's thread).
void join_hops() {
  for (;;) {
    std::thread t;
    {
      std::lock_guard lk(hops_m);
      if (hops.empty()) return;
      t = std::move(hops.front());
      hops.erase(hops.begin());
    }
    t.join();
  }
}

task<std::vector<int>> pulls_across_threads() {
  std::vector<int> got;
  a.set(1);
  auto g = set_b_read_a();
  auto it = g.begin();
  got.push_back(*it);
  co_await hop_to_thread{};  // the task's context follows it; the generator's layer too
  a.set(2);
  ++it;
  got.push_back(*it);
  co_await hop_to_thread{};
  ++it;
  got.push_back(*it);
  got.push_back(b.get());
  co_return got;
}

TEST(Generator, ATaskConsumerMayPullOnEveryThreadItRunsOn) {
  auto got = sync_wait(pulls_across_threads());
  join_hops();
  EXPECT_EQ(got, (std::vector<int>{1042, 2042, 2042, -1}));
}

generator<std::unique_ptr<int>> move_only_values(int n) {
  for (int i = 0; i < n; ++i) co_yield std::make_unique<int>(i);
  auto last = std::make_unique<int>(n);
  co_yield std::move(last);
}

TEST(Generator, MoveOnlyValuesAreMovedOut) {
  std::vector<int> got;
  for (auto&& p : move_only_values(2)) {
    std::unique_ptr<int> mine = std::move(p);
    got.push_back(*mine);
  }
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
}

struct alignas(64) over_aligned {
  int v;
};
context_var<over_aligned> oa("oa", over_aligned{-1});

generator<over_aligned> over_aligned_values() {
  over_aligned local{1};
  co_yield local;  // a copy, in the frame
  oa.set(over_aligned{2});
  co_yield over_aligned{oa.get().v};
}

TEST(Generator, OverAlignedValuesAndFramesAreAligned) {
  std::vector<int> got;
  for (auto&& v : over_aligned_values()) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&v) % alignof(over_aligned), 0u);
    got.push_back(v.v);
  }
  EXPECT_EQ(got, (std::vector<int>{1, 2}));
  EXPECT_EQ(oa.get().v, -1);
}

struct throws_on_copy {
  int v = 0;
  explicit throws_on_copy(int x) : v(x) {}
  throws_on_copy(const throws_on_copy& o) : v(o.v) {
    if (v < 0) throw std::runtime_error("copy");
  }
};

generator<throws_on_copy> copies_that_throw() {
  a.set(11);
  throws_on_copy ok(1), bad(-1);
  co_yield ok;
  co_yield bad;  // the copy throws inside the body
  co_yield ok;
}

TEST(Generator, AThrowingCopyOfAYieldedLvalueReachesTheConsumerWithItsContextIntact) {
  context().run([] {
    a.set(1);
    auto g = copies_that_throw();
    auto it = g.begin();
    EXPECT_EQ((*it).v, 1);
    EXPECT_THROW(++it, std::runtime_error);
    EXPECT_TRUE(it == g.end());
    EXPECT_EQ(a.get(), 1);
  });
}

generator<const std::string&> references(const std::vector<std::string>& v) {
  for (const std::string& x : v) co_yield x;
}

TEST(Generator, AReferenceGeneratorYieldsTheObjectsThemselves) {
  std::vector<std::string> v{"x", "y"};
  std::vector<const std::string*> addresses;
  for (const std::string& x : references(v)) addresses.push_back(&x);
  EXPECT_EQ(addresses, (std::vector<const std::string*>{&v[0], &v[1]}));
}

TEST(Generator, BeginTwiceReturnsTheCurrentPositionWithoutResuming) {
  int runs = 0;
  auto g = [](int& r) -> generator<int> {
    for (int i = 0;; ++i) {
      ++r;
      co_yield i;
    }
  }(runs);
  auto it = g.begin();
  ++it;
  auto again = g.begin();
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(*again, 1);
  ++again;  // copies share the position
  EXPECT_EQ(*it, 2);
}

TEST(Generator, AMovedFromGeneratorIsAnEmptyRange) {
  auto g = read_a_forever();
  auto h = std::move(g);
  EXPECT_TRUE(g.begin() == g.end());  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_EQ(*h.begin(), -1);
}

context_var<counted> cv("counted");

generator<int> sets_counted() {
  cv.set(counted(1));
  auto t = cv.set(counted(2));
  co_yield 0;
  cv.reset(t);
  co_yield 1;
}

TEST(Generator, ValuesTheBodySetDieWithTheGenerator) {
  const long before = counted::alive;
  context().run([] {
    cv.set(counted(0));
    {
      auto g = sets_counted();
      auto it = g.begin();
      ++it;
      cv.set(counted(5));  // the consumer drops its first value while the body runs on
      ++it;
      EXPECT_TRUE(it == g.end());
    }
    EXPECT_EQ(cv.get().v, 5);
  });
  EXPECT_EQ(counted::alive, before);
}

generator<int> set_reset_each_pull() {
  for (;;) {
    auto t = a.set(a.get() + 1);
    co_yield a.get();
    a.reset(t);
  }
}

TEST(Generator, TheBoxesItKeepsForItsTokensDoNotAccumulate) {
  context().run([] {
    auto g = set_reset_each_pull();
    auto it = g.begin();
    for (int i = 0; i < 1000; ++i) {
      a.set(i * 10);  // a new consumer value each time
      ++it;
      EXPECT_EQ(*it, i * 10 + 1);
    }
    // Bounded, not 1000: a consumer value stays alive (so its box stays
    // listed) only while its write log keeps it, at most until the log folds.
    EXPECT_LE(g.promise()->layer().inherited_count(), 8u);
    EXPECT_EQ(g.promise()->layer().own_count(), 1u);
  });
}

generator<int> many_own_vars(std::vector<std::unique_ptr<context_var<int>>>& vars) {
  for (std::size_t i = 0; i < vars.size(); ++i) vars[i]->set(static_cast<int>(i));
  for (;;) {
    int sum = 0;
    for (auto& v : vars) sum += v->get();
    co_yield sum + a.get();
  }
}

TEST(Generator, ALayerWithManyOwnVariablesIsRebuiltCorrectly) {
  std::vector<std::unique_ptr<context_var<int>>> vars;
  for (int i = 0; i < 40; ++i) vars.push_back(std::make_unique<context_var<int>>("v" + std::to_string(i), -100));
  context().run([&] {
    auto g = many_own_vars(vars);
    auto it = g.begin();
    EXPECT_EQ(*it, 780 - 1);
    for (int i = 0; i < 20; ++i) {
      a.set(i);
      for (auto& v : vars) v->set(1000);  // masked by the body's own values
      ++it;
      EXPECT_EQ(*it, 780 + i);
    }
    EXPECT_EQ(vars[0]->get(), 1000);
  });
}

generator<int> reads_s() {
  for (;;) co_yield static_cast<int>(s.get("none").size());
}

TEST(Generator, AVariableDestroyedWhileTheGeneratorHoldsItsValueIsSafe) {
  auto v = std::make_unique<context_var<int>>("short-lived", 0);
  std::optional<generator<int>> g;
  context().run([&] {
    auto gen = [](context_var<int>& var) -> generator<int> {
      var.set(1);
      for (;;) co_yield 0;
    }(*v);
    (void)gen.begin();
    g.emplace(std::move(gen));
  });
  v.reset();
  g.reset();
  auto r = reads_s();
  EXPECT_EQ(*r.begin(), 4);
}

}  // namespace
