#include "ctxvars/http.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/format.hpp"

namespace {

namespace h = ctxvars::http;

ctxvars::context_var<std::string> request_id("request_id");
ctxvars::context_var<std::string> tenant("tenant");
ctxvars::context_var<int> server_only("server_only");

struct Registered : ::testing::Test {
  Registered() {
    ctxvars::registry::global().add(request_id);
    ctxvars::registry::global().add(tenant);
  }
  ~Registered() override {
    ctxvars::registry::global().remove(request_id);
    ctxvars::registry::global().remove(tenant);
  }
  const h::tcp::endpoint local{boost::asio::ip::make_address("127.0.0.1"), 0};
};

// Answers with the fields of the context it runs in.
h::response echo_context(const h::request& req) {
  h::response res(h::bhttp::status::ok, req.version());
  res.body() = ctxvars::to_string(ctxvars::copy_context());
  auto t = ctxvars::trace_var().try_get();
  if (t) res.set("x-trace-id", t->parent.trace_id_hex());
  res.prepare_payload();
  return res;
}

TEST_F(Registered, HandlerRunsInTheContextTheClientsHeadersCarry) {
  h::server srv(local, echo_context);
  h::client cli(srv.endpoint());
  ctxvars::context().run([&] {
    auto a = request_id.scoped_set("c1-r0");
    auto b = tenant.scoped_set("acme corp");
    ctxvars::trace_var().set({ctxvars::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ""});
    auto res = cli.get("/");
    EXPECT_EQ(res.result(), h::bhttp::status::ok);
    EXPECT_EQ(res.body(), "request_id=c1-r0 tenant=\"acme corp\" traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    EXPECT_EQ(res["x-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  });
  auto res = cli.get("/");  // no context: the handler sees an empty one
  EXPECT_EQ(res.body(), "");
}

TEST_F(Registered, UnregisteredVariablesStayInTheClientProcess) {
  h::server srv(local, echo_context);
  h::client cli(srv.endpoint());
  ctxvars::context().run([&] {
    auto a = server_only.scoped_set(1);
    auto b = tenant.scoped_set("t");
    EXPECT_EQ(cli.get("/").body(), "tenant=t");
  });
}

TEST_F(Registered, MalformedHeadersGet400AndTheHandlerIsNotCalled) {
  std::atomic<int> calls{0};
  h::server srv(local, [&](const h::request& r) {
    ++calls;
    return echo_context(r);
  });
  boost::asio::io_context io;
  for (auto [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"baggage", "tenant=%zz"}, {"traceparent", "00-nothex"}, {"baggage", std::string(9000, 'a')}}) {
    h::tcp::socket sock(io);
    sock.connect(srv.endpoint());
    h::request req(h::bhttp::verb::get, "/", 11);
    req.set(name, value);
    req.prepare_payload();
    h::bhttp::write(sock, req);
    boost::beast::flat_buffer buf;
    h::response res;
    h::bhttp::read(sock, buf, res);
    EXPECT_EQ(res.result(), h::bhttp::status::bad_request) << name;
    EXPECT_NE(res.body().find("invalid " + name + " header"), std::string::npos) << res.body();
  }
  {
    h::tcp::socket sock(io);
    sock.connect(srv.endpoint());
    h::request req(h::bhttp::verb::get, "/", 11);
    req.insert("baggage", "tenant=a");
    req.insert("baggage", "tenant=b");
    req.prepare_payload();
    h::bhttp::write(sock, req);
    boost::beast::flat_buffer buf;
    h::response res;
    h::bhttp::read(sock, buf, res);
    EXPECT_EQ(res.result(), h::bhttp::status::bad_request);
    EXPECT_NE(res.body().find("more than once"), std::string::npos) << res.body();
  }
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(Registered, ConcurrentClientsEachSeeOnlyTheirOwnValues) {
  h::server srv(local, echo_context);
  constexpr int clients = 6, requests = 40;
  std::atomic<int> wrong{0};
  {
    std::vector<std::jthread> ts;
    for (int c = 0; c < clients; ++c)
      ts.emplace_back([&, c] {
        h::client cli(srv.endpoint());
        auto t = tenant.scoped_set("t" + std::to_string(c));
        for (int r = 0; r < requests; ++r) {
          auto id = request_id.scoped_set("c" + std::to_string(c) + "-r" + std::to_string(r));
          const std::string want = "request_id=c" + std::to_string(c) + "-r" + std::to_string(r) + " tenant=t" +
                                   std::to_string(c);
          if (cli.get("/").body() != want) ++wrong;
        }
      });
  }
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(srv.served(), clients * requests);
}

TEST_F(Registered, InjectReplacesStaleHeadersAndRemovesAbsentOnes) {
  h::request req(h::bhttp::verb::get, "/", 11);
  req.set("baggage", "stale=1");
  req.set("traceparent", "stale");
  ctxvars::context().run([&] {
    auto a = tenant.scoped_set("x");
    h::inject(req);
  });
  EXPECT_EQ(req["baggage"], "tenant=x");
  EXPECT_EQ(req.count("traceparent"), 0u);
  auto c = h::extract(req, ctxvars::context());
  EXPECT_EQ(c.get(tenant), "x");
}

TEST_F(Registered, StoppingAServerWithOpenConnectionsReturns) {
  auto srv = std::make_unique<h::server>(local, echo_context);
  h::client a(srv->endpoint()), b(srv->endpoint());
  a.get("/");
  srv->stop();
  EXPECT_THROW(a.get("/"), boost::system::system_error);
}

}  // namespace

namespace {
TEST_F(Registered, AHandlerThatThrowsGets500AndTheServerGoesOn) {
  h::server srv(local, [](const h::request& req) -> h::response {
    if (req.target() == "/boom") throw std::runtime_error("kaput");
    return echo_context(req);
  });
  h::client cli(srv.endpoint());
  auto res = cli.get("/boom");
  EXPECT_EQ(res.result(), h::bhttp::status::internal_server_error);
  EXPECT_NE(res.body().find("kaput"), std::string::npos);
  EXPECT_EQ(cli.get("/").result(), h::bhttp::status::ok);
}
}  // namespace
