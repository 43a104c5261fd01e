// Issue 20 §1, the Asio variant: ctxvars::asio::async_generator<T> (and
// boost_asio's), a producer whose body is an Asio coroutine awaiting real
// operations, runs in its own context layer over its consumer's current
// context. Every rule of the generator table (docs/beyond-python.md), plus
// early stop, cancellation, exceptions, nesting, a body on another
// executor/strand, and no leak into any thread afterwards. Compiled for both
// Asios (asio_generator_test, boost_asio_generator_test; see asio_test_net.hpp).
#include "asio_test_channel.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using net::awaitable;
using net::use_awaitable;

namespace {

using net_channel::as_tuple;

ctxvars::context_var<std::string> user("user", "nobody");
ctxvars::context_var<int> stage("stage", 0);
ctxvars::context_var<int> probe("probe", -1);  // written by every step: must never leak

// Pulls g's next value and checks it (a co_await cannot sit inside EXPECT_EQ). Awaited
// directly, so it runs in the consumer's context like the pull it replaces.
template <class G, class T>
awaitable<void> expect_next(G& g, T want) {
  auto got = co_await g.next();
  EXPECT_EQ(got, want);
}

template <class T>
using gen = cx::async_generator<T>;
template <class T>
using yield_to = cx::generator_yield<T>;

// A record of what a body saw, written from whatever thread it ran on.
struct seen {
  std::mutex m;
  std::vector<std::string> users;
  std::vector<int> stages;
  std::vector<std::string> notes;
  void note(std::string s) {
    std::lock_guard<std::mutex> l(m);
    notes.push_back(std::move(s));
  }
  void look() {
    std::lock_guard<std::mutex> l(m);
    users.push_back(user.get());
    stages.push_back(stage.get());
  }
};

// Runs `n` jobs on `ex` that rendezvous (so each of the n threads runs one)
// and each reads the variables outside any task: the thread's own context.
template <class Ex>
int leaked_values_on(const Ex& ex, int n) {
  std::atomic<int> arrived{0}, leaked{0}, finished{0};
  for (int i = 0; i < n; ++i) {
    net::post(ex, [&] {
      ++arrived;
      const auto until = std::chrono::steady_clock::now() + 2s;
      while (arrived.load() < n && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      if (probe.get() != -1 || user.get() != "nobody" || stage.get() != 0) ++leaked;
      ++finished;
    });
  }
  while (finished.load() < n) std::this_thread::yield();
  return leaked.load();
}

awaitable<void> nap(std::chrono::milliseconds d) {
  net::steady_timer t(co_await net::this_coro::executor, d);
  co_await t.async_wait(use_awaitable);
}

// The io_context of the consumer (run by the test's thread), a pool(2), a
// second io_context run by a thread of its own.
struct AsioGenerator : ::testing::Test {
  net::io_context io;
  net::thread_pool pool{2};
  net::io_context other;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> other_work{other.get_executor()};
  std::thread other_thread{[this] { other.run(); }};

  ~AsioGenerator() override {
    other_work.reset();
    other_thread.join();
    pool.join();
  }

  // Runs `consumer` as a task on io (this thread) until io runs out of work;
  // then checks that no thread kept a value.
  void run_consumer(awaitable<void> consumer) {
    std::exception_ptr error;
    bool done = false;
    cx::co_spawn(io, std::move(consumer), [&](std::exception_ptr e) {
      error = e;
      done = true;
    });
    io.run();
    EXPECT_TRUE(done);
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& x) {
        ADD_FAILURE() << "the consumer threw: " << x.what();
      }
    }
    expect_no_leak();
  }
  void expect_no_leak() {
    EXPECT_EQ(probe.get(), -1) << "the io thread's own context";
    EXPECT_EQ(user.get(), "nobody");
    EXPECT_EQ(stage.get(), 0);
    EXPECT_EQ(leaked_values_on(pool.get_executor(), 2), 0) << "a pool thread kept a value";
    EXPECT_EQ(leaked_values_on(other.get_executor(), 1), 0) << "the other io_context's thread kept a value";
  }
};

