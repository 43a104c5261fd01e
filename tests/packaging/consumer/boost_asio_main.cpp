#include <ctxvars/boost_asio.hpp>

#include <boost/asio.hpp>

#include <cstdio>

ctxvars::context_var<int> request_id("request_id", 0);

boost::asio::awaitable<int> handler() { co_return request_id.get(); }

int main() {
  boost::asio::io_context io;
  auto t = request_id.set(7);
  auto fut = ctxvars::boost_asio::co_spawn(io, handler(), boost::asio::use_future);
  request_id.reset(t);
  io.run();
  const int got = fut.get();
  std::printf("consumer_boost_asio: %d\n", got);
  return got == 7 ? 0 : 1;
}
