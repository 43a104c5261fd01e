// The Asio adapter's overhead, plain Asio vs ctxvars in the same process
// (run with --benchmark_enable_random_interleaving=true and repetitions so
// the two alternate):
//  - BM_AsioPost: 100 tasks x 200 `co_await post(...)` on one io_context
//    thread, each resumption reading one "request id": a thread_local with
//    asio::co_spawn (range 0), a context_var with ctxvars::asio::co_spawn (1).
//  - BM_AsioEcho: loopback TCP echo, 16 connections x 400 round trips of 64
//    bytes on one io_context thread; the server's connection tasks spawned
//    with asio::co_spawn (0) or ctxvars::asio::co_spawn (1), each request
//    reading the request id. Items = requests.
// `asio_bench --probe=post:0|post:1|echo:0|echo:1` runs one workload once
// (for callgrind instruction counts, see benchmarks/run.sh).
#include <benchmark/benchmark.h>

#include "baseline.hpp"

#include <ctxvars/asio.hpp>

#include <asio.hpp>
#include <array>
#include <cstring>
#include <string>

namespace {

using ctxvars_bench::BM_ThreadLocal_Read;
BENCHMARK(BM_ThreadLocal_Read);

ctxvars::context_var<int> rid("rid", 0);
constinit thread_local int tl_rid = 0;

int read_id(bool ctx) { return ctx ? rid.get() : tl_rid; }

// ---- post ping-pong -----------------------------------------------------------------

asio::awaitable<void> poster(int k, bool ctx) {
  auto ex = co_await asio::this_coro::executor;
  for (int i = 0; i < k; ++i) {
    co_await asio::post(ex, asio::use_awaitable);
    benchmark::DoNotOptimize(read_id(ctx));
  }
}

constexpr int post_tasks = 100, post_k = 200;

void post_workload(bool ctx) {
  asio::io_context io(1);
  for (int i = 0; i < post_tasks; ++i) {
    if (ctx)
      ctxvars::asio::co_spawn(io, poster(post_k, true), asio::detached);
    else
      asio::co_spawn(io, poster(post_k, false), asio::detached);
  }
  io.run();
}

void BM_AsioPost(benchmark::State& state) {
  const bool ctx = state.range(0) == 1;
  for (auto _ : state) post_workload(ctx);
  state.SetItemsProcessed(state.iterations() * post_tasks * post_k);
  state.SetLabel(ctx ? "ctxvars::asio::co_spawn, context_var" : "asio::co_spawn, thread_local");
}
BENCHMARK(BM_AsioPost)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// ---- bound hop: post through bind_executor(strand, use_awaitable) -----------------
// The path issue 17 made follow the task: the completion goes through another
// executor (a strand of the same io_context, one thread), not the task's own.

asio::awaitable<void> hopper(int k, bool ctx) {
  auto strand = asio::make_strand(co_await asio::this_coro::executor);
  for (int i = 0; i < k; ++i) {
    co_await asio::post(asio::bind_executor(strand, asio::use_awaitable));
    benchmark::DoNotOptimize(read_id(ctx));
  }
}

void hop_workload(bool ctx) {
  asio::io_context io(1);
  for (int i = 0; i < post_tasks; ++i) {
    if (ctx)
      ctxvars::asio::co_spawn(io, hopper(post_k, true), asio::detached);
    else
      asio::co_spawn(io, hopper(post_k, false), asio::detached);
  }
  io.run();
}

void BM_AsioBoundHop(benchmark::State& state) {
  const bool ctx = state.range(0) == 1;
  for (auto _ : state) hop_workload(ctx);
  state.SetItemsProcessed(state.iterations() * post_tasks * post_k);
  state.SetLabel(ctx ? "ctxvars::asio::co_spawn, context_var" : "asio::co_spawn, thread_local");
}
BENCHMARK(BM_AsioBoundHop)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// ---- loopback TCP echo ------------------------------------------------------------------

constexpr int echo_conns = 16, echo_trips = 400;
constexpr std::size_t msg_size = 64;

asio::awaitable<void> echo_session(asio::ip::tcp::socket s, bool ctx) {
  std::array<char, msg_size> buf;
  for (int i = 0; i < echo_trips; ++i) {
    co_await asio::async_read(s, asio::buffer(buf), asio::use_awaitable);
    benchmark::DoNotOptimize(read_id(ctx));
    co_await asio::async_write(s, asio::buffer(buf), asio::use_awaitable);
  }
}

asio::awaitable<void> acceptor_loop(asio::ip::tcp::acceptor& acc, bool ctx) {
  for (int c = 0; c < echo_conns; ++c) {
    auto s = co_await acc.async_accept(asio::use_awaitable);
    s.set_option(asio::ip::tcp::no_delay(true));
    if (ctx)
      ctxvars::asio::co_spawn(acc.get_executor(), echo_session(std::move(s), true), asio::detached);
    else
      asio::co_spawn(acc.get_executor(), echo_session(std::move(s), false), asio::detached);
  }
}

asio::awaitable<void> echo_client(asio::ip::tcp::endpoint ep) {
  asio::ip::tcp::socket s(co_await asio::this_coro::executor);
  co_await s.async_connect(ep, asio::use_awaitable);
  s.set_option(asio::ip::tcp::no_delay(true));
  std::array<char, msg_size> out{}, in{};
  std::memset(out.data(), 'x', out.size());
  for (int i = 0; i < echo_trips; ++i) {
    co_await asio::async_write(s, asio::buffer(out), asio::use_awaitable);
    co_await asio::async_read(s, asio::buffer(in), asio::use_awaitable);
  }
}

void echo_workload(bool ctx) {
  asio::io_context io(1);
  asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  const auto ep = acc.local_endpoint();
  asio::co_spawn(io, acceptor_loop(acc, ctx), asio::detached);
  for (int c = 0; c < echo_conns; ++c) asio::co_spawn(io, echo_client(ep), asio::detached);
  io.run();
}

void BM_AsioEcho(benchmark::State& state) {
  const bool ctx = state.range(0) == 1;
  for (auto _ : state) echo_workload(ctx);
  state.SetItemsProcessed(state.iterations() * echo_conns * echo_trips);
  state.SetLabel(ctx ? "ctxvars::asio::co_spawn sessions" : "asio::co_spawn sessions");
}
BENCHMARK(BM_AsioEcho)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strncmp(argv[1], "--probe=", 8) == 0) {
    const std::string w = argv[1] + 8;
    if (w == "post:0" || w == "post:1") post_workload(w.back() == '1');
    else if (w == "echo:0" || w == "echo:1") echo_workload(w.back() == '1');
    else if (w != "none") return 2;
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
