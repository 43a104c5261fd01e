// ctxvars::generator under allocation failure: operator new is replaced in this
// binary so that the Nth allocation from now throws std::bad_alloc. Each
// operation is swept over N until it succeeds; after each failure the
// consumer's context and the generator's layer must be as before, and nothing
// may leak (counted values).
#include "ctxvars/generator.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "counted.hpp"
#include "failing_new.hpp"

using namespace ctxvars;
using ctxvars_test::counted;

namespace {

using ctxvars_test::fail_countdown;
using ctxvars_test::sweep;

void drain_caches() { ctxvars_test::drain_layer_cache(); }

context_var<int> a("a", -1);
context_var<counted> c("c");

struct many_vars {
  std::vector<std::unique_ptr<context_var<int>>> v;
  many_vars() {
    for (int i = 0; i < 12; ++i) v.push_back(std::make_unique<context_var<int>>("v" + std::to_string(i), -1));
  }
};

generator<int> sets_many(many_vars& m, int& runs) {
  for (auto& v : m.v) v->set(5);
  c.set(counted(1));
  for (;;) {
    ++runs;
    co_yield a.get() + m.v[0]->get();
  }
}

TEST(GeneratorAllocFailure, BeginThatCannotAllocateRunsNothingAndChangesNothing) {
  many_vars m;
  const long alive = counted::alive;
  context().run([&] {
    a.set(1);
    int points = sweep(
        [&] {
          int runs = 0;
          drain_caches();
          auto g = sets_many(m, runs);
          auto it = g.begin();
          EXPECT_EQ(*it, 6);
        },
        [&] {
          EXPECT_EQ(a.get(), 1);
          EXPECT_EQ(m.v[0]->get(), -1);
          EXPECT_FALSE(c.try_get());
        });
    EXPECT_GT(points, 0);
  });
  EXPECT_EQ(counted::alive, alive);
}

TEST(GeneratorAllocFailure, AResumeWhoseRebuildCannotAllocateRunsNothingAndCanBeRetried) {
  many_vars m;
  const long alive = counted::alive;
  context().run([&] {
    a.set(1);
    int runs = 0;
    auto g = sets_many(m, runs);
    auto it = g.begin();
    EXPECT_EQ(*it, 6);
    a.set(2);  // the next resume rebuilds: 13 own variables fold a write log
    int points = sweep(
        [&] {
          drain_caches();
          ++it;
        },
        [&] {
          EXPECT_EQ(runs, 1);  // the body did not run
          EXPECT_EQ(a.get(), 2);
          EXPECT_EQ(m.v[0]->get(), -1);
          EXPECT_EQ(g.promise()->layer().own_count(), 13u);
        });
    EXPECT_GT(points, 0);
    EXPECT_EQ(*it, 7);
    EXPECT_EQ(runs, 2);
  });
  EXPECT_EQ(counted::alive, alive);
}

// Sets a variable it has not set before at each pull; a set that fails is
// retried at the next pull.
generator<int> sets_a_new_var_each_pull(many_vars& m, int& broken) {
  for (std::size_t i = 0; i < m.v.size(); ++i) {
    const int before = m.v[i]->get();
    bool failed = false;
    try {
      m.v[i]->set(static_cast<int>(i) + 100);
    } catch (const std::bad_alloc&) {
      failed = true;
    }
    if (failed) {
      if (m.v[i]->get() != before) ++broken;
      co_yield -1;
      --i;  // the same variable again (unsigned wrap-around is defined)
      continue;
    }
    co_yield m.v[i]->get();
  }
}

TEST(GeneratorAllocFailure, ASetInTheBodyThatCannotAllocateChangesNeitherItsViewNorItsLayer) {
  many_vars m;
  context().run([&] {
    for (std::size_t i = 0; i < m.v.size(); i += 2) m.v[i]->set(7);  // half of them inherited
    int broken = 0;
    std::optional<generator<int>> g;
    generator<int>::iterator it;
    bool started = false;
    int failures = 0;
    for (std::size_t i = 0; i < m.v.size(); ++i) {
      failures += sweep(
          [&] {
            if (!g) g.emplace(sets_a_new_var_each_pull(m, broken));
            if (!started) {
              it = g->begin();  // may fail before the body starts: then retried
              started = true;
            } else {
              ++it;
            }
            if (*it == -1) throw std::bad_alloc();
          },
          [&] {
            EXPECT_EQ(broken, 0);
            if (g) {
              EXPECT_EQ(g->promise()->layer().own_count(), i);
            }
          });
      EXPECT_EQ(*it, static_cast<int>(i) + 100);
      EXPECT_EQ(m.v[i]->get(), i % 2 == 0 ? 7 : -1);  // the consumer's
    }
    EXPECT_GT(failures, static_cast<int>(m.v.size()));
    EXPECT_EQ(g->promise()->layer().own_count(), m.v.size());
  });
}

struct cleanup_probe {
  int* seen;
  ~cleanup_probe() { *seen = a.get(); }
};

generator<int> with_probe(many_vars& m, int& seen) {
  for (auto& v : m.v) v->set(5);
  cleanup_probe p{&seen};
  for (;;) co_yield a.get();
}

TEST(GeneratorAllocFailure, DestructionWithoutMemoryForARebuildStillRunsTheCleanupInTheLastView) {
  many_vars m;
  context().run([&] {
    a.set(1);
    int seen = 0;
    std::optional<generator<int>> g(with_probe(m, seen));
    EXPECT_EQ(*g->begin(), 1);
    a.set(2);
    drain_caches();
    fail_countdown = 0;  // the rebuild's first allocation fails
    g.reset();
    fail_countdown = -1;
    EXPECT_EQ(seen, 1);  // the layer as of its last resume (documented)
    EXPECT_EQ(a.get(), 2);
    EXPECT_EQ(m.v[0]->get(), -1);
  });
}

// A layer whose resume found the consumer's context changed lets go of its
// map between pulls (generator_layer::drop, keeping the body's own values aside).
struct own_probe {
  context_var<int>* v;
  int* seen;
  ~own_probe() { *seen = v->get(); }
};
generator<int> sets_own(many_vars& m, int& seen) {
  m.v[0]->set(7);
  own_probe p{m.v[0].get(), &seen};
  for (;;) co_yield a.get();
}

TEST(GeneratorAllocFailure, AfterTheLayerLetGoOfItsMapTheBodyAndItsCleanupStillSeeItsOwnValues) {
  many_vars m;
  context().run([&] {
    a.set(1);
    int seen = 0;
    std::optional<generator<int>> g(sets_own(m, seen));
    auto it = g->begin();
    EXPECT_EQ(*it, 1);
    a.set(2);
    ++it;  // the consumer changed: after this pull the layer lets go of its map
    EXPECT_EQ(*it, 2);
    EXPECT_EQ(m.v[0]->get(), -1);
    a.set(3);
    ++it;
    EXPECT_EQ(*it, 3);
    a.set(4);
    g.reset();
    EXPECT_EQ(seen, 7) << "the cleanup sees the body's own value, kept aside";
    EXPECT_EQ(m.v[0]->get(), -1);
  });
}

TEST(GeneratorAllocFailure, DestructionWithoutMemoryAfterTheLayerLetGoOfItsMapShowsTheConsumersValues) {
  many_vars m;
  context().run([&] {
    a.set(1);
    int seen = 0;
    std::optional<generator<int>> g(with_probe(m, seen));
    auto it = g->begin();
    EXPECT_EQ(*it, 1);
    a.set(2);
    ++it;  // the layer lets go of its map after this pull
    EXPECT_EQ(*it, 2);
    a.set(3);
    drain_caches();
    fail_countdown = 0;  // the rebuild's first allocation fails
    g.reset();
    fail_countdown = -1;
    EXPECT_EQ(seen, 3);  // the consumer's current values, without the body's own (documented)
    EXPECT_EQ(a.get(), 3);
    EXPECT_EQ(m.v[0]->get(), -1);
  });
}

}  // namespace
