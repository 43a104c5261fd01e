#include "ctxvars/trace.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/propagation.hpp"

namespace {

namespace trace = ctxvars::trace;

TEST(Trace, IdsAreNeverAllZeroAndDoNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 20000; ++i) {
    auto t = trace::new_trace_id();
    auto s = trace::new_span_id();
    EXPECT_FALSE(ctxvars::detail::all_zero(t));
    EXPECT_FALSE(ctxvars::detail::all_zero(s));
    seen.insert(ctxvars::trace_parent::hex(t.data(), t.size()));
    seen.insert(ctxvars::trace_parent::hex(s.data(), s.size()));
  }
  EXPECT_EQ(seen.size(), 40000u);
}

TEST(Trace, ThreadsDrawDifferentIds) {
  std::vector<std::string> ids(8);
  {
    std::vector<std::jthread> ts;
    for (int i = 0; i < 8; ++i)
      ts.emplace_back([&ids, i] {
        auto t = trace::new_trace_id();
        ids[i] = ctxvars::trace_parent::hex(t.data(), t.size());
      });
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 8u);
}

TEST(Trace, AChildProcessDoesNotRepeatItsParentsIds) {
  (void)trace::new_span_id();  // this thread's generator is seeded before the fork
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = trace::new_span_id();
    const bool ok = ::write(fds[1], s.data(), s.size()) == static_cast<ssize_t>(s.size());
    ::_exit(ok ? 0 : 1);
  }
  auto mine = trace::new_span_id();
  trace::span_id child{};
  ASSERT_EQ(::read(fds[0], child.data(), child.size()), static_cast<ssize_t>(child.size()));
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_NE(mine, child);
}

TEST(Trace, ANewTraceCarriesTheRandomFlagAndAChildKeepsTheTrace) {
  auto t = trace::new_trace();
  EXPECT_EQ(t.parent.flags, trace::random_flag | trace::sampled_flag);
  EXPECT_EQ(trace::new_trace(false).parent.flags, trace::random_flag);
  t.tracestate = "k=v";
  t.parent.flags = 0xff;
  auto c = trace::child_of(t);
  EXPECT_EQ(c.parent.trace_id, t.parent.trace_id);
  EXPECT_NE(c.parent.parent_id, t.parent.parent_id);
  EXPECT_EQ(c.parent.flags, trace::known_flags);
  EXPECT_EQ(c.tracestate, "k=v");
}

TEST(Trace, StartAndChildSpansChangeOnlyTheCurrentContext) {
  ctxvars::context outer;
  outer.run([] {
    EXPECT_FALSE(trace::current());
    auto root = trace::start_trace();
    const auto r = *trace::current();
    ctxvars::context inner = ctxvars::copy_context();
    inner.run([&] {
      auto span = trace::start_span();
      EXPECT_EQ(trace::current()->parent.trace_id, r.parent.trace_id);
      EXPECT_NE(trace::current()->parent.parent_id, r.parent.parent_id);
    });
    EXPECT_EQ(*trace::current(), r);  // the copy's span stayed in the copy
    auto span = trace::start_span();
    ctxvars::trace_var().reset(span);
    EXPECT_EQ(*trace::current(), r);
  });
  ctxvars::context().run([] {
    auto s = trace::start_span();  // no trace yet: a new one
    EXPECT_TRUE(trace::current()->parent.random());
  });
}

}  // namespace
