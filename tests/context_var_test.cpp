#include "ctxvars/context_var.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "counted.hpp"
#include "ctxvars/ctxvars.hpp"
#include "ctxvars/watch.hpp"

using namespace ctxvars;
using ctxvars_test::counted;

namespace {

// Every test runs in a fresh context so tests never see each other's sets.
template <class F>
void in_fresh_context(F f) {
  context().run(f);
}

TEST(ContextVar, HasANameAndAUniqueId) {
  context_var<int> a("a"), b("b", 1);
  EXPECT_EQ(a.name(), "a");
  EXPECT_EQ(b.name(), "b");
  EXPECT_NE(a.id(), b.id());
  EXPECT_FALSE(a.default_value().has_value());
  EXPECT_EQ(b.default_value(), 1);
}

TEST(ContextVar, GetWithoutValueOrDefaultThrowsLookupErrorNamingTheVariable) {
  in_fresh_context([] {
    context_var<int> v("request_id");
    try {
      (void)v.get();
      FAIL() << "expected lookup_error";
    } catch (const lookup_error& e) {
      EXPECT_NE(std::string(e.what()).find("'request_id'"), std::string::npos) << e.what();
    }
    EXPECT_THROW((void)v.get(), std::out_of_range);  // the std base the contract names
    EXPECT_EQ(v.try_get(), std::nullopt);
    EXPECT_EQ(v.get(7), 7);
    EXPECT_EQ(v.peek(), nullptr);
  });
}

TEST(ContextVar, GetFallsBackToTheDefaultButGetWithFallbackIgnoresIt) {
  in_fresh_context([] {
    context_var<int> v("v", 42);
    EXPECT_EQ(v.get(), 42);
    EXPECT_EQ(v.try_get(), 42);
    EXPECT_EQ(v.get(5), 5);
    EXPECT_EQ(v.peek(), nullptr);
  });
}

TEST(ContextVar, SetThenGetReturnsTheValue) {
  in_fresh_context([] {
    context_var<std::string> v("name");
    auto t = v.set("alice");
    EXPECT_EQ(v.get(), "alice");
    EXPECT_EQ(v.get("x"), "alice");
    EXPECT_EQ(v.try_get(), "alice");
    ASSERT_NE(v.peek(), nullptr);
    EXPECT_EQ(*v.peek(), "alice");
  });
}

TEST(ContextVar, TheBlogPostStoryOfTwoTokens) {
  in_fresh_context([] {
    context_var<std::string> var("var");
    auto token1 = var.set("new value");
    auto token2 = var.set("new value 1");
    EXPECT_EQ(var.get(), "new value 1");
    var.reset(token2);
    EXPECT_EQ(var.get(), "new value");
    var.reset(token1);
    EXPECT_THROW((void)var.get(), lookup_error);
  });
}

TEST(Token, RecordsTheVariableAndTheOldValue) {
  in_fresh_context([] {
    context_var<int> v("v");
    auto t1 = v.set(1);
    EXPECT_EQ(&t1.var(), &v);
    EXPECT_EQ(t1.old_value(), std::nullopt);  // Token.MISSING
    EXPECT_FALSE(t1.used());
    auto t2 = v.set(2);
    EXPECT_EQ(t2.old_value(), 1);
    v.reset(t2);
    EXPECT_TRUE(t2.used());
    EXPECT_EQ(v.get(), 1);
  });
}

TEST(Token, ResetTwiceThrowsUsedTokenErrorAndChangesNothing) {
  in_fresh_context([] {
    context_var<int> v("v");
    auto t = v.set(1);
    v.reset(t);
    auto t2 = v.set(5);
    try {
      v.reset(t);
      FAIL();
    } catch (const used_token_error& e) {
      EXPECT_NE(std::string(e.what()).find("'v'"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("already been used"), std::string::npos);
    }
    EXPECT_EQ(v.get(), 5);
    EXPECT_FALSE(t2.used());
    EXPECT_THROW(v.reset(t), std::logic_error);
  });
}

TEST(Token, ResetWithAnotherVariablesTokenThrowsForeignTokenErrorAndChangesNothing) {
  in_fresh_context([] {
    context_var<int> a("a"), b("b");
    auto ta = a.set(1);
    auto tb = b.set(2);
    try {
      b.reset(ta);
      FAIL();
    } catch (const foreign_token_error& e) {
      EXPECT_NE(std::string(e.what()).find("different context_var"), std::string::npos) << e.what();
    }
    EXPECT_THROW(b.reset(ta), std::invalid_argument);
    EXPECT_FALSE(ta.used());
    EXPECT_EQ(a.get(), 1);
    EXPECT_EQ(b.get(), 2);
    a.reset(ta);  // still usable where it belongs
    EXPECT_THROW((void)a.get(), lookup_error);
  });
}

TEST(Token, ResetInAnotherContextThrowsForeignTokenErrorAndChangesNothing) {
  context_var<int> v("v");
  context c1, c2;
  auto t = c1.run([&] { return v.set(1); });
  c2.run([&] {
    auto t2 = v.set(2);
    try {
      v.reset(t);
      FAIL();
    } catch (const foreign_token_error& e) {
      EXPECT_NE(std::string(e.what()).find("different context"), std::string::npos) << e.what();
    }
    EXPECT_EQ(v.get(), 2);
    EXPECT_FALSE(t.used());
  });
  EXPECT_THROW(v.reset(t), foreign_token_error);  // the thread's own context is another one too
  c1.run([&] {
    v.reset(t);
    EXPECT_TRUE(t.used());
    EXPECT_FALSE(v.try_get().has_value());
  });
  EXPECT_EQ(c2.get(v), 2);
}

TEST(Token, ResetAfterItsContextDiedThrowsForeignTokenError) {
  context_var<int> v("v");
  std::optional<token<int>> t;
  {
    context c;
    t.emplace(c.run([&] { return v.set(1); }));
  }
  context().run([&] { EXPECT_THROW(v.reset(*t), foreign_token_error); });
  EXPECT_FALSE(t->used());
}

TEST(Token, MovedFromTokenCountsAsUsed) {
  in_fresh_context([] {
    context_var<int> v("v");
    auto t = v.set(1);
    auto t2 = std::move(t);
    EXPECT_TRUE(t.used());  // NOLINT(bugprone-use-after-move): documented state
    EXPECT_THROW(v.reset(t), used_token_error);
    v.reset(t2);
    EXPECT_FALSE(v.try_get().has_value());
  });
}

TEST(Token, ResetFromAnotherThreadInsideTheSameContextWorks) {
  context_var<int> v("v");
  context c;
  auto t = c.run([&] { return v.set(1); });
  std::thread([&] { c.run([&] { v.reset(t); }); }).join();
  EXPECT_TRUE(t.used());
  EXPECT_FALSE(c.contains(v));
}

TEST(ScopedSet, RestoresThePreviousValueAtScopeExit) {
  in_fresh_context([] {
    context_var<int> v("v", 0);
    {
      auto g = v.scoped_set(1);
      EXPECT_EQ(v.get(), 1);
      {
        auto g2 = v.scoped_set(2);
        EXPECT_EQ(v.get(), 2);
      }
      EXPECT_EQ(v.get(), 1);
    }
    EXPECT_EQ(v.get(), 0);
    EXPECT_FALSE(v.peek());
  });
}

TEST(ScopedSet, RestoresAlsoWhenAnExceptionUnwinds) {
  in_fresh_context([] {
    context_var<int> v("v", 0);
    try {
      auto g = v.scoped_set(1);
      throw std::runtime_error("x");
    } catch (const std::runtime_error&) {
    }
    EXPECT_EQ(v.get(), 0);
  });
}

TEST(ScopedSet, GuardDestroyedInAnotherContextIsADocumentedNoOp) {
  context_var<int> v("v");
  context a, b;
  std::optional<scoped_value<int>> g;
  a.run([&] { g.emplace(v.scoped_set(1)); });
  b.run([&] { g.reset(); });  // reset impossible here: no-op, no throw
  EXPECT_EQ(a.get(v), 1);
  EXPECT_FALSE(b.contains(v));
}

TEST(ScopedSet, OutOfOrderDestructionFollowsTokenSemantics) {
  in_fresh_context([] {
    context_var<int> v("v", 0);
    auto g1 = std::make_unique<scoped_value<int>>(v.scoped_set(1));
    auto g2 = std::make_unique<scoped_value<int>>(v.scoped_set(2));
    g1.reset();  // restores "no value" (what g1's set found)
    EXPECT_EQ(v.get(), 0);
    g2.reset();  // restores 1 (what g2's set found), as Python's reset would
    EXPECT_EQ(v.get(), 1);
  });
}

TEST(ScopedSet, ExplicitResetThrowsWhereTheDestructorWouldNot) {
  context_var<int> v("v");
  context a, b;
  std::optional<scoped_value<int>> g;
  a.run([&] { g.emplace(v.scoped_set(1)); });
  b.run([&] { EXPECT_THROW(g->reset(), foreign_token_error); });
  a.run([&] { g->reset(); });
  EXPECT_FALSE(a.contains(v));
}

TEST(ContextVar, ValuesAreStoredByValueAndGetReturnsACopy) {
  in_fresh_context([] {
    context_var<std::string> v("v");
    std::string s = "abc";
    auto t = v.set(s);
    s = "changed";
    EXPECT_EQ(v.get(), "abc");
    std::string got = v.get();
    got += "!";
    EXPECT_EQ(v.get(), "abc");
  });
}

TEST(ContextVar, MoveOnlyValuesCanBeSetResetAndPeeked) {
  in_fresh_context([] {
    context_var<std::unique_ptr<int>> v("v");
    auto t1 = v.set(std::make_unique<int>(1));
    EXPECT_FALSE(t1.had_old_value());
    auto t2 = v.set(std::make_unique<int>(2));
    EXPECT_TRUE(t2.had_old_value());
    EXPECT_EQ(**v.peek(), 2);
    v.reset(t2);
    EXPECT_EQ(**v.peek(), 1);
    v.reset(t1);
    EXPECT_EQ(v.peek(), nullptr);
  });
}

// token<T>::old_value() for a T without a copy constructor: the old value
// itself (the token keeps its box alive), readable after reset, after the
// token moved, and with an over-aligned T (it did not compile before).
struct alignas(64) aligned_move_only {
  std::unique_ptr<int> p;
  explicit aligned_move_only(int v) : p(std::make_unique<int>(v)) {}
};
TEST(Token, OldValueOfAMoveOnlyTypeIsTheOldValueItself) {
  in_fresh_context([] {
    context_var<std::unique_ptr<int>> v("v");
    auto t1 = v.set(std::make_unique<int>(1));
    EXPECT_EQ(t1.old_value(), std::nullopt) << "Token.MISSING";
    const int* first = v.peek()->get();
    auto t2 = v.set(std::make_unique<int>(2));
    ASSERT_TRUE(t2.old_value());
    EXPECT_EQ(t2.old_value()->get(), first) << "the same object, not a copy";
    auto t3 = std::move(t2);
    ASSERT_TRUE(t3.old_value());
    EXPECT_EQ(**t3.old_value(), 1);
    v.reset(t3);
    EXPECT_EQ(**v.peek(), 1);
    ASSERT_TRUE(t3.old_value()) << "still readable after reset, as in Python";
    EXPECT_EQ(t3.old_value()->get(), first);
    v.reset(t1);
    EXPECT_EQ(v.peek(), nullptr);
    EXPECT_EQ(t1.old_value(), std::nullopt);

    context_var<aligned_move_only> a("a");
    auto ta = a.set(aligned_move_only(5));
    auto tb = a.set(aligned_move_only(6));
    ASSERT_TRUE(tb.old_value());
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&*tb.old_value()) % 64, 0u);
    EXPECT_EQ(*tb.old_value()->p, 5);
    a.reset(tb);
    EXPECT_EQ(*a.peek()->p, 5);
    a.reset(ta);
  });
}

