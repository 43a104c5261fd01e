// HTTP with Boost.Beast (target ctxvars::http; Debian libboost1.81-dev): a
// request's context travels in its `traceparent`, `tracestate` and `baggage`
// headers (propagation.hpp).
//
//   // client: the current context's registered variables go with the request,
//   // and a new child span of its trace
//   ctxvars::http::inject(req);
//   // server: the handler runs in a context built from the request's headers
//   auto res = ctxvars::http::handle(req, [](const auto& req) { ...; return response; });
//   // in a coroutine session (either Asio; include its ctxvars adapter):
//   auto res = co_await ctxvars::http::async_handle(req, [](const auto& req) -> awaitable<response> {...});
//
// ctxvars::http::server is a small blocking server (a thread per connection,
// keep-alive) running every request through handle(); ctxvars::http::client
// keeps one connection and injects the caller's context into each request.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "context.hpp"
#include "detail/awaitable_adapter.hpp"
#include "propagation.hpp"

namespace ctxvars::http {

namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using request = bhttp::request<bhttp::string_body>;
using response = bhttp::response<bhttp::string_body>;

// Sets traceparent/tracestate/baggage on `req` for an outgoing call from `c`
// (default: the current context): a new child span of c's trace (same
// trace-id, a new parent-id; ctxvars::inject_child) and c's registered
// variables. Replaces any such header already there; removes those `c` has
// nothing for. `c` is not changed.
template <class Body, class Fields>
void inject(bhttp::request<Body, Fields>& req, const context& c = copy_context(),
            const registry& r = registry::global()) {
  req.erase("traceparent");
  req.erase("tracestate");
  req.erase("baggage");
  for (auto& [name, value] : ctxvars::inject_child(c, r)) req.set(name, value);
}

namespace detail {
// Every value of the field `name`, joined with ',' as HTTP combines a
// repeated list header (empty values skipped). A repeated traceparent so
// becomes one that does not parse, and is ignored.
inline std::string joined(const auto& msg, std::string_view name) {
  std::string out;
  auto [b, e] = msg.equal_range(boost::beast::string_view(name.data(), name.size()));
  for (auto it = b; it != e; ++it) {
    auto v = it->value();
    if (v.empty()) continue;
    if (!out.empty()) out += ',';
    out.append(v.data(), v.size());
  }
  return out;
}
}  // namespace detail

// A new context: `base` plus what the request's headers carry, by the
// receiver rules (ctxvars::extract): repeated tracestate and baggage headers
// are combined, malformed parts dropped and reported to the
// on_malformed_header() handler. Never throws parse_error; std::bad_alloc.
template <class Body, class Fields>
context extract(const bhttp::request<Body, Fields>& req, const context& base = copy_context(),
                const registry& r = registry::global(), std::vector<baggage_member>* unknown = nullptr) {
  const std::string tp = detail::joined(req, "traceparent"), ts = detail::joined(req, "tracestate"),
                    bg = detail::joined(req, "baggage");
  return ctxvars::extract({tp, ts, bg}, base, r, unknown);
}

// The context a request is served in: extract(req, base, r), with a new trace
// (random trace-id, Level 2 random flag) when the request brought no valid
// traceparent (ctxvars::with_trace).
inline context serving_context(const request& req, const context& base = context(),
                               const registry& r = registry::global()) {
  return with_trace(extract(req, base, r));
}

// Runs `handler(req)` (which returns a response) in a fresh context built
// from the request's headers on top of `base` (default: an empty context, so
// nothing of the serving thread leaks into requests): serving_context(). A
// malformed header never refuses the request (see extract).
template <class Handler>
response handle(const request& req, Handler&& handler, const context& base = context(),
                const registry& r = registry::global()) {
  context ctx = serving_context(req, base, r);
  return ctx.run([&] { return std::invoke(handler, req); });
}

// The async form of handle(), for coroutine sessions: `co_await
// async_handle(req, handler)` calls `handler(req)`, which returns an
// `awaitable<R>` of either Asio (standalone `::asio` or `boost::asio`, default
// executor; include <ctxvars/asio.hpp> or <ctxvars/boost_asio.hpp> before the
// call), and awaits it as a task running in serving_context(req, base, r) on
// the session's executor: every step of the handler, on whichever thread it
// resumes, sees the request's context; the session's own context never sees
// what the handler sets. Returns the handler's result or rethrows its
// exception. `req` must stay alive until the co_await ends (it does when
// awaited at once, as above). Cost: one context, one spawned task.
template <class Handler, class Awaitable = std::invoke_result_t<Handler&, const request&>>
Awaitable async_handle(const request& req, Handler handler, context base = context(),
                       const registry& r = registry::global()) {
  using adapter = ctxvars::detail::awaitable_adapter<Awaitable>;
  using traits = typename adapter::traits;
  context ctx = serving_context(req, base, r);
  // The call itself runs in the request's context too (it may do work before
  // its first suspension).
  Awaitable aw = ctx.run([&] { return std::invoke(handler, req); });
  auto ex = co_await traits::this_coro_executor;
  co_return co_await adapter::co_spawn(ex, std::move(ctx), std::move(aw), traits::use_awaitable());
}

// A blocking HTTP/1.1 server on 127.0.0.1 (or any endpoint): one thread
// accepts, one thread per connection reads requests (keep-alive) and answers
// each with handle(req, handler); a handler that throws gets a 500 answer.
// stop() (and the destructor) closes the listener and every connection and
// joins the threads. Meant for tests, demos and tools: a connection's thread
// is kept until stop(), so it suits keep-alive clients, not millions of
// short connections.
class server {
 public:
  using handler_type = std::function<response(const request&)>;

