// The service under test for the W3C Trace Context test suite
// (../shared/conformance/w3c-trace-context/, run by tests/w3c_conformance.py).
//
//   ctxvars_w3c_service --port N     (N = 0: any free port, printed on stdout)
//
// serves POST http://127.0.0.1:N/test. The body is a JSON array of
// {"url", "arguments"}; for each element the service POSTs `arguments` (as
// JSON) to `url`. The trace context travels only through ctxvars:
// - each request is served by ctxvars::http::async_handle in a coroutine
//   session: the handler runs in a context built from the request's headers
//   by the receiver rules (a new trace, with the Level 2 random flag, when the
//   incoming traceparent is missing or invalid);
// - each outgoing call gets ctxvars::http::inject: a child span of that trace
//   (the same trace-id, a new parent-id) and the tracestate.
// One thread, Boost.Asio coroutines, Beast both ways, Boost.JSON (header-only).
#include <ctxvars/boost_asio.hpp>
#include <ctxvars/http.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/src.hpp>  // Boost.JSON compiled into this one file: no library to link

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;
using net::awaitable;
using net::use_awaitable;

struct url_parts {
  std::string host, port, target;
};

// "http://host[:port][/path]" (the harness sends nothing else).
bool split_url(std::string_view url, url_parts& out) {
  constexpr std::string_view scheme = "http://";
  if (url.substr(0, scheme.size()) != scheme) return false;
  url.remove_prefix(scheme.size());
  const std::size_t slash = url.find('/');
  const std::string_view authority = url.substr(0, slash);
  out.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  const std::size_t colon = authority.rfind(':');
  out.host = std::string(authority.substr(0, colon));
  out.port = colon == std::string_view::npos ? "80" : std::string(authority.substr(colon + 1));
  return !out.host.empty();
}

// POSTs `body` to `url` with the current context's trace context (a child span).
awaitable<void> post_json(std::string url, std::string body) {
  url_parts u;
  if (!split_url(url, u)) co_return;
  auto ex = co_await net::this_coro::executor;
  tcp::resolver resolver(ex);
  const auto endpoints = co_await resolver.async_resolve(u.host, u.port, use_awaitable);
  beast::tcp_stream stream(ex);
  stream.expires_after(std::chrono::seconds(10));
  co_await stream.async_connect(endpoints, use_awaitable);
  ctxvars::http::request req(bhttp::verb::post, u.target, 11);
  req.set(bhttp::field::host, u.host + ":" + u.port);
  req.set(bhttp::field::content_type, "application/json");
  req.body() = std::move(body);
  ctxvars::http::inject(req);  // traceparent: a new child span of this request's trace
  req.prepare_payload();
  co_await bhttp::async_write(stream, req, use_awaitable);
  beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  co_await bhttp::async_read(stream, buf, res, use_awaitable);
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

// POST /test: one call per element of the JSON array, in order.
awaitable<ctxvars::http::response> serve_test(const ctxvars::http::request& req) {
  ctxvars::http::response res(bhttp::status::ok, req.version());
  res.set(bhttp::field::content_type, "application/json");
  if (req.method() != bhttp::verb::post || req.target() != "/test") {
    res.result(bhttp::status::not_found);
    res.body() = "{}";
    co_return res;
  }
  boost::system::error_code ec;
  const json::value v = json::parse(req.body(), ec);
  if (ec || !v.is_array()) {
    res.result(bhttp::status::bad_request);
    res.body() = "{\"error\":\"expected a JSON array\"}";
    co_return res;
  }
  for (const json::value& call : v.get_array()) {
    const json::object* o = call.if_object();
    if (!o || !o->contains("url") || !o->at("url").is_string()) continue;
    const json::value* args = o->if_contains("arguments");
    const std::string body = args ? json::serialize(*args) : "[]";
    try {
      co_await post_json(std::string(o->at("url").get_string()), body);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ctxvars_w3c_service: call to %s failed: %s\n", o->at("url").get_string().c_str(),
                   e.what());
    }
  }
  res.body() = "[]";
  co_return res;
}

// One keep-alive connection: each request served by async_handle in its own context.
awaitable<void> session(tcp::socket socket) {
  beast::flat_buffer buf;
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(1024 * 1024);
    boost::system::error_code ec;
    co_await bhttp::async_read(socket, buf, parser, net::redirect_error(use_awaitable, ec));
    if (ec) break;
    ctxvars::http::request req = parser.release();
    ctxvars::http::response res = co_await ctxvars::http::async_handle(req, serve_test);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    co_await bhttp::async_write(socket, res, net::redirect_error(use_awaitable, ec));
    if (ec || !req.keep_alive()) break;
  }
  boost::system::error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
}

awaitable<void> listen(tcp::acceptor acceptor) {
  for (;;) {
    tcp::socket s = co_await acceptor.async_accept(use_awaitable);
    ctxvars::boost_asio::co_spawn(acceptor.get_executor(), session(std::move(s)), net::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = -1;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string_view(argv[i]) == "--port") port = std::atoi(argv[i + 1]);
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "usage: %s --port N   (serves POST http://127.0.0.1:N/test; 0: any free port)\n", argv[0]);
    return 2;
  }
  try {
    net::io_context io(1);
    tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    std::printf("ctxvars_w3c_service: listening on http://127.0.0.1:%u/test\n",
                static_cast<unsigned>(acceptor.local_endpoint().port()));
    std::fflush(stdout);
    net::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](auto, int) { io.stop(); });
    ctxvars::boost_asio::co_spawn(io, listen(std::move(acceptor)), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctxvars_w3c_service: %s\n", e.what());
    return 1;
  }
  return 0;
}