// Types whose copy may throw or cannot be instantiated although the trait says
// it exists (std::vector<std::unique_ptr<int>>): set never copies them, the
// token reads the old box. They did not compile (set instantiated the copy).
TEST(Token, ContainersOfMoveOnlyValuesSetResetAndKeepTheirOldValue) {
  in_fresh_context([] {
    using vec = std::vector<std::unique_ptr<int>>;
    context_var<vec> v("v");
    vec a;
    a.push_back(std::make_unique<int>(1));
    auto t1 = v.set(std::move(a));
    vec b;
    b.push_back(std::make_unique<int>(2));
    auto t2 = v.set(std::move(b));
    ASSERT_TRUE(t2.old_value());
    EXPECT_EQ(*(*t2.old_value())[0], 1);
    v.reset(t2);
    EXPECT_EQ(*(*v.peek())[0], 1);
    EXPECT_EQ(*(*t2.old_value())[0], 1);
    v.reset(t1);
    EXPECT_EQ(v.peek(), nullptr);
  });
}

// A copy that may throw: never made by set, nor by moving a token (a noexcept
// move that copied could only terminate on bad_alloc).
struct throwing_copy_only {
  static inline int copies = 0;
  int v;
  explicit throwing_copy_only(int x) : v(x) {}
  throwing_copy_only(const throwing_copy_only& o) : v(o.v) { ++copies; }  // may throw: not noexcept
};
// Copyable without a throw, but not assignable (a const member).
struct const_member {
  const int v;
};
struct move_only_const_member {
  std::unique_ptr<int> p;
  const int k;
};
TEST(Token, TokensOfAnyValueTypeMoveAndMoveAssignWithoutCopyingOrAssigningTheValue) {
  in_fresh_context([] {
    context_var<throwing_copy_only> v("v");
    auto t1 = v.set(throwing_copy_only(1));
    auto t2 = v.set(throwing_copy_only(2));
    const int copies = throwing_copy_only::copies;
    auto t3 = std::move(t2);
    t1 = std::move(t3);  // t1's own set is abandoned (documented: a token may be dropped)
    EXPECT_EQ(throwing_copy_only::copies, copies) << "no copy of the value";
    ASSERT_TRUE(t1.old_value());
    EXPECT_EQ(t1.old_value()->v, 1);
    v.reset(t1);
    EXPECT_EQ(v.peek()->v, 1);

    context_var<const_member> c("c");
    auto c1 = c.set(const_member{1});
    auto c2 = c.set(const_member{2});
    c1 = std::move(c2);  // did not compile: swapped the optional copies by assignment
    ASSERT_TRUE(c1.old_value());
    EXPECT_EQ(c1.old_value()->v, 1);
    c.reset(c1);
    EXPECT_EQ(c.peek()->v, 1);

    context_var<move_only_const_member> m("m");
    auto m1 = m.set(move_only_const_member{std::make_unique<int>(1), 1});
    auto m2 = m.set(move_only_const_member{std::make_unique<int>(2), 2});
    m1 = std::move(m2);
    ASSERT_TRUE(m1.old_value());
    EXPECT_EQ(m1.old_value()->k, 1);
    m.reset(m1);
    EXPECT_EQ(*m.peek()->p, 1);
  });
}