// ---- lazy --------------------------------------------------------------------------

awaitable<void> count_to(yield_to<int> out, int n, std::atomic<int>* started) {
  ++*started;
  for (int i = 0; i < n; ++i) {
    (void)probe.set(i);
    co_await nap(1ms);
    co_await out.yield(i);
  }
}

TEST_F(AsioGenerator, TheBodyDoesNotStartBeforeTheFirstPull) {
  std::atomic<int> started{0};
  auto consumer = [](AsioGenerator* t, std::atomic<int>* st) -> awaitable<void> {
    gen<int> g(t->io, [st](yield_to<int> out) { return count_to(std::move(out), 3, st); });
    co_await nap(2ms);
    EXPECT_EQ(st->load(), 0) << "the body ran before the first pull";
    std::vector<int> got;
    while (std::optional<int> v = co_await g.next()) got.push_back(*v);
    EXPECT_EQ(st->load(), 1);
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
    {
      auto got_ = co_await g.next();
      EXPECT_EQ(got_, std::nullopt) << "a finished generator keeps saying so";
    }
  };
  run_consumer(consumer(this, &started));
}

TEST_F(AsioGenerator, AGeneratorNeverPulledRunsNothing) {
  std::atomic<int> started{0};
  auto consumer = [](AsioGenerator* t, std::atomic<int>* st) -> awaitable<void> {
    { gen<int> g(t->other, [st](yield_to<int> out) { return count_to(std::move(out), 3, st); }); }
    co_await nap(2ms);
  };
  run_consumer(consumer(this, &started));
  EXPECT_EQ(started.load(), 0);
}

// ---- the consumer's current values, its own sets -----------------------------------

awaitable<void> watcher(yield_to<int> out, seen* s, bool set_stage) {
  if (set_stage) (void)stage.set(7);
  for (int i = 0; i < 3; ++i) {
    s->look();
    (void)probe.set(100 + i);
    co_await nap(1ms);  // a real operation: the body resumes from the timer
    s->look();
    co_await out.yield(i);
  }
}

TEST_F(AsioGenerator, TheBodySeesTheConsumersCurrentValuesAtEachPull) {
  seen s;
  auto consumer = [](AsioGenerator* t, seen* sn) -> awaitable<void> {
    (void)user.set("a");
    gen<int> g(t->io, [sn](yield_to<int> out) { return watcher(std::move(out), sn, false); });
    co_await expect_next(g, 0);
    (void)user.set("b");  // between two pulls
    (void)stage.set(2);
    co_await expect_next(g, 1);
    (void)user.set("c");
    (void)stage.set(3);
    co_await expect_next(g, 2);
    co_await expect_next(g, std::nullopt);
    EXPECT_EQ(probe.get(), -1) << "the body'sn set reached the consumer";
  };
  run_consumer(consumer(this, &s));
  EXPECT_EQ(s.users, (std::vector<std::string>{"a", "a", "b", "b", "c", "c"}));
  EXPECT_EQ(s.stages, (std::vector<int>{0, 0, 2, 2, 3, 3}));
}

TEST_F(AsioGenerator, ItsOwnSetsPersistAcrossSuspensionsMaskTheConsumersChangesAndNeverReachIt) {
  seen s;
  auto consumer = [](AsioGenerator* t, seen* sn) -> awaitable<void> {
    gen<int> g(t->io, [sn](yield_to<int> out) { return watcher(std::move(out), sn, true); });
    (void)stage.set(1);
    while (std::optional<int> v = co_await g.next()) {
      EXPECT_EQ(stage.get(), 1) << "the body'sn stage reached the consumer";
      EXPECT_EQ(probe.get(), -1);
      (void)stage.set(stage.get());  // the consumer writes the variable the body set
    }
    EXPECT_EQ(stage.get(), 1);
  };
  run_consumer(consumer(this, &s));
  EXPECT_EQ(s.stages, (std::vector<int>{7, 7, 7, 7, 7, 7}));
}

