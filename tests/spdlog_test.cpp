#include "ctxvars/spdlog.hpp"

#include <gtest/gtest.h>
#include <spdlog/async.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ctxvars/ctxvars.hpp"

namespace {

struct opaque {};

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

struct SyncLogger : ::testing::Test {
  std::ostringstream os;
  std::shared_ptr<spdlog::logger> log =
      std::make_shared<spdlog::logger>("sync", std::make_shared<spdlog::sinks::ostream_sink_st>(os));
};

TEST_F(SyncLogger, FlagPrintsEveryFormattableVariableOfTheCurrentContext) {
  ctxvars::context_var<std::string> request("request_id");
  ctxvars::context_var<std::string> tenant("tenant");
  ctxvars::context_var<opaque> o("opaque");
  log->set_formatter(ctxvars::spdlog::formatter("%v [%&]"));
  ctxvars::context().run([&] {
    auto a = request.scoped_set("c1-r2");
    auto b = tenant.scoped_set("acme corp");
    auto c = o.scoped_set(opaque{});
    log->info("charged");
  });
  log->info("outside");
  EXPECT_EQ(lines_of(os.str()), (std::vector<std::string>{"charged [request_id=c1-r2 tenant=\"acme corp\"]",
                                                           "outside []"}));
}

TEST_F(SyncLogger, FlagWithNamesPrintsThoseInTheGivenOrderSkippingAbsentOnes) {
  ctxvars::context_var<std::string> request("request_id");
  ctxvars::context_var<std::string> tenant("tenant");
  ctxvars::context_var<int> other("other");
  log->set_formatter(ctxvars::spdlog::formatter("%v %&", {"tenant", "missing", "request_id"}));
  ctxvars::context().run([&] {
    auto a = request.scoped_set("r \"1\"");
    auto b = tenant.scoped_set("t");
    auto c = other.scoped_set(5);
    log->info("m");
  });
  EXPECT_EQ(lines_of(os.str()), std::vector<std::string>{"m tenant=t request_id=\"r \\\"1\\\"\""});
}

TEST_F(SyncLogger, AnyFlagCharacterCanBeChosen) {
  ctxvars::context_var<int> n("n");
  log->set_formatter(ctxvars::spdlog::formatter("%v|%*", {}, '*'));
  ctxvars::context().run([&] {
    auto a = n.scoped_set(1);
    log->warn("x");
  });
  EXPECT_EQ(os.str(), "x|n=1\n");
}

// An async logger formats on its worker thread: the wrapper must capture each
// caller's context at the call.
TEST(AsyncLogger, EachLineShowsItsCallersContextNotTheWorkersOrAnotherCallers) {
  std::ostringstream os;
  auto tp = std::make_shared<spdlog::details::thread_pool>(1024, 2);
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(os);
  auto async = std::make_shared<spdlog::async_logger>("async", sink, tp, spdlog::async_overflow_policy::block);
  auto log = ctxvars::spdlog::capture_context(async);
  log->set_formatter(ctxvars::spdlog::formatter("%v %&"));
  ctxvars::context_var<int> caller("caller");
  ctxvars::context_var<int> line("line");
  constexpr int threads = 4, per_thread = 500;
  {
    std::vector<std::jthread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        auto c = caller.scoped_set(t);
        for (int i = 0; i < per_thread; ++i) {
          auto l = line.scoped_set(i);
          log->info("t{} i{}", t, i);
        }
      });
  }
  log->flush();
  tp.reset();
  async.reset();
  log.reset();
  const auto lines = lines_of(os.str());
  ASSERT_EQ(lines.size(), std::size_t{threads * per_thread});
  int bad = 0;
  for (const auto& l : lines) {
    int t = -1, i = -1, c = -2, n = -2;
    if (std::sscanf(l.c_str(), "t%d i%d caller=%d line=%d", &t, &i, &c, &n) != 4 || t != c || i != n) ++bad;
  }
  EXPECT_EQ(bad, 0) << lines.front();
}

TEST(AsyncLogger, MessageTextAndPlainPatternAreUntouchedByTheCapture) {
  std::ostringstream os;
  auto tp = std::make_shared<spdlog::details::thread_pool>(64, 1);
  auto async = std::make_shared<spdlog::async_logger>(
      "async2", std::make_shared<spdlog::sinks::ostream_sink_mt>(os), tp);
  auto log = ctxvars::spdlog::capture_context(async);
  log->set_pattern("%n:%l:%v");
  ctxvars::context_var<int> n("n");
  ctxvars::context().run([&] {
    auto a = n.scoped_set(1);
    log->error("hello {}", "world");
  });
  log->flush();
  tp.reset();
  EXPECT_EQ(os.str(), "async2:error:hello world\n");
}

TEST(AsyncLogger, WrapperLevelFiltersAtTheCall) {
  std::ostringstream os;
  auto tp = std::make_shared<spdlog::details::thread_pool>(64, 1);
  auto async = std::make_shared<spdlog::async_logger>(
      "async3", std::make_shared<spdlog::sinks::ostream_sink_mt>(os), tp);
  async->set_level(spdlog::level::warn);
  auto log = ctxvars::spdlog::capture_context(async);
  log->set_pattern("%v");
  log->info("dropped");
  log->warn("kept");
  log->flush();
  tp.reset();
  EXPECT_EQ(os.str(), "kept\n");
}

