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

// Answers with the fields of the context it runs in (the trace context,
// which every served request has, in headers of its own).
h::response echo_context(const h::request& req) {
  h::response res(h::bhttp::status::ok, req.version());
  std::string body = ctxvars::to_string(ctxvars::copy_context());
  const std::size_t tp = body.find("traceparent=");  // sorted by name: the last field
  if (tp != std::string::npos) body.erase(tp ? tp - 1 : 0);
  res.body() = body;
  auto t = ctxvars::trace_var().try_get();
  if (t) {
    res.set("x-trace-id", t->parent.trace_id_hex());
    res.set("x-traceparent", ctxvars::format_traceparent(t->parent));
    res.set("x-tracestate", t->tracestate);
  }
  res.prepare_payload();
  return res;
}

// Sends one request with the given header lines (repeats allowed) on a new connection.
h::response send_raw(const h::tcp::endpoint& ep, const std::vector<std::pair<std::string, std::string>>& headers) {
  boost::asio::io_context io;
  h::tcp::socket sock(io);
  sock.connect(ep);
  h::request req(h::bhttp::verb::get, "/", 11);
  for (auto& [name, value] : headers) req.insert(name, value);
  req.prepare_payload();
  h::bhttp::write(sock, req);
  boost::beast::flat_buffer buf;
  h::response res;
  h::bhttp::read(sock, buf, res);
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
    EXPECT_EQ(res.body(), "request_id=c1-r0 tenant=\"acme corp\"");
    // The call went out as a child span: the same trace, a new parent-id.
    EXPECT_EQ(res["x-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    const std::string tp(res["x-traceparent"]);
    EXPECT_EQ(tp.substr(0, 36), "00-4bf92f3577b34da6a3ce929d0e0e4736-");
    EXPECT_NE(tp.substr(36, 16), "00f067aa0ba902b7");
    EXPECT_EQ(tp.substr(52), "-01");
  });
  auto res = cli.get("/");  // no context: the handler sees an empty one, in a new trace
  EXPECT_EQ(res.body(), "");
  const std::string tp(res["x-traceparent"]);
  ASSERT_EQ(tp.size(), 55u);
  EXPECT_EQ(tp.substr(52), "-03");  // random and sampled
  EXPECT_NE(cli.get("/")["x-trace-id"], res["x-trace-id"]);
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

TEST_F(Registered, MalformedHeadersNeverRefuseTheRequestTheValidPartsAreKept) {
  std::atomic<int> calls{0}, reported{0};
  auto prev = ctxvars::on_malformed_header([&](const ctxvars::malformed_header&) { ++reported; });
  h::server srv(local, [&](const h::request& r) {
    ++calls;
    return echo_context(r);
  });
  for (auto [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"baggage", "tenant=%zz"}, {"traceparent", "00-nothex"}, {"baggage", std::string(9000, 'a')}}) {
    auto res = send_raw(srv.endpoint(), {{name, value}, {"baggage", "request_id=kept"}});
    EXPECT_EQ(res.result(), h::bhttp::status::ok) << name;
    EXPECT_EQ(res.body(), "request_id=kept") << name;
    EXPECT_EQ(res["x-traceparent"].size(), 55u) << name;
  }
  EXPECT_EQ(calls.load(), 3);
  EXPECT_EQ(reported.load(), 3);
  ctxvars::on_malformed_header(std::move(prev));
}

TEST_F(Registered, TwoBaggageHeadersAreCombined) {
  h::server srv(local, echo_context);
  auto res = send_raw(srv.endpoint(), {{"baggage", "tenant=a"}, {"baggage", "request_id=r1"}});
  EXPECT_EQ(res.result(), h::bhttp::status::ok);
  EXPECT_EQ(res.body(), "request_id=r1 tenant=a");
  // Duplicate keys: accepted, the last wins.
  EXPECT_EQ(send_raw(srv.endpoint(), {{"baggage", "tenant=a"}, {"baggage", "tenant=b"}}).body(), "tenant=b");
}

TEST_F(Registered, TwoTracestateHeadersAreCombinedAndABadOneKeepsTheTraceparent) {
  h::server srv(local, echo_context);
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto res = send_raw(srv.endpoint(), {{"traceparent", tp}, {"tracestate", "foo=1,bar=2"}, {"tracestate", "baz=3"}});
  EXPECT_EQ(res.result(), h::bhttp::status::ok);
  EXPECT_EQ(res["x-traceparent"], tp);
  EXPECT_EQ(res["x-tracestate"], "foo=1,bar=2,baz=3");
  res = send_raw(srv.endpoint(), {{"traceparent", tp}, {"tracestate", "foo=bar=baz"}});
  EXPECT_EQ(res.result(), h::bhttp::status::ok);
  EXPECT_EQ(res["x-traceparent"], tp);
  EXPECT_EQ(res["x-tracestate"], "");
}

TEST_F(Registered, AnAllZeroTraceIdStartsANewTraceAndKeepsTheBaggage) {
  h::server srv(local, echo_context);
  auto res = send_raw(srv.endpoint(), {{"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
                                       {"baggage", "tenant=t"}});
  EXPECT_EQ(res.result(), h::bhttp::status::ok);
  EXPECT_EQ(res.body(), "tenant=t");
  EXPECT_NE(res["x-trace-id"], std::string(32, '0'));
  EXPECT_EQ(res["x-traceparent"].substr(52), "-03");
  // Two traceparent headers: neither is trusted.
  res = send_raw(srv.endpoint(), {{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
                                  {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"}});
  EXPECT_NE(res["x-trace-id"].substr(0, 31), "4bf92f3577b34da6a3ce929d0e0e473");
}

TEST_F(Registered, ATraceparentInBaggageIsNotTheRequestsTraceContext) {
  ctxvars::registry::global().add(ctxvars::trace_var());
  h::server srv(local, echo_context);
  auto res = send_raw(srv.endpoint(), {{"baggage", "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}});
  ctxvars::registry::global().remove(ctxvars::trace_var());
  EXPECT_EQ(res.result(), h::bhttp::status::ok);
  EXPECT_NE(res["x-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
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
  EXPECT_EQ(req.count("traceparent"), 0u);  // no trace in the context: none invented
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