// ---- tokens ---------------------------------------------------------------------------

struct token_box {
  std::optional<ctxvars::token<std::string>> body_token;  // made in the body
  ctxvars::token<std::string>* consumer_token = nullptr;  // made by the consumer
  std::string body_reset_error;
  std::string after_reset;
};

awaitable<void> token_body(yield_to<int> out, token_box* b) {
  b->body_token.emplace(user.set("inner"));
  co_await out.yield(1);  // the consumer tries the body's token
  try {
    user.reset(*b->consumer_token);
  } catch (const ctxvars::foreign_token_error&) {
    b->body_reset_error = "foreign";
  }
  co_await nap(1ms);
  co_await out.yield(2);  // the consumer changes user meanwhile
  user.reset(*b->body_token);  // the body's own token: the consumer's CURRENT value shows again
  b->after_reset = user.get();
  co_await out.yield(3);
}

TEST_F(AsioGenerator, ItsTokensAreForeignToTheConsumerAndTheConsumersToIt) {
  token_box b;
  auto consumer = [](AsioGenerator* t, token_box* tb) -> awaitable<void> {
    auto mine = user.set("outer");
    tb->consumer_token = &mine;
    gen<int> g(t->io, [tb](yield_to<int> out) { return token_body(std::move(out), tb); });
    co_await expect_next(g, 1);
    EXPECT_THROW(user.reset(*tb->body_token), ctxvars::foreign_token_error);
    EXPECT_EQ(user.get(), "outer");
    co_await expect_next(g, 2);
    (void)user.set("newer");
    co_await expect_next(g, 3);
    EXPECT_EQ(user.get(), "newer");
    EXPECT_FALSE(mine.used());
  };
  run_consumer(consumer(this, &b));
  EXPECT_EQ(b.body_reset_error, "foreign");
  EXPECT_EQ(b.after_reset, "newer") << "resetting its own token shows the consumer's current value, not a stale one";
}

awaitable<void> guard_body(yield_to<int> out, seen* s) {
  {
    auto g = user.scoped_set("guarded");
    co_await out.yield(1);
    s->look();
    co_await nap(1ms);
    co_await out.yield(2);
  }
  s->look();  // the guard undid into the consumer's current value
  co_await out.yield(3);
}

TEST_F(AsioGenerator, AScopedSetHeldAcrossYieldsUndoesIntoTheConsumersCurrentValue) {
  seen s;
  auto consumer = [](AsioGenerator* t, seen* sn) -> awaitable<void> {
    (void)user.set("first");
    gen<int> g(t->io, [sn](yield_to<int> out) { return guard_body(std::move(out), sn); });
    co_await expect_next(g, 1);
    (void)user.set("second");
    co_await expect_next(g, 2);
    (void)user.set("third");
    co_await expect_next(g, 3);
    EXPECT_EQ(user.get(), "third");
  };
  run_consumer(consumer(this, &s));
  EXPECT_EQ(s.users, (std::vector<std::string>{"guarded", "third"}));
}

// ---- early stop ---------------------------------------------------------------------

struct cleanup_record {
  std::atomic<bool> ran{false};
  std::string user_seen;
  int stage_seen = -1;
  bool consumer_context_intact = false;
};

struct on_exit {
  cleanup_record* r;
  ~on_exit() {
    r->user_seen = user.get();
    r->stage_seen = stage.get();
    (void)probe.set(999);  // a cleanup's set: must reach no one
    r->ran = true;
  }
};

awaitable<void> endless(yield_to<int> out, cleanup_record* r) {
  auto g = stage.scoped_set(5);
  on_exit e{r};  // destroyed first: the guard still holds
  for (int i = 0;; ++i) {
    co_await nap(1ms);
    co_await out.yield(i);
  }
}

