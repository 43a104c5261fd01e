#include "ctxvars/bind.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "ctxvars/ctxvars.hpp"

using namespace ctxvars;

namespace {

TEST(Bind, AJthreadStartsInACopyOfItsCreatorsContext) {
  context_var<int> v("v");
  context().run([&] {
    (void)v.set(1);
    int seen = 0;
    {
      std::jthread t(ctxvars::bind([&] {
        seen = v.get();
        (void)v.set(2);  // stays in the thread's copy
      }));
    }
    EXPECT_EQ(seen, 1);
    EXPECT_EQ(v.get(), 1);
  });
}

TEST(Bind, SnapshotIsTakenAtBindTimeAndEachCallGetsAFreshCopy) {
  context_var<int> v("v", 0);
  context().run([&] {
    (void)v.set(1);
    auto f = ctxvars::bind([&] {
      const int before = v.get();
      (void)v.set(before + 100);
      return before;
    });
    (void)v.set(2);  // later change of the creator: not seen
    EXPECT_EQ(f(), 1);
    EXPECT_EQ(f(), 1) << "the first call's set must not leak into the second";
    EXPECT_EQ(v.get(), 2);
  });
}

TEST(Bind, BoundToAContextRunsInsideItAndKeepsItsSets) {
  context_var<int> v("v", 0);
  context c;
  auto f = ctxvars::bind(c, [&](int add) {
    (void)v.set(v.get() + add);
    return v.get();
  });
  EXPECT_EQ(f(1), 1);
  EXPECT_EQ(f(2), 3);
  EXPECT_EQ(c.get(v), 3);
  EXPECT_EQ(v.peek(), nullptr) << "the caller's context must not see it";
  EXPECT_THROW(c.run([&] { f(1); }), context_in_use_error);
}

TEST(Bind, WorksWithAsyncAndPassesArguments) {
  context_var<std::string> v("v");
  context().run([&] {
    (void)v.set("req-1");
    auto fut = std::async(std::launch::async, ctxvars::bind([&](std::string suffix) { return v.get() + suffix; }),
                          std::string("!"));
    EXPECT_EQ(fut.get(), "req-1!");
  });
}

TEST(Bind, ABoundCallableIsCopyableAndConstCallable) {
  context_var<int> v("v");
  context().run([&] {
    (void)v.set(5);
    const auto f = ctxvars::bind([&] { return v.get(); });
    auto g = f;
    EXPECT_EQ(f(), 5);
    EXPECT_EQ(g(), 5);
  });
}


// Moving a bound function object hands its context over (no reference count
// traffic); the moved-from object stays safe to destroy, copy and assign, and
// calling it is a clear error. The context itself lives exactly as long as
// some bound object (or handle) refers to it: its value is destroyed once.
struct tracked {
  static inline int alive = 0;
  int v;
  explicit tracked(int x) : v(x) { ++alive; }
  tracked(const tracked& o) : v(o.v) { ++alive; }
  ~tracked() { --alive; }
};

struct read_tracked {
  context_var<tracked>* v;
  int operator()() const { return v->get().v; }
};
struct increment {
  context_var<int>* v;
  int operator()() const {
    (void)v->set(v->get() + 1);
    return v->get();
  }
};

TEST(Bind, AMovedFromSnapshotBoundThrowsLogicErrorAndEverythingElseStaysSafe) {
  context_var<tracked> v("v");
  {
    std::optional<std::function<int()>> keep;
    context().run([&] {
      (void)v.set(tracked(7));
      auto a = ctxvars::bind(read_tracked{&v});  // a function object that can be assigned
      auto b = std::move(a);  // a is moved-from
      EXPECT_EQ(b(), 7);
      EXPECT_THROW(a(), std::logic_error);
      EXPECT_THROW(std::as_const(a)(), std::logic_error);
      auto c = a;  // copy of a moved-from object: also moved-from
      EXPECT_THROW(c(), std::logic_error);
      a = b;  // assigning makes it usable again
      EXPECT_EQ(a(), 7);
      c = std::move(b);  // move-assignment hands the snapshot over too
      EXPECT_EQ(c(), 7);
      EXPECT_THROW(b(), std::logic_error);
      auto& b_alias = b;  // (an alias: compilers warn on a literal self-move)
      b = std::move(b_alias);  // self-move-assignment of a moved-from one: still empty, no crash
      EXPECT_THROW(b(), std::logic_error);
      auto& a_alias = a;
      a = std::move(a_alias);  // self-move-assignment keeps the snapshot
      EXPECT_EQ(a(), 7);
      keep.emplace(std::move(c));  // into std::function: moved again
      EXPECT_THROW(c(), std::logic_error);
    });
    EXPECT_EQ(tracked::alive, 1) << "the snapshot, held by the std::function";
    EXPECT_EQ((*keep)(), 7);
  }
  EXPECT_EQ(tracked::alive, 0) << "destroyed exactly once, with the last holder";
}

TEST(Bind, AMovedFromContextBoundThrowsLogicErrorAndTheContextKeepsItsSets) {
  context_var<int> v("v", 0);
  context c;
  auto a = ctxvars::bind(c, increment{&v});
  auto b = std::move(a);
  EXPECT_THROW(a(), std::logic_error);
  EXPECT_EQ(b(), 1);
  EXPECT_EQ(b(), 2);
  EXPECT_EQ(c.get(v), 2) << "b runs in c itself";
  auto d = a;  // moved-from copy
  EXPECT_THROW(d(), std::logic_error);
  d = b;
  EXPECT_EQ(d(), 3);
  EXPECT_FALSE(c.entered());
  EXPECT_EQ(v.get(), 0);
}

// "Replace my handler with the continuation it holds": the source of the
// assignment is owned by the target's own function, so assigning the function
// destroys the source. Everything is read from it first (ASan: this was a
// heap-use-after-free, and a double free in a plain clang build).
TEST(Bind, AssigningFromAnObjectTheTargetsOwnFunctionOwnsIsSafe) {
  context_var<int> v("v", 0);
  for (const bool copy : {false, true}) {
    context c;
    c.run([&] { (void)v.set(7); });
    using B = decltype(ctxvars::bind(c, std::function<int()>()));
    auto next = std::make_shared<B>(ctxvars::bind(c, std::function<int()>([&] { return v.get() + 100; })));
    B cb = ctxvars::bind(context(), std::function<int()>([next] { return next ? 1 : 0; }));
    B* src = next.get();
    next.reset();  // only cb's function keeps *src alive
    EXPECT_EQ(cb(), 1);
    if (copy)
      cb = *src;
    else
      cb = std::move(*src);
    EXPECT_EQ(cb(), 107) << "cb now runs the continuation inside c (copy=" << copy << ")";
    EXPECT_FALSE(c.entered());
  }
}

// Move-assignment with a function whose move throws: the target keeps its
// context and function, the source its own (nothing is taken before the
// function is moved).
context_var<int> assign_v("assign_v", 0);
struct throwing_move_assign {
  static inline bool armed = false;
  int n = 1;
  throwing_move_assign() = default;
  explicit throwing_move_assign(int k) : n(k) {}
  throwing_move_assign(const throwing_move_assign&) = default;
  throwing_move_assign(throwing_move_assign&& o) : n(o.n) {
    if (armed) throw std::runtime_error("move");
  }
  throwing_move_assign& operator=(const throwing_move_assign&) = default;
  throwing_move_assign& operator=(throwing_move_assign&& o) {
    n = o.n;
    return *this;
  }
  int operator()() const { return n + assign_v.get(); }  // the function and the context it runs in
};

TEST(Bind, AThrowingMoveAssignmentChangesNeitherSide) {
  context_var<int>& v = assign_v;
  context a_ctx, b_ctx;
  a_ctx.run([&] { (void)v.set(1); });
  b_ctx.run([&] { (void)v.set(2); });
  auto a = ctxvars::bind(a_ctx, throwing_move_assign(10));
  auto b = ctxvars::bind(b_ctx, throwing_move_assign(20));
  throwing_move_assign::armed = true;
  EXPECT_THROW(a = std::move(b), std::runtime_error);
  throwing_move_assign::armed = false;
  EXPECT_EQ(a(), 11);
  EXPECT_EQ(b(), 22) << "the source keeps its function and its context";
  // Unarmed, the same assignment hands b's context to a.
  a = std::move(b);
  EXPECT_EQ(a(), 22);
  EXPECT_THROW(b(), std::logic_error);
  auto& a_ref = a;
  a = a_ref;  // self-assignment (copy) changes nothing
  a = std::move(a_ref);  // nor does self-move
  EXPECT_EQ(a(), 22);
  b = a;  // a moved-from object assigned a copy works again
  EXPECT_EQ(b(), 22);
}

// A function object whose move throws: the source keeps its snapshot (the
// function is moved first).
struct throwing_move {
  static inline bool armed = false;
  int n = 1;
  throwing_move() = default;
  throwing_move(const throwing_move&) = default;
  throwing_move(throwing_move&& o) : n(o.n) {
    if (armed) throw std::runtime_error("move");
  }
  int operator()() const { return n; }
};

TEST(Bind, AThrowingMoveOfTheFunctionLeavesTheSourceUsable) {
  context_var<int> v("v", 0);
  context().run([&] {
    (void)v.set(3);
    auto a = ctxvars::bind(throwing_move{});
    throwing_move::armed = true;
    EXPECT_THROW({ auto b = std::move(a); (void)b; }, std::runtime_error);
    throwing_move::armed = false;
    EXPECT_EQ(a(), 1) << "a still has its snapshot and function";
  });
}

}  // namespace
