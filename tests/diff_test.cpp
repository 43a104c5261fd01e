#include "ctxvars/diff.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ctxvars/ctxvars.hpp"

namespace {

struct seen {
  std::optional<int> before, after;
  int times = 0;
};

std::map<std::uint64_t, seen> changes(const ctxvars::context& a, const ctxvars::context& b) {
  std::map<std::uint64_t, seen> out;
  ctxvars::diff(a, b, [&](const ctxvars::change& c) {
    seen& s = out[c.var_id];
    ++s.times;
    if (c.before) s.before = c.before->value<int>();
    if (c.after) s.after = c.after->value<int>();
  });
  return out;
}

TEST(Diff, ACopyIsUnchangedAndASetIsOneChange) {
  ctxvars::context_var<int> a("a"), b("b");
  ctxvars::context c;
  c.run([&] {
    a.set(1);
    b.set(2);
  });
  ctxvars::context d = c.copy();
  EXPECT_TRUE(changes(c, d).empty());
  d.run([&] { a.set(10); });
  auto ch = changes(c, d);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[a.id()].before, 1);
  EXPECT_EQ(ch[a.id()].after, 10);
}

TEST(Diff, AddedAndRemovedVariablesHaveOneSideOnly) {
  ctxvars::context_var<int> a("a"), b("b");
  ctxvars::context c;
  c.run([&] { a.set(1); });
  ctxvars::context d;
  d.run([&] { b.set(2); });
  auto ch = changes(c, d);
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[a.id()].before, 1);
  EXPECT_FALSE(ch[a.id()].after);
  EXPECT_FALSE(ch[b.id()].before);
  EXPECT_EQ(ch[b.id()].after, 2);
}

TEST(Diff, ASetUndoneByResetIsNoChange) {
  ctxvars::context_var<int> a("a");
  ctxvars::context c;
  c.run([&] { a.set(1); });
  ctxvars::context d = c.copy();
  d.run([&] {
    auto t = a.set(2);
    a.reset(t);
  });
  EXPECT_TRUE(changes(c, d).empty());
}

TEST(Diff, NamesAndTypedValuesAreReported) {
  ctxvars::context_var<std::string> s("user");
  ctxvars::context c, d;
  d.run([&] { s.set("ann"); });
  int n = 0;
  ctxvars::diff(c, d, [&](const ctxvars::change& ch) {
    EXPECT_EQ(ch.name, "user");
    ASSERT_TRUE(ch.after);
    EXPECT_EQ(*ch.after->get_if<std::string>(), "ann");
    ++n;
  });
  EXPECT_EQ(n, 1);
}

// Differential: random contexts of up to 3000 variables, sharing structure
// through copies, against a plain comparison of their entries.
TEST(Diff, AgreesWithANaiveComparisonOnRandomSharedContexts) {
  std::vector<std::unique_ptr<ctxvars::context_var<int>>> vars;
  for (int i = 0; i < 3000; ++i) vars.push_back(std::make_unique<ctxvars::context_var<int>>("v"));
  std::mt19937 rng(42);
  for (int round = 0; round < 30; ++round) {
    const int n = 1 + static_cast<int>(rng() % 3000);
    ctxvars::context a;
    a.run([&] {
      for (int i = 0; i < n; ++i) vars[rng() % vars.size()]->set(static_cast<int>(rng() % 5));
    });
    ctxvars::context b = (rng() % 2) ? a.copy() : ctxvars::context();
    b.run([&] {
      const int edits = static_cast<int>(rng() % 50);
      for (int i = 0; i < edits; ++i) {
        vars[rng() % vars.size()]->set(static_cast<int>(rng() % 5));
      }
    });
    std::map<std::uint64_t, seen> want;
    auto box_of = [](const ctxvars::context& c) {
      std::map<std::uint64_t, std::pair<const void*, int>> m;
      for (auto e : c) m[e.var_id()] = {&e.value<int>(), e.value<int>()};
      return m;
    };
    const auto ma = box_of(a), mb = box_of(b);
    for (auto& [id, v] : ma) {
      auto it = mb.find(id);
      if (it == mb.end()) want[id] = {v.second, std::nullopt, 1};
      else if (it->second.first != v.first) want[id] = {v.second, it->second.second, 1};
    }
    for (auto& [id, v] : mb)
      if (!ma.count(id)) want[id] = {std::nullopt, v.second, 1};
    const auto got = changes(a, b);
    ASSERT_EQ(got.size(), want.size()) << "round " << round;
    for (auto& [id, w] : want) {
      auto it = got.find(id);
      ASSERT_NE(it, got.end());
      EXPECT_EQ(it->second.before, w.before);
      EXPECT_EQ(it->second.after, w.after);
      EXPECT_EQ(it->second.times, 1);
    }
    // The other way round: additions become removals (with shared structure
    // when b is a copy of a).
    const auto back = changes(b, a);
    ASSERT_EQ(back.size(), want.size());
    for (auto& [id, w] : want) {
      EXPECT_EQ(back.at(id).before, w.after);
      EXPECT_EQ(back.at(id).after, w.before);
    }
  }
}

}  // namespace