TEST_F(AsioGenerator, AConsumerThatStopsEarlyRunsTheBodysCleanupInItsLayerOverItsContextOfThatMoment) {
  cleanup_record r;
  auto consumer = [](AsioGenerator* t, cleanup_record* rec) -> awaitable<void> {
    (void)user.set("pulling");
    (void)stage.set(1);
    {
      gen<int> g(t->io, [rec](yield_to<int> out) { return endless(std::move(out), rec); });
      co_await expect_next(g, 0);
      co_await expect_next(g, 1);
      (void)user.set("stopping");  // the context of the moment it stops
    }
    while (!rec->ran) co_await nap(1ms);
    EXPECT_EQ(user.get(), "stopping");
    EXPECT_EQ(stage.get(), 1);
    EXPECT_EQ(probe.get(), -1) << "the cleanup's set reached the consumer";
  };
  run_consumer(consumer(this, &r));
  EXPECT_TRUE(r.ran);
  EXPECT_EQ(r.user_seen, "stopping");
  EXPECT_EQ(r.stage_seen, 5) << "the cleanup runs in the body's layer";
}

TEST_F(AsioGenerator, StoppingABodyOnAnotherIoContextRunsItsCleanupThereInItsLayer) {
  cleanup_record r;
  auto consumer = [](AsioGenerator* t, cleanup_record* rec) -> awaitable<void> {
    (void)user.set("pulling");
    {
      gen<int> g(net::make_strand(t->other), [rec](yield_to<int> out) { return endless(std::move(out), rec); });
      co_await expect_next(g, 0);
      (void)user.set("stopping");
    }
    while (!rec->ran) co_await nap(1ms);
  };
  run_consumer(consumer(this, &r));
  EXPECT_EQ(r.user_seen, "stopping");
  EXPECT_EQ(r.stage_seen, 5);
}

// ---- exceptions ---------------------------------------------------------------------

awaitable<void> thrower(yield_to<int> out) {
  (void)stage.set(9);
  (void)user.set("thrower");
  co_await out.yield(1);
  co_await nap(1ms);
  throw std::runtime_error("boom");
}

TEST_F(AsioGenerator, AnExceptionFromTheBodyReachesTheConsumerOnceAndLeavesItsContextAsItWas) {
  auto consumer = [](AsioGenerator* t) -> awaitable<void> {
    (void)user.set("consumer");
    gen<int> g(net::make_strand(t->pool), [](yield_to<int> out) { return thrower(std::move(out)); });
    co_await expect_next(g, 1);
    bool threw = false;
    try {
      (void)co_await g.next();
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()) == "boom";
    }
    EXPECT_TRUE(threw);
    EXPECT_EQ(user.get(), "consumer");
    EXPECT_EQ(stage.get(), 0);
    {
      auto got_ = co_await g.next();
      EXPECT_EQ(got_, std::nullopt) << "finished after the exception";
    }
  };
  run_consumer(consumer(this));
}

// ---- cancellation -----------------------------------------------------------------

struct cancel_record {
  std::atomic<bool> caught{false};
  std::string user_seen;
  int stage_seen = -1;
};

awaitable<void> slow(yield_to<int> out, cancel_record* r) {
  (void)stage.set(4);
  co_await out.yield(1);
  try {
    net::steady_timer t(co_await net::this_coro::executor, 1h);
    co_await t.async_wait(use_awaitable);
  } catch (const net_system_error& e) {
    if (e.code() == net::error::operation_aborted) {
      r->user_seen = user.get();
      r->stage_seen = stage.get();
      (void)probe.set(7);
      r->caught = true;
    }
    throw;
  }
  co_await out.yield(2);
}