TEST(ContextVar, MoveOnlyValuesWorkThroughPeek) {
  in_fresh_context([] {
    context_var<std::shared_ptr<int>> v("v");
    auto t = v.set(std::make_shared<int>(3));
    EXPECT_EQ(**v.peek(), 3);
    EXPECT_EQ(*v.get(), 3);
  });
}

TEST(ContextVar, CountedValuesAreNeitherLeakedNorCopiedNeedlessly) {
  const long before = counted::alive.load();
  {
    context c;
    context_var<counted> v("v");
    c.run([&] {
      counted::reset_counts();
      auto t = v.set(counted(1));
      EXPECT_EQ(counted::copies.load(), 0) << "set of an rvalue copies nothing";
      auto t2 = v.set(counted(2));
      EXPECT_EQ(counted::copies.load(), 1) << "only the token's old_value copy";
      v.reset(t2);
      v.reset(t);
    });
  }
  EXPECT_EQ(counted::alive.load(), before);
}

TEST(ContextVar, DestroyingAVariableKeepsItsValueAliveInContextsUntilTheyDie) {
  const long before = counted::alive.load();
  context c;
  context_var<int> other("other");
  {
    context_var<counted> v("doomed");
    c.run([&] {
      (void)v.set(counted(7));
      (void)other.set(1);
    });
    EXPECT_EQ(c.size(), 2u);
  }
  EXPECT_EQ(counted::alive.load(), before + 1);  // still held by c, not leaked, not dangling
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.get(other), 1);
  bool seen = false;
  for (auto e : c)
    if (e.name() == "doomed") {
      seen = true;
      EXPECT_EQ(e.value<counted>().v, 7);
    }
  EXPECT_TRUE(seen);
  c = context();
  EXPECT_EQ(counted::alive.load(), before);
}

