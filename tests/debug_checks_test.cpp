// Built with CTXVARS_DEBUG_CHECKS=1 (tests/CMakeLists.txt: its own copy of the
// core), with standalone Asio when CTXVARS_TEST_ASIO is defined.
#include "ctxvars/debug.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/format.hpp"
#include "ctxvars/task.hpp"
#include "ctxvars/thread_pool.hpp"

#ifdef CTXVARS_TEST_ASIO
#include <asio.hpp>

#include "ctxvars/asio.hpp"
#endif

static_assert(ctxvars::debug::enabled, "this test is built with CTXVARS_DEBUG_CHECKS=1");

namespace {

struct report {
  std::string variable;
  std::string file;
  unsigned line;
  std::string inside;
};

// Collects reports instead of printing them (installed per test).
struct collected {
  static std::mutex m;
  static std::vector<report> reports;
  static void handler(const ctxvars::debug::leak_report& r) {
    std::lock_guard<std::mutex> lk(m);
    reports.push_back({std::string(r.variable), r.where.file_name(), static_cast<unsigned>(r.where.line()),
                       std::string(r.inside)});
  }
};
std::mutex collected::m;
std::vector<report> collected::reports;

struct DebugChecks : ::testing::Test {
  void SetUp() override {
    collected::reports.clear();
    prev = ctxvars::debug::set_leak_handler(&collected::handler);
  }
  void TearDown() override { ctxvars::debug::set_leak_handler(prev); }
  std::vector<report> reports() {
    std::lock_guard<std::mutex> lk(collected::m);
    return collected::reports;
  }
  ctxvars::debug::leak_handler prev = nullptr;
};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

ctxvars::context_var<int> tenant("tenant", 0);
std::atomic<unsigned> leaky_line{0};  // written by both pool threads
void leaky_job(int v) {
  tenant.set(v); leaky_line = __LINE__;
}

TEST_F(DebugChecks, ASetIntoTheThreadsOwnContextInsideAPoolJobIsReportedOncePerCallSite) {
  {
    ctxvars::thread_pool pool(2);
    for (int i = 0; i < 5; ++i) pool.post([i] { leaky_job(i); });
  }  // joins
  const auto r = reports();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].variable, "tenant");
  EXPECT_TRUE(ends_with(r[0].file, "debug_checks_test.cpp")) << r[0].file;
  EXPECT_EQ(r[0].line, leaky_line.load());
  EXPECT_EQ(r[0].inside, "thread_pool job");
}

TEST_F(DebugChecks, JobsThatRunInTheirOwnContextAreNotReported) {
  {
    ctxvars::thread_pool pool(2);
    for (int i = 0; i < 5; ++i) pool.post(ctxvars::bind([i] { tenant.set(i); }));
    for (int i = 0; i < 5; ++i) pool.post([i] { ctxvars::context().run([i] { tenant.set(i); }); });
    for (int i = 0; i < 5; ++i) pool.post([] { (void)tenant.get(); });
  }
  EXPECT_TRUE(reports().empty());
}

TEST_F(DebugChecks, ASetOnAPlainThreadOutsideAnyJobIsNotReported) {
  std::thread([] { tenant.set(1); }).join();
  tenant.set(2);
  EXPECT_TRUE(reports().empty());
}

TEST_F(DebugChecks, AJobScopeOfYourOwnLoopIsCheckedToo) {
  std::thread([] {
    ctxvars::debug::job_scope job("my loop job");
    tenant.set(1);
  }).join();
  const auto r = reports();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].inside, "my loop job");
}

TEST(DebugChecksDefault, TheDefaultHandlerPrintsOneLineWithNameAndFileLineToStderr) {
  ctxvars::context_var<std::string> user("user");
  ::testing::internal::CaptureStderr();
  unsigned line = 0;
  std::thread([&] {
    ctxvars::debug::job_scope job("test job");
    for (int i = 0; i < 3; ++i) {
      user.set("u"); line = __LINE__;
    }
  }).join();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find("'user'"), std::string::npos) << err;
  EXPECT_NE(err.find("debug_checks_test.cpp:" + std::to_string(line)), std::string::npos) << err;
  EXPECT_NE(err.find("test job"), std::string::npos) << err;
}