TEST_F(AsioGenerator, CancellingAPullCancelsWhatTheBodyAwaitsInItsLayer) {
  cancel_record r;
  auto consumer = [](AsioGenerator* t, cancel_record* rec) -> awaitable<void> {
    using namespace net::experimental::awaitable_operators;
    (void)user.set("impatient");
    gen<int> g(t->io, [rec](yield_to<int> out) { return slow(std::move(out), rec); });
    co_await expect_next(g, 1);
    auto which = co_await (g.next() || nap(5ms));
    EXPECT_EQ(which.index(), 1u) << "the timeout wins";
    EXPECT_TRUE(rec->caught);
    EXPECT_EQ(user.get(), "impatient");
    EXPECT_EQ(stage.get(), 0);
    EXPECT_EQ(probe.get(), -1);
    {
      auto got_ = co_await g.next();
      EXPECT_EQ(got_, std::nullopt) << "the body ended with the cancellation";
    }
  };
  run_consumer(consumer(this, &r));
  EXPECT_EQ(r.user_seen, "impatient");
  EXPECT_EQ(r.stage_seen, 4);
}

// ---- nesting ----------------------------------------------------------------------

awaitable<void> inner_body(yield_to<int> out, seen* s) {
  for (int i = 0; i < 2; ++i) {
    s->look();
    (void)stage.set(20);  // the inner body's own: never seen by the outer body nor the consumer
    (void)probe.set(1);
    co_await nap(1ms);
    co_await out.yield(i);
  }
}

awaitable<void> outer_body(yield_to<int> out, net::any_io_executor inner_ex, seen* inner_seen, seen* outer_seen) {
  (void)stage.set(10);
  gen<int> inner(inner_ex, [inner_seen](yield_to<int> o) { return inner_body(std::move(o), inner_seen); });
  while (std::optional<int> v = co_await inner.next()) {
    outer_seen->look();
    co_await out.yield(100 + *v);
  }
}

TEST_F(AsioGenerator, GeneratorsNestEachLevelOverTheOnePullingIt) {
  seen inner_seen, outer_seen;
  auto consumer = [](AsioGenerator* t, seen* is, seen* os) -> awaitable<void> {
    (void)user.set("c1");
    net::any_io_executor inner_ex = net::make_strand(t->pool);
    gen<int> outer(t->other, [=](yield_to<int> out) { return outer_body(std::move(out), inner_ex, is, os); });
    co_await expect_next(outer, 100);
    (void)user.set("c2");
    co_await expect_next(outer, 101);
    co_await expect_next(outer, std::nullopt);
    EXPECT_EQ(stage.get(), 0);
  };
  run_consumer(consumer(this, &inner_seen, &outer_seen));
  EXPECT_EQ(inner_seen.users, (std::vector<std::string>{"c1", "c2"})) << "the consumer's current values through both layers";
  EXPECT_EQ(inner_seen.stages, (std::vector<int>{10, 20})) << "the outer body's set, then its own";
  EXPECT_EQ(outer_seen.users, (std::vector<std::string>{"c1", "c2"}));
  EXPECT_EQ(outer_seen.stages, (std::vector<int>{10, 10})) << "the inner body's set reached the outer";
}

awaitable<void> outer_of_endless(yield_to<int> out, net::any_io_executor inner_ex, cleanup_record* r) {
  (void)user.set("outer");
  gen<int> inner(inner_ex, [r](yield_to<int> o) { return endless(std::move(o), r); });
  while (std::optional<int> v = co_await inner.next()) co_await out.yield(*v);
}