// Records each formatted line, each flush, and the thread that wrote.
class recording_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> events;
  std::vector<std::thread::id> writers;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t b;
    formatter_->format(msg, b);
    events.emplace_back(b.data(), b.size() - 1);  // without the newline
    writers.push_back(std::this_thread::get_id());
  }
  void flush_() override { events.emplace_back("<flush>"); }
};

TEST_F(SyncLogger, NullCStringPrintsAsNullInTheFlag) {
  ctxvars::context_var<const char*> user("user");
  log->set_formatter(ctxvars::spdlog::formatter("%v %&"));
  ctxvars::context().run([&] {
    auto a = user.scoped_set(nullptr);
    log->info("m");
  });
  EXPECT_EQ(os.str(), "m user=(null)\n");
}

TEST(AsyncLogger, NullCStringPrintsAsNullInTheCapturedFields) {
  auto tp = std::make_shared<spdlog::details::thread_pool>(64, 1);
  auto sink = std::make_shared<recording_sink>();
  auto log = ctxvars::spdlog::capture_context(std::make_shared<spdlog::async_logger>("a", sink, tp));
  log->set_formatter(ctxvars::spdlog::formatter("%v %&"));
  ctxvars::context_var<const char*> user("user");
  ctxvars::context().run([&] {
    auto a = user.scoped_set(nullptr);
    log->info("m");
  });
  tp.reset();  // the last owner: drains the queue and joins the worker
  EXPECT_EQ(sink->events, std::vector<std::string>{"m user=(null)"});
}

TEST(AsyncLogger, FlushOnLevelFlushesRightAfterEachLineAtThatLevel) {
  auto tp = std::make_shared<spdlog::details::thread_pool>(64, 1);
  auto sink = std::make_shared<recording_sink>();
  auto log = ctxvars::spdlog::capture_context(std::make_shared<spdlog::async_logger>("a", sink, tp));
  log->set_pattern("%v");
  log->flush_on(spdlog::level::warn);
  log->info("i");
  log->warn("w");
  log->info("j");
  log->error("e");
  tp.reset();
  EXPECT_EQ(sink->events, (std::vector<std::string>{"i", "w", "<flush>", "j", "e", "<flush>"}));
}

TEST(AsyncLogger, FlushOnWorksWhenTheWrappedLoggerIsSynchronous) {
  auto sink = std::make_shared<recording_sink>();
  auto log = ctxvars::spdlog::capture_context(std::make_shared<spdlog::logger>("s", sink));
  log->set_pattern("%v");
  log->flush_on(spdlog::level::err);
  log->warn("w");
  log->error("e");
  EXPECT_EQ(sink->events, (std::vector<std::string>{"w", "e", "<flush>"}));
}

TEST(AsyncLogger, ACloneCapturesAndLogsThroughTheWorkerToo) {
  auto tp = std::make_shared<spdlog::details::thread_pool>(64, 1);
  auto sink = std::make_shared<recording_sink>();
  auto log = ctxvars::spdlog::capture_context(std::make_shared<spdlog::async_logger>("a", sink, tp));
  log->set_formatter(ctxvars::spdlog::formatter("%n %v %&"));
  auto twin = log->clone("b");
  ctxvars::context_var<int> n("n");
  ctxvars::context().run([&] {
    auto a = n.scoped_set(3);
    twin->info("x");
  });
  log->info("y");
  tp.reset();
  ASSERT_EQ(sink->events, (std::vector<std::string>{"b x n=3", "a y "}));
  // Through the async logger's worker, never written on the caller's thread.
  EXPECT_NE(sink->writers[0], std::this_thread::get_id());
  EXPECT_NE(sink->writers[1], std::this_thread::get_id());
}

TEST(AsyncLogger, ABacktraceDumpNeverShowsTheDumpingCallersContext) {
  auto tp = std::make_shared<spdlog::details::thread_pool>(64, 1);
  auto sink = std::make_shared<recording_sink>();
  auto log = ctxvars::spdlog::capture_context(std::make_shared<spdlog::async_logger>("a", sink, tp));
  log->set_formatter(ctxvars::spdlog::formatter("%v [%&]"));
  log->enable_backtrace(4);
  ctxvars::context_var<std::string> request("request");
  ctxvars::context().run([&] {
    auto a = request.scoped_set("r1");
    log->debug("stored");  // below the level: only in the backtrace
  });
  ctxvars::context().run([&] {
    auto a = request.scoped_set("r2");
    log->dump_backtrace();
    log->info("after");
  });
  tp.reset();
  ASSERT_EQ(sink->events.size(), 4u);
  EXPECT_EQ(sink->events[1], "stored []");
  EXPECT_EQ(sink->events[3], "after [request=r2]");
}

}  // namespace