TEST(DebugChecksProvenance, ContextPrintersShowWhereEachValueWasSet) {
  ctxvars::context_var<std::string> request("request_id");
  ctxvars::context_var<int> n("n");
  ctxvars::context c;
  unsigned l1 = 0, l2 = 0;
  c.run([&] {
    request.set("r1"); l1 = __LINE__;
    auto s = n.scoped_set(5); l2 = __LINE__;
    const std::string text = ctxvars::to_string(ctxvars::copy_context());
    const std::string file = ctxvars::debug::source_location::current().file_name();
    EXPECT_EQ(text, "n=5 n.set_at=" + file + ":" + std::to_string(l2) + " request_id=r1 request_id.set_at=" + file +
                        ":" + std::to_string(l1));
    // The logging path prints the values only.
    std::string fields;
    ctxvars::append_current_fields(fields);
    EXPECT_EQ(fields, "n=5 request_id=r1");
  });
  // An entry too; the value's origin survives a reset to it and a copy.
  c.run([&] {
    auto t = request.set("r2");
    request.reset(t);
  });
  for (auto e : c.copy()) EXPECT_TRUE(ends_with(ctxvars::to_string(e), ":" + std::to_string(l1))) << ctxvars::to_string(e);
}

TEST(DebugChecksTasks, WithoutTasksTheDumpIsEmpty) {
  std::ostringstream os;
  ctxvars::debug::dump_tasks(os);
  EXPECT_EQ(os.str(), "");
}

// Suspends until the test resumes it (from the test's thread).
struct gate {
  std::atomic<bool> parked{false};
  std::coroutine_handle<> h;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> c) noexcept {
    h = c;
    parked = true;
  }
  void await_resume() const noexcept {}
};

ctxvars::context_var<std::string> job_name("job");

ctxvars::task<int> parked_task(ctxvars::thread_pool& pool, gate& g) {
  co_await pool.schedule();
  job_name.set("nightly");
  co_await g;
  co_return 1;
}

// Polls `pred` up to 60 s (the machine may be loaded).
template <class P>
bool eventually(P pred) {
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60); std::chrono::steady_clock::now() < end;) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

std::string dump() {
  std::ostringstream os;
  ctxvars::debug::dump_tasks(os);
  return os.str();
}

TEST(DebugChecksTasks, ASuspendedSpawnedTaskIsDumpedWithItsValuesAndGoneOnceFinished) {
  ctxvars::thread_pool pool(1);
  gate g;
  auto s = ctxvars::spawn(pool, parked_task(pool, g));
  ASSERT_TRUE(eventually([&] { return g.parked.load(); }));
  std::string text;
  EXPECT_TRUE(eventually([&] {
    text = dump();
    return text.find("suspended") != std::string::npos;
  })) << text;
  EXPECT_NE(text.find("(task) suspended: job=nightly job.set_at="), std::string::npos) << text;
  g.h.resume();  // the rest runs here, in the task's context
  EXPECT_EQ(s.get(), 1);
  EXPECT_TRUE(eventually([&] { return dump().empty(); })) << dump();
}

#ifdef CTXVARS_TEST_ASIO

ctxvars::context_var<std::string> request_id("request_id");
std::atomic<unsigned> session_set_line{0};

// One request per connection: read the id, remember it, echo it back.
asio::awaitable<void> session(asio::ip::tcp::socket s) {
  char buf[32];
  const std::size_t n = co_await s.async_read_some(asio::buffer(buf), asio::use_awaitable);
  request_id.set(std::string(buf, n)); session_set_line = __LINE__;
  co_await asio::async_write(s, asio::buffer(buf, n), asio::use_awaitable);
}

// Accepts `count` connections; `correct`: each session in its own task
// context (ctxvars::asio::co_spawn); otherwise with plain asio::co_spawn, the
// mistake the checks are for.
asio::awaitable<void> server(asio::ip::tcp::acceptor& acceptor, bool correct, int count) {
  for (int i = 0; i < count; ++i) {
    asio::ip::tcp::socket s = co_await acceptor.async_accept(asio::use_awaitable);
    if (correct)
      ctxvars::asio::co_spawn(acceptor.get_executor(), session(std::move(s)), asio::detached);
    else
      asio::co_spawn(acceptor.get_executor(), session(std::move(s)), asio::detached);
  }
}