TEST_F(AsioGenerator, StoppingANestedGeneratorEarlyRunsTheInnerCleanupInItsLayerOverTheOuterLayer) {
  cleanup_record r;
  auto consumer = [](AsioGenerator* t, cleanup_record* rec) -> awaitable<void> {
    (void)stage.set(1);
    {
      gen<int> outer(t->io, [=](yield_to<int> out) { return outer_of_endless(std::move(out), t->other.get_executor(), rec); });
      co_await expect_next(outer, 0);
    }  // the outer body's frames die in its layer, and with them the inner generator
    while (!rec->ran) co_await nap(1ms);
    EXPECT_EQ(stage.get(), 1);
  };
  run_consumer(consumer(this, &r));
  EXPECT_EQ(r.user_seen, "outer") << "the inner cleanup layers over the outer body's layer";
  EXPECT_EQ(r.stage_seen, 5);
}

// ---- a body on other executors: every resumption in its layer -------------------------

// Each resumption checks that the body sees its own stage and the consumer's
// user of this pull, and writes the probe (a leak if it ran outside the layer).
struct hops {
  std::atomic<int> resumed{0}, wrong{0};
  std::mutex m;
  std::string text;
  void check(const std::string& want_user, const char* where) {
    ++resumed;
    if (stage.get() != 3 || user.get() != want_user) {
      ++wrong;
      std::lock_guard<std::mutex> l(m);
      text += std::string(where) + ": stage " + std::to_string(stage.get()) + ", user " + user.get() + "\n";
    }
    (void)probe.set(resumed.load());
  }
};

awaitable<void> hopping_body(yield_to<std::string> out, hops* h, net::thread_pool* pool, net::io_context* io) {
  (void)stage.set(3);
  auto strand = net::make_strand(*pool);
  for (int i = 0; i < 3; ++i) {
    const std::string want = user.get();
    co_await net::post(net::bind_executor(*pool, use_awaitable));
    h->check(want, "post(bind_executor(pool))");
    co_await net::post(net::bind_executor(strand, use_awaitable));
    h->check(want, "post(bind_executor(strand of pool))");
    net::steady_timer t(co_await net::this_coro::executor, 1ms);
    co_await t.async_wait(net::bind_executor(*io, use_awaitable));
    h->check(want, "timer bound to the consumer's io_context");
    co_await t.async_wait(use_awaitable);
    h->check(want, "timer");
    co_await out.yield(want);
  }
}

TEST_F(AsioGenerator, ABodyOnAStrandOfAnotherIoContextIsFollowedThroughEveryExecutorThatResumesIt) {
  hops h;
  auto consumer = [](AsioGenerator* t, hops* hp) -> awaitable<void> {
    gen<std::string> g(net::make_strand(t->other),
                       [=](yield_to<std::string> out) { return hopping_body(std::move(out), hp, &t->pool, &t->io); });
    for (const char* u : {"u0", "u1", "u2"}) {
      (void)user.set(u);
      co_await expect_next(g, std::string(u));
      EXPECT_EQ(stage.get(), 0);
      EXPECT_EQ(probe.get(), -1);
    }
    co_await expect_next(g, std::nullopt);
  };
  run_consumer(consumer(this, &h));
  EXPECT_EQ(h.resumed.load(), 12);
  EXPECT_EQ(h.wrong.load(), 0) << h.text;
}

TEST_F(AsioGenerator, ABodyOnThePoolWithTheConsumerOnAStrandOfItToo) {
  hops h;
  auto consumer = [](AsioGenerator* t, hops* hp) -> awaitable<void> {
    gen<std::string> g(t->pool, [=](yield_to<std::string> out) { return hopping_body(std::move(out), hp, &t->pool, &t->io); });
    for (const char* u : {"x", "y", "z"}) {
      (void)user.set(u);
      co_await expect_next(g, std::string(u));
    }
  };
  // The consumer itself runs on a strand of the pool; this thread only waits.
  std::promise<std::exception_ptr> done;
  auto f = done.get_future();
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work(io.get_executor());
  cx::co_spawn(net::make_strand(pool), consumer(this, &h), [&](std::exception_ptr e) {
    done.set_value(e);
    net::post(io, [&] { work.reset(); });
  });
  io.run();  // the bound timers' completions
  EXPECT_EQ(f.get(), nullptr);
  EXPECT_EQ(h.wrong.load(), 0) << h.text;
  expect_no_leak();
}

