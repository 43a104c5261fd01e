// `namespace asio = boost::asio;` — a common Boost idiom — with ctxvars on a
// machine that also has standalone Asio installed, with no macro: no ctxvars
// header declares anything in ::asio unless the file includes standalone Asio,
// in either include order (Boost first here, ctxvars
// first in boost_asio_alias_macro.cpp). Each file compiling is half the test;
// the other half: bind keeps the handler's strand, and the adapter works.
#include <boost/asio.hpp>
namespace asio = boost::asio;

#include "ctxvars/boost_asio.hpp"
#include "ctxvars/ctxvars.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

bool alias_macro_file_keeps_the_strand();  // boost_asio_alias_macro.cpp

namespace {

ctxvars::context_var<int> id("id", -1);

TEST(BoostAsioAlias, BoostFirstThenCtxvarsKeepsTheStrandAndTheContext) {
  asio::io_context io;
  auto strand = asio::make_strand(io);
  std::atomic<int> on_strand{0}, seen{-1};
  ctxvars::context c;
  c.run([&] { (void)id.set(7); });
  c.run([&] {
    asio::post(io, ctxvars::bind(asio::bind_executor(strand, [&] {
                 on_strand = strand.running_in_this_thread() ? 1 : 0;
                 seen = id.get();
               })));
  });
  int in_task = -1;
  ctxvars::boost_asio::co_spawn(io, c, [&]() -> asio::awaitable<void> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    in_task = id.get();
  }, asio::detached);
  std::vector<std::thread> ts;
  for (int i = 0; i < 2; ++i) ts.emplace_back([&] { io.run(); });
  for (auto& t : ts) t.join();
  EXPECT_EQ(on_strand.load(), 1);
  EXPECT_EQ(seen.load(), 7);
  EXPECT_EQ(in_task, 7);
}

TEST(BoostAsioAlias, TheMacroLetsCtxvarsComeFirst) { EXPECT_TRUE(alias_macro_file_keeps_the_strand()); }

}  // namespace