// Runs the server on its own thread, makes `count` requests from this one.
void serve_and_call(bool correct, int count) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  ctxvars::asio::co_spawn(io, server(acceptor, correct, count), asio::detached);
  std::thread loop([&] { io.run(); });
  for (int i = 0; i < count; ++i) {
    asio::io_context cio;
    asio::ip::tcp::socket c(cio);
    c.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    const std::string id = "r" + std::to_string(i);
    asio::write(c, asio::buffer(id));
    char back[32];
    const std::size_t n = asio::read(c, asio::buffer(back, id.size()));
    EXPECT_EQ(std::string(back, n), id);
  }
  loop.join();  // run() returns once the server and every session ended
}

TEST_F(DebugChecks, AServerThatSpawnsSessionsWithPlainCoSpawnIsReportedOnceWithNameAndLine) {
  serve_and_call(false, 4);
  const auto r = reports();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].variable, "request_id");
  EXPECT_TRUE(ends_with(r[0].file, "debug_checks_test.cpp")) << r[0].file;
  EXPECT_EQ(r[0].line, session_set_line.load());
  EXPECT_EQ(r[0].inside, "Asio handler");
}

// An Asio generator's body (issue 20) runs as a task in its own layer: its
// writes, on another io_context's thread, are checked and not reported.
asio::awaitable<void> id_source(ctxvars::asio::generator_yield<std::string> out) {
  for (int i = 0; i < 3; ++i) {
    request_id.set("gen-" + std::to_string(i));
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(1));
    co_await t.async_wait(asio::use_awaitable);
    co_await out.yield(request_id.get());
  }
}
asio::awaitable<void> pull_ids(asio::io_context& other, std::vector<std::string>& got) {
  ctxvars::asio::async_generator<std::string> g(other, [](auto out) { return id_source(std::move(out)); });
  while (std::optional<std::string> v = co_await g.next()) got.push_back(*v);
}

TEST_F(DebugChecks, AnAsioGeneratorsBodyWritesInItsLayerAndIsNotReported) {
  asio::io_context io, other;
  auto work = asio::make_work_guard(other);
  std::thread loop([&] { other.run(); });
  std::vector<std::string> got;
  ctxvars::asio::co_spawn(io, pull_ids(other, got), asio::detached);
  io.run();
  work.reset();
  loop.join();
  EXPECT_EQ(got, (std::vector<std::string>{"gen-0", "gen-1", "gen-2"}));
  EXPECT_TRUE(reports().empty());
}

TEST_F(DebugChecks, TheSameServerWithCtxvarsCoSpawnReportsNothing) {
  serve_and_call(true, 4);
  EXPECT_TRUE(reports().empty());
}

TEST(DebugChecksDefault, ACorrectServerPrintsNothingToStderr) {
  ::testing::internal::CaptureStderr();
  serve_and_call(true, 3);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

asio::awaitable<void> waiting_task(asio::steady_timer& t, std::atomic<bool>& set) {
  request_id.set("stuck-1");
  set = true;
  co_await t.async_wait(asio::use_awaitable);  // cancelled by the test
}

TEST(DebugChecksTasks, ASuspendedTaskIsDumpedWithItsIdStateAndValuesThenGoneWhenItEnds) {
  asio::io_context io;
  asio::steady_timer timer(io, std::chrono::steady_clock::time_point::max());
  std::atomic<bool> set{false};
  ctxvars::asio::co_spawn(io, waiting_task(timer, set), asio::detached);
  std::thread loop([&] { io.run(); });
  EXPECT_TRUE(eventually([&] { return set.load(); }));
  std::string text;
  EXPECT_TRUE(eventually([&] {
    text = dump();
    return text.find("suspended") != std::string::npos;
  })) << text;
  EXPECT_NE(text.find("(Asio co_spawn) suspended: request_id=stuck-1 request_id.set_at="), std::string::npos) << text;
  EXPECT_EQ(text.rfind("task ", 0), 0u) << text;
  asio::post(io, [&] { timer.cancel(); });
  loop.join();
  EXPECT_EQ(dump(), "");
}

#endif  // CTXVARS_TEST_ASIO

}  // namespace