// ---- channels and sockets inside the body -----------------------------------------

using channel = net::experimental::concurrent_channel<void(net_error_code, int)>;

awaitable<void> relay(yield_to<int> out, std::shared_ptr<channel> ch) {
  (void)stage.set(6);
  for (;;) {
    auto [ec, v] = co_await ch->async_receive(as_tuple(use_awaitable));
    if (ec) co_return;
    (void)probe.set(v);
    if (stage.get() != 6) throw std::logic_error("the relay lost its layer");
    co_await out.yield(v * 10);
  }
}

awaitable<void> feed(std::shared_ptr<channel> ch) {
  (void)probe.set(1234);  // the feeder's own task context
  for (int i = 1; i <= 3; ++i) co_await ch->async_send(net_error_code{}, i, use_awaitable);
  ch->close();
}

TEST_F(AsioGenerator, ABodyReceivingFromAChannelFedByATaskOnAnotherThread) {
  auto consumer = [](AsioGenerator* t) -> awaitable<void> {
    auto ch = std::make_shared<channel>(t->other, 0);
    cx::co_spawn(t->pool, feed(ch), net::detached);
    gen<int> g(t->other, [ch](yield_to<int> out) { return relay(std::move(out), ch); });
    std::vector<int> got;
    while (std::optional<int> v = co_await g.next()) {
      got.push_back(*v);
      EXPECT_EQ(stage.get(), 0);
    }
    EXPECT_EQ(got, (std::vector<int>{10, 20, 30}));
  };
  run_consumer(consumer(this));
}

awaitable<void> lines(yield_to<std::string> out, net::io_context* io, std::atomic<int>* wrong) {
  (void)user.set("reader");
  auto ex = co_await net::this_coro::executor;
  net::ip::tcp::acceptor acc(ex, {net::ip::make_address("127.0.0.1"), 0});
  net::ip::tcp::socket a(*io), b(ex);
  co_await a.async_connect(acc.local_endpoint(), use_awaitable);
  co_await acc.async_accept(b, use_awaitable);
  if (user.get() != "reader") ++*wrong;
  for (std::string word : {"alpha", "beta"}) {
    co_await net::async_write(a, net::buffer(word), use_awaitable);
    std::string in(word.size(), '\0');
    co_await net::async_read(b, net::buffer(in), use_awaitable);
    if (user.get() != "reader") ++*wrong;
    (void)probe.set(static_cast<int>(in.size()));
    co_await out.yield(in);
  }
}

TEST_F(AsioGenerator, ABodyReadingFromASocketOverLoopback) {
  std::atomic<int> wrong{0};
  auto consumer = [](AsioGenerator* t, std::atomic<int>* wr) -> awaitable<void> {
    (void)user.set("consumer");
    gen<std::string> g(t->other, [=](yield_to<std::string> out) { return lines(std::move(out), &t->io, wr); });
    co_await expect_next(g, std::string("alpha"));
    EXPECT_EQ(user.get(), "consumer");
    co_await expect_next(g, std::string("beta"));
    co_await expect_next(g, std::nullopt);
  };
  run_consumer(consumer(this, &wrong));
  EXPECT_EQ(wrong.load(), 0);
}

// ---- contexts inside the body -------------------------------------------------------

struct child_record {
  std::string child_user, pool_user;
  int child_stage = -1, pool_stage = -1;
};

awaitable<int> child_task(child_record* r) {
  r->child_user = user.get();
  r->child_stage = stage.get();
  (void)stage.set(50);  // the child's own fork
  co_return 1;
}