  server(tcp::endpoint ep, handler_type h) : handler_(std::move(h)), acceptor_(io_, ep) {
    acceptor_.listen();
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  server(const server&) = delete;
  server& operator=(const server&) = delete;
  ~server() { stop(); }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  // Requests answered so far (each counted before its answer is written).
  long served() const noexcept { return served_.load(); }

  void stop() {
    if (stopped_.exchange(true)) return;
    boost::system::error_code ec;
    // Wake the blocked accept(): connect to ourselves, then close.
    {
      tcp::socket poke(io_);
      poke.connect(acceptor_.local_endpoint(), ec);
    }
    if (accept_thread_.joinable()) accept_thread_.join();
    acceptor_.close(ec);
    std::list<connection> conns;
    {
      std::lock_guard g(mutex_);
      for (auto& c : conns_) c.socket.shutdown(tcp::socket::shutdown_both, ec);
      conns.splice(conns.end(), conns_);
    }
    for (auto& c : conns)
      if (c.thread.joinable()) c.thread.join();
  }

 private:
  struct connection {
    tcp::socket socket;
    std::thread thread;
  };

  void accept_loop() {
    for (;;) {
      tcp::socket s(io_);
      boost::system::error_code ec;
      acceptor_.accept(s, ec);
      if (stopped_) return;
      if (ec) continue;
      std::lock_guard g(mutex_);
      conns_.push_back(connection{std::move(s), {}});
      connection& c = conns_.back();
      c.thread = std::thread([this, &c] { serve(c.socket); });
    }
  }

  void serve(tcp::socket& socket) {
    boost::beast::flat_buffer buf;
    boost::system::error_code ec;
    for (;;) {
      // Beast's default 8 KiB header limit would drop the connection on a
      // large baggage header; let it through to the receiver rules (whole
      // members past 8192 bytes dropped, the request served).
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(64 * 1024);
      parser.body_limit(1024 * 1024);
      bhttp::read(socket, buf, parser, ec);
      if (ec) break;
      request req = parser.release();
      response res;
      try {
        res = handle(req, handler_);
      } catch (const std::exception& e) {
        res = response(bhttp::status::internal_server_error, req.version());
        res.body() = std::string("handler failed: ") + e.what() + "\n";
      } catch (...) {
        res = response(bhttp::status::internal_server_error, req.version());
        res.body() = "handler failed\n";
      }
      res.keep_alive(req.keep_alive());
      if (!res.has_content_length()) res.prepare_payload();
      // Counted before the answer leaves: a client that has read it sees it counted.
      served_.fetch_add(1, std::memory_order_relaxed);
      bhttp::write(socket, res, ec);
      if (ec || !req.keep_alive()) break;
    }
    socket.shutdown(tcp::socket::shutdown_send, ec);
  }

  handler_type handler_;
  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread accept_thread_;
  std::mutex mutex_;
  std::list<connection> conns_;
  std::atomic<bool> stopped_{false};
  std::atomic<long> served_{0};
};

// One keep-alive connection to a server; each call() injects the caller's
// current context into the request. Not thread-safe: one per thread.
class client {
 public:
  explicit client(tcp::endpoint ep) : socket_(io_) { socket_.connect(ep); }
  // Sends `req` (with `c`'s headers) and returns the response. Throws
  // boost::system::system_error on I/O errors.
  response call(request req, const context& c = copy_context()) {
    inject(req, c);
    req.keep_alive(true);
    if (!req.has_content_length()) req.prepare_payload();
    bhttp::write(socket_, req);
    response res;
    bhttp::read(socket_, buf_, res);
    return res;
  }
  response get(std::string target, const context& c = copy_context()) {
    request req(bhttp::verb::get, std::move(target), 11);
    req.set(bhttp::field::host, "127.0.0.1");
    return call(std::move(req), c);
  }

 private:
  boost::asio::io_context io_;
  tcp::socket socket_;
  boost::beast::flat_buffer buf_;
};

}  // namespace ctxvars::http
