#include <ctxvars/asio.hpp>

#include <asio.hpp>

#include <cstdio>

ctxvars::context_var<int> request_id("request_id", 0);

asio::awaitable<int> handler() { co_return request_id.get(); }

int main() {
  asio::io_context io;
  auto t = request_id.set(7);
  auto fut = ctxvars::asio::co_spawn(io, handler(), asio::use_future);
  request_id.reset(t);
  io.run();
  const int got = fut.get();
  std::printf("consumer_asio: %d\n", got);
  return got == 7 ? 0 : 1;
}