awaitable<void> spawning_body(yield_to<int> out, child_record* r, net::thread_pool* pool) {
  (void)stage.set(8);
  auto ex = co_await net::this_coro::executor;
  const int c = co_await cx::co_spawn(ex, child_task(r), use_awaitable);
  co_await cx::to_thread(*pool, [r] {
    r->pool_user = user.get();
    r->pool_stage = stage.get();
    (void)stage.set(60);
  });
  if (stage.get() != 8) throw std::logic_error("a child's set reached the body");
  co_await out.yield(c);
}

TEST_F(AsioGenerator, TasksAndToThreadInsideTheBodyForkTheLayeredView) {
  child_record r;
  auto consumer = [](AsioGenerator* t, child_record* rec) -> awaitable<void> {
    (void)user.set("parent");
    gen<int> g(t->other, [=](yield_to<int> out) { return spawning_body(std::move(out), rec, &t->pool); });
    co_await expect_next(g, 1);
    EXPECT_EQ(stage.get(), 0);
  };
  run_consumer(consumer(this, &r));
  EXPECT_EQ(r.child_user, "parent");
  EXPECT_EQ(r.child_stage, 8) << "a task spawned in the body starts in a fork of the layered view";
  EXPECT_EQ(r.pool_user, "parent");
  EXPECT_EQ(r.pool_stage, 8);
}

// ---- other consumers, misuse, values ------------------------------------------------

TEST_F(AsioGenerator, ACallbackConsumerOutsideAnyTaskGetsTheValuesInItsOwnContext) {
  std::atomic<int> started{0};
  std::vector<int> got;
  std::vector<int> probes;
  {
    gen<int> g(other, [&started](yield_to<int> out) { return count_to(std::move(out), 2, &started); });
    std::function<void(std::exception_ptr, std::optional<int>)> on_value;
    on_value = [&](std::exception_ptr e, std::optional<int> v) {
      EXPECT_EQ(e, nullptr);
      probes.push_back(probe.get());  // the io thread's own context: the body's sets never show
      if (!v) return;
      got.push_back(*v);
      g.async_next(net::bind_executor(io, on_value));
    };
    g.async_next(net::bind_executor(io, on_value));
    io.run();
  }
  EXPECT_EQ(got, (std::vector<int>{0, 1}));
  EXPECT_EQ(probes, (std::vector<int>{-1, -1, -1}));
  expect_no_leak();
}

TEST_F(AsioGenerator, ASecondPullWhileOneIsPendingCompletesWithLogicError) {
  auto consumer = [](AsioGenerator* t) -> awaitable<void> {
    std::atomic<int> started{0};
    gen<int> g(t->io, [&started](yield_to<int> out) { return count_to(std::move(out), 2, &started); });
    std::optional<int> first;
    bool first_done = false;
    g.async_next([&](std::exception_ptr e, std::optional<int> v) {
      EXPECT_EQ(e, nullptr);
      first = v;
      first_done = true;
    });
    bool second_failed = false;
    try {
      (void)co_await g.next();
    } catch (const std::logic_error&) {
      second_failed = true;
    }
    EXPECT_TRUE(second_failed);
    while (!first_done) co_await nap(1ms);
    EXPECT_EQ(first, 0) << "the first pull is unaffected";
    co_await expect_next(g, 1);
  };
  run_consumer(consumer(this));
}

awaitable<void> owners(yield_to<std::unique_ptr<int>> out) {
  for (int i = 0; i < 2; ++i) co_await out.yield(std::make_unique<int>(i));
}

TEST_F(AsioGenerator, MoveOnlyValuesAreMovedThrough) {
  auto consumer = [](AsioGenerator* t) -> awaitable<void> {
    gen<std::unique_ptr<int>> g(t->pool, [](yield_to<std::unique_ptr<int>> out) { return owners(std::move(out)); });
    auto a = co_await g.next();
    auto b = co_await g.next();
    EXPECT_TRUE(a && *a && **a == 0);
    EXPECT_TRUE(b && *b && **b == 1);
    co_await expect_next(g, std::nullopt);
  };
  run_consumer(consumer(this));
}

}  // namespace