TEST(ContextVar, AVariableRecreatedAtTheSameAddressIsANewVariable) {
  context c;
  alignas(context_var<int>) unsigned char storage[sizeof(context_var<int>)];
  c.run([&] {
    auto* v1 = new (storage) context_var<int>("v");
    (void)v1->set(1);
    EXPECT_EQ(v1->get(), 1);  // now cached
    v1->~context_var();
    auto* v2 = new (storage) context_var<int>("v");
    EXPECT_FALSE(v2->try_get().has_value()) << "stale cache or address-keyed entry";
    EXPECT_EQ(v2->peek(), nullptr);
    v2->~context_var();
  });
}

// The write hook (context_impl::before_write) the Python module installs around C++ calls.
int hook_calls = 0;
bool hook_throws = false;
void counting_hook(detail::context_impl*) {
  ++hook_calls;
  if (hook_throws) throw std::runtime_error("hook");
}

TEST(ContextVar, AWriteHookRunsBeforeEachSetAndResetAndAThrowingOneLeavesTheContextUnchanged) {
  context_var<int> v("v", 0);
  context c;
  c.run([&] {
    detail::context_impl* impl = detail::context_access::impl(c);
    impl->before_write.store(&counting_hook);
    hook_calls = 0;
    auto t = v.set(1);
    EXPECT_EQ(hook_calls, 1);
    hook_throws = true;
    EXPECT_THROW((void)v.set(2), std::runtime_error);
    EXPECT_EQ(v.get(), 1);
    EXPECT_THROW(v.reset(t), std::runtime_error);
    EXPECT_EQ(v.get(), 1);
    EXPECT_FALSE(t.used());
    hook_throws = false;
    v.reset(t);
    EXPECT_EQ(hook_calls, 4);
    EXPECT_EQ(v.get(), 0);
    impl->before_write.store(nullptr);
    (void)v.set(3);
    EXPECT_EQ(hook_calls, 4);
  });
}

