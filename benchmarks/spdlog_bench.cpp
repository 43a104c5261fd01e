// A log call with and without the context flag (ctxvars/spdlog.hpp), next to
// the raw thread_local baseline and a hand-written flag reading two
// thread_local strings (what people write today), all in the same run.
// Sync logger to a sink that formats each line and drops it: the cost
// measured is formatting, not I/O.
#include <ctxvars/spdlog.hpp>

#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "baseline.hpp"

namespace {

ctxvars::context_var<std::string> request("request_id");
ctxvars::context_var<std::string> tenant("tenant");
thread_local std::string tl_request, tl_tenant;

class tl_flag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    dest.append(std::string_view("request_id="));
    dest.append(tl_request);
    dest.append(std::string_view(" tenant="));
    dest.append(tl_tenant);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<tl_flag>(); }
};

// Formats every message (spdlog's null_sink would skip the formatter).
class formatting_null_sink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    benchmark::DoNotOptimize(buf.data());
  }
  void flush_() override {}
};

std::shared_ptr<spdlog::logger> make_logger(std::unique_ptr<spdlog::formatter> f) {
  auto l = std::make_shared<spdlog::logger>("bench", std::make_shared<formatting_null_sink>());
  l->set_formatter(std::move(f));
  return l;
}

template <class F>
void in_request(F&& f) {
  ctxvars::context().run([&] {
    auto a = request.scoped_set("c22-r0");
    auto b = tenant.scoped_set("acme");
    tl_request = "c22-r0";
    tl_tenant = "acme";
    f();
  });
}

void BM_Log_NoFlag(benchmark::State& state) {
  auto log = make_logger(std::make_unique<spdlog::pattern_formatter>("[%l] %v"));
  in_request([&] {
    for (auto _ : state) log->info("charged {} cents", 1234);
  });
}
BENCHMARK(BM_Log_NoFlag);

void BM_Log_ThreadLocalFlag(benchmark::State& state) {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<tl_flag>('&').set_pattern("[%l] %v %&");
  auto log = make_logger(std::move(f));
  in_request([&] {
    for (auto _ : state) log->info("charged {} cents", 1234);
  });
}
BENCHMARK(BM_Log_ThreadLocalFlag);

void BM_Log_ContextFlagAll(benchmark::State& state) {
  auto log = make_logger(ctxvars::spdlog::formatter("[%l] %v %&"));
  in_request([&] {
    for (auto _ : state) log->info("charged {} cents", 1234);
  });
}
BENCHMARK(BM_Log_ContextFlagAll);

void BM_Log_ContextFlagChosen(benchmark::State& state) {
  auto log = make_logger(ctxvars::spdlog::formatter("[%l] %v %&", {"request_id", "tenant"}));
  in_request([&] {
    for (auto _ : state) log->info("charged {} cents", 1234);
  });
}
BENCHMARK(BM_Log_ContextFlagChosen);

}  // namespace

BENCHMARK(ctxvars_bench::BM_ThreadLocal_Read);
BENCHMARK_MAIN();
