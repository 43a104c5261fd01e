// HTTP with Boost.Beast (target ctxvars::http; Debian libboost1.81-dev): a
// request's context travels in its `traceparent`, `tracestate` and `baggage`
// headers (propagation.hpp).
//
//   // client: the current context's registered variables go with the request
//   ctxvars::http::inject(req);
//   // server: the handler runs in a context built from the request's headers
//   auto res = ctxvars::http::handle(req, [](const auto& req) { ...; return response; });
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
#include <utility>

#include "context.hpp"
#include "propagation.hpp"

namespace ctxvars::http {

namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using request = bhttp::request<bhttp::string_body>;
using response = bhttp::response<bhttp::string_body>;

// Sets traceparent/tracestate/baggage on `req` from `c` (default: the current
// context), replacing any already there; removes those `c` has nothing for.
template <class Body, class Fields>
void inject(bhttp::request<Body, Fields>& req, const context& c = copy_context(),
            const registry& r = registry::global()) {
  req.erase("traceparent");
  req.erase("tracestate");
  req.erase("baggage");
  for (auto& [name, value] : ctxvars::inject(c, r)) req.set(name, value);
}

namespace detail {
inline std::string_view header(const auto& msg, std::string_view name) {
  auto it = msg.find(boost::beast::string_view(name.data(), name.size()));
  if (it == msg.end()) return {};
  auto v = it->value();
  return std::string_view(v.data(), v.size());
}
// A header given twice would be folded or ambiguous: refuse it.
inline void require_single(const auto& msg, std::string_view name) {
  if (msg.count(boost::beast::string_view(name.data(), name.size())) > 1)
    throw parse_error("ctxvars: invalid " + std::string(name) + " header: given more than once");
}
}  // namespace detail

// A new context: `base` plus what the request's headers carry. Throws
// parse_error (nothing applied) when a header is malformed or repeated.
template <class Body, class Fields>
context extract(const bhttp::request<Body, Fields>& req, const context& base = copy_context(),
                const registry& r = registry::global(), std::vector<baggage_member>* unknown = nullptr) {
  for (auto n : {"traceparent", "tracestate", "baggage"}) detail::require_single(req, n);
  return ctxvars::extract({detail::header(req, "traceparent"), detail::header(req, "tracestate"),
                           detail::header(req, "baggage")},
                          base, r, unknown);
}

// Runs `handler(req)` (which returns a response) in a fresh context built
// from the request's headers on top of `base` (default: an empty context, so
// nothing of the serving thread leaks into requests). A malformed header gets
// a 400 response naming the fault, and the handler is not called.
template <class Handler>
response handle(const request& req, Handler&& handler, const context& base = context(),
                const registry& r = registry::global()) {
  context ctx;
  try {
    ctx = extract(req, base, r);
  } catch (const parse_error& e) {
    response res(bhttp::status::bad_request, req.version());
    res.set(bhttp::field::content_type, "text/plain");
    res.keep_alive(req.keep_alive());
    res.body() = std::string(e.what()) + "\n";
    res.prepare_payload();
    return res;
  }
  return ctx.run([&] { return std::invoke(handler, req); });
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
      // large baggage header; let it through so that the answer is a 400
      // naming the fault.
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