// ---------------------------------------------------------------------------
// User code run by internal bookkeeping. A write-log fold (write_log.hpp) can
// drop the last reference to a value a newer layer masked: that value's
// destructor is user code, and must run only once set()/reset() are complete
// (the cache, the token and the watchers updated).

// A value whose destruction runs a function.
struct on_destroy {
  std::function<void()> f;
  ~on_destroy() {
    if (f) f();
  }
};
using hook = std::shared_ptr<on_destroy>;

// Runs `pre`, then `body`, inside a new context in which `doomed` (a value of
// `m`) is masked by a newer value of `m` logged in the top layer, the only
// reference left to `doomed` is a layer below that nothing else shares, and
// the top layer's log is full: the next write of a variable the top layer does
// not log folds the stack, and the fold frees `doomed`. `pre`'s writes go to a
// layer below the top one.
template <class Pre, class Body>
void with_a_fold_that_frees(hook doomed, Pre pre, Body body) {
  context_var<hook> m("masked");
  std::optional<context> origin(std::in_place);
  origin->run([&] { (void)m.set(std::move(doomed)); });
  context c = origin->copy();
  c.run([&] {
    pre();
    {
      const context keep = copy_context();  // shares our top layer: the next write adds one
      (void)m.set(std::make_shared<on_destroy>());
    }
    origin.reset();  // `doomed` is now held by a layer under ours only
    std::vector<std::unique_ptr<context_var<int>>> fillers;
    for (unsigned i = 1; i < 8; ++i) {  // the top log holds 8 entries; m is one
      fillers.push_back(std::make_unique<context_var<int>>("filler"));
      (void)fillers.back()->set(static_cast<int>(i));
    }
    body();
  });
}

