// ctxvars::http::async_handle in coroutine sessions, with either Asio: the
// same source is built for standalone Asio (http_async_test) and for
// Boost.Asio (boost_http_async_test), see asio_test_net.hpp. Each session
// reads requests with its Asio, parses them with Beast's parser and awaits
// async_handle; clients are ctxvars::http::client on 127.0.0.1.
#include "ctxvars/http.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "asio_test_net.hpp"
#include "ctxvars/ctxvars.hpp"

namespace {

namespace h = ctxvars::http;

ctxvars::context_var<std::string> request_id("request_id");
ctxvars::context_var<std::string> tenant("tenant");
ctxvars::context_var<std::string> marker("marker");  // set by handlers only

// Reads the request's values before and after a suspension (a timer), sets
// `marker`, and reports what it saw.
net::awaitable<h::response> handler(const h::request& req) {
  if (req.target() == "/boom") throw std::runtime_error("kaput");
  const std::string before = request_id.get("?") + " " + tenant.get("?");
  marker.set("handler");
  net::steady_timer t(co_await net::this_coro::executor, std::chrono::milliseconds(1));
  co_await t.async_wait(net::use_awaitable);
  const std::string after = request_id.get("?") + " " + tenant.get("?");
  h::response res(h::bhttp::status::ok, 11);
  res.body() = before == after ? after : "changed: " + before + " / " + after;
  if (marker.get("") != "handler") res.body() += " (marker lost)";
  if (auto tr = ctxvars::trace_var().try_get()) res.set("x-traceparent", ctxvars::format_traceparent(tr->parent));
  co_return res;
}

// A keep-alive session: read, async_handle, write. Counts in `leaks` every
// time the handler's writes show in the session's own context.
net::awaitable<void> session(net::ip::tcp::socket s, std::atomic<int>* leaks) {
  std::string data;
  for (;;) {
    net_error_code ec;
    const std::size_t n = co_await net::async_read_until(s, net::dynamic_buffer(data), "\r\n\r\n",
                                                         net::redirect_error(net::use_awaitable, ec));
    if (ec) break;
    h::bhttp::request_parser<h::bhttp::string_body> p;
    p.eager(true);
    boost::beast::error_code pec;
    p.put(boost::asio::const_buffer(data.data(), n), pec);
    data.erase(0, n);
    if (pec || !p.is_done()) break;
    const h::request req = p.release();
    h::response res;
    try {
      res = co_await h::async_handle(req, handler);
    } catch (const std::exception& e) {
      res = h::response(h::bhttp::status::internal_server_error, 11);
      res.body() = e.what();
    }
    if (marker.try_get()) ++*leaks;
    res.keep_alive(true);
    res.prepare_payload();
    std::ostringstream os;
    os << res;
    const std::string out = os.str();
    co_await net::async_write(s, net::buffer(out), net::redirect_error(net::use_awaitable, ec));
    if (ec) break;
  }
}

net::awaitable<void> listen(net::ip::tcp::acceptor a, std::atomic<int>* leaks) {
  for (;;) {
    net::ip::tcp::socket s = co_await a.async_accept(net::use_awaitable);
    cx::co_spawn(a.get_executor(), session(std::move(s), leaks), net::detached);
  }
}

struct AsyncHandle : ::testing::Test {
  net::io_context io;
  std::atomic<int> leaks{0};
  unsigned short port = 0;
  std::vector<std::thread> threads;

  AsyncHandle() {
    ctxvars::registry::global().add(request_id);
    ctxvars::registry::global().add(tenant);
    net::ip::tcp::acceptor a(io, net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
    cx::co_spawn(io, listen(std::move(a), &leaks), net::detached);
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { io.run(); });  // resumptions hop threads
  }
  ~AsyncHandle() override {
    io.stop();
    for (auto& t : threads) t.join();
    ctxvars::registry::global().remove(request_id);
    ctxvars::registry::global().remove(tenant);
  }
  h::tcp::endpoint endpoint() const { return {boost::asio::ip::make_address("127.0.0.1"), port}; }
};

TEST_F(AsyncHandle, EachRequestRunsInItsOwnContextAcrossSuspensionsAndNothingLeaksIntoTheSession) {
  constexpr int clients = 4, requests = 15;
  std::atomic<int> wrong{0};
  {
    std::vector<std::jthread> ts;
    for (int c = 0; c < clients; ++c)
      ts.emplace_back([&, c] {
        h::client cli(endpoint());
        auto t = tenant.scoped_set("t" + std::to_string(c));
        for (int r = 0; r < requests; ++r) {
          auto id = request_id.scoped_set("c" + std::to_string(c) + "-r" + std::to_string(r));
          if (cli.get("/").body() != "c" + std::to_string(c) + "-r" + std::to_string(r) + " t" + std::to_string(c))
            ++wrong;
        }
      });
  }
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(leaks.load(), 0);
}

TEST_F(AsyncHandle, TheHandlerJoinsTheCallersTraceOrStartsOne) {
  h::client cli(endpoint());
  ctxvars::context().run([&] {
    ctxvars::trace_var().set({ctxvars::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ""});
    const std::string tp(cli.get("/")["x-traceparent"]);
    EXPECT_EQ(tp.substr(0, 36), "00-4bf92f3577b34da6a3ce929d0e0e4736-");
  });
  const std::string fresh(cli.get("/")["x-traceparent"]);  // no trace: a new one, random flag set
  ASSERT_EQ(fresh.size(), 55u);
  EXPECT_EQ(fresh.substr(52), "-03");
}

TEST_F(AsyncHandle, AHandlersExceptionReachesTheSession) {
  h::client cli(endpoint());
  auto res = cli.get("/boom");
  EXPECT_EQ(res.result(), h::bhttp::status::internal_server_error);
  EXPECT_EQ(res.body(), "kaput");
  EXPECT_EQ(cli.get("/").result(), h::bhttp::status::ok);
  EXPECT_EQ(leaks.load(), 0);
}

}  // namespace
