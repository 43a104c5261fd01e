#include "ctxvars/bind.hpp"

#include <gtest/gtest.h>

#include <future>
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

}  // namespace