TEST(UserCodeDuringAFold, AValueDestructorThatSetsTheVariableBeingSetSeesTheSetComplete) {
  context_var<std::string> a("a");
  bool ran_inside = false, in_set = false;
  std::optional<std::string> seen;
  auto doomed = std::make_shared<on_destroy>();
  doomed->f = [&] {
    ran_inside = in_set;
    seen = a.try_get();
    (void)a.set("y");  // displaces (and, with its token dropped, frees) the value being set
  };
  with_a_fold_that_frees(
      std::move(doomed), [] {},
      [&] {
        in_set = true;
        token<std::string> t = a.set("x");
        in_set = false;
        ASSERT_TRUE(ran_inside) << "the set did not fold: the test lost its point";
        EXPECT_EQ(seen, "x") << "the destructor ran before the set was visible";
        EXPECT_EQ(a.get(), "y");  // not a freed "x" (ASan: heap-use-after-free before the fix)
        EXPECT_FALSE(t.had_old_value());
        EXPECT_EQ(copy_context().get(a), "y");
      });
}

TEST(UserCodeDuringAFold, WatchersAreToldOfTheSetBeforeAValueDestructorSetsAgain) {
  context_var<std::string> a("a");
  std::vector<std::pair<std::string, std::string>> seen;
  watcher w = watch(a, [&](const value_change<std::string>& c) {
    seen.emplace_back(c.before ? *c.before : "-", c.after ? *c.after : "-");
  });
  bool ran = false;
  auto doomed = std::make_shared<on_destroy>();
  doomed->f = [&] {
    ran = true;
    (void)a.set("y");
  };
  with_a_fold_that_frees(
      std::move(doomed), [] {},
      [&] {
        seen.clear();
        (void)a.set("x");
        ASSERT_TRUE(ran);
        const std::vector<std::pair<std::string, std::string>> expected{{"-", "x"}, {"x", "y"}};
        EXPECT_EQ(seen, expected);
        EXPECT_EQ(a.get(), "y");
      });
}

TEST(UserCodeDuringAFold, AValueDestructorDuringResetFindsTheTokenUsedAndTheVariableGone) {
  context_var<std::string> a("a");
  context_var<int> b("b");
  std::optional<token<std::string>> t;
  bool ran_inside = false, in_reset = false, second_reset_refused = false, contained = true;
  std::optional<std::string> got;
  auto doomed = std::make_shared<on_destroy>();
  doomed->f = [&] {
    ran_inside = in_reset;
    try {
      a.reset(*t);  // the reset that is running: the token must already count as used
    } catch (const used_token_error&) {
      second_reset_refused = true;
    }
    got = a.try_get();
    contained = copy_context().contains(a);
    (void)b.set(7);  // another variable: a complete operation of its own
  };
  with_a_fold_that_frees(
      std::move(doomed), [&] { t.emplace(a.set("x")); },
      [&] {
        ASSERT_EQ(a.get(), "x");  // cached
        in_reset = true;
        a.reset(*t);
        in_reset = false;
        ASSERT_TRUE(ran_inside) << "the reset did not fold: the test lost its point";
        EXPECT_TRUE(second_reset_refused) << "a token was reset twice";
        EXPECT_EQ(got, std::nullopt) << "get() returned a value the context no longer has";
        EXPECT_FALSE(contained);
        EXPECT_TRUE(t->used());
        EXPECT_FALSE(a.try_get().has_value());
        EXPECT_EQ(b.get(), 7);
      });
}

TEST(UserCodeDuringAFold, AValueDestructorDuringResetToAnOldValueSeesThatValue) {
  context_var<std::string> a("a");
  std::optional<token<std::string>> t;
  bool ran = false;
  std::optional<std::string> got;
  auto doomed = std::make_shared<on_destroy>();
  doomed->f = [&] {
    ran = true;
    got = a.try_get();
    (void)a.set("z");  // replaces (and frees) the value the reset restored
  };
  std::optional<token<std::string>> first;
  with_a_fold_that_frees(
      std::move(doomed),
      [&] {
        first.emplace(a.set("old"));
        t.emplace(a.set("x"));
      },
      [&] {
        a.reset(*t);
        ASSERT_TRUE(ran);
        EXPECT_EQ(got, "old");
        EXPECT_EQ(a.get(), "z");
        EXPECT_EQ(copy_context().get(a), "z");
      });
}

}  // namespace
