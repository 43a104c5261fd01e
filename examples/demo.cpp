// ctxvars demo: the blog post's story, then the comparison made live — a
// loopback server built on Asio coroutines where every log line is attributed
// to "the current request" three ways: a global, a thread_local, a context_var.
//
//   ctxvars_demo [--clients N] [--requests N] [--threads N] [--story-only] [--server-only]
#include <ctxvars/asio.hpp>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

// ---------------------------------------------------------------- part 1 ----
namespace story {

ctxvars::context_var<std::string> var("var");
ctxvars::context_var<int> my_var("my_var", 42);

void say(const char* what) { std::printf("  %s\n", what); }

void run() {
  std::printf("== 1. The story of a context variable ==\n\n");
  say("context_var<std::string> var(\"var\");         // a name, no default");
  say("context_var<int> my_var(\"my_var\", 42);       // a name and a default");
  std::printf("  my_var.get()                 -> %d   (nothing set: the default)\n", my_var.get());
  auto t100 = my_var.set(100);
  std::printf("  auto t = my_var.set(100);    -> my_var.get() = %d\n", my_var.get());
  my_var.reset(t100);
  std::printf("  my_var.reset(t);             -> my_var.get() = %d (back to the default)\n\n", my_var.get());

  auto token1 = var.set("new value");
  auto token2 = var.set("new value 1");
  std::printf("  two sets, two tokens         -> var.get() = \"%s\"\n", var.get().c_str());
  var.reset(token2);
  std::printf("  var.reset(token2)            -> var.get() = \"%s\"\n", var.get().c_str());
  var.reset(token1);
  try {
    (void)var.get();
  } catch (const ctxvars::lookup_error& e) {
    std::printf("  var.reset(token1); var.get() -> lookup_error: %s\n\n", e.what());
  }

  std::printf("  Common errors, each a clear exception that changes nothing:\n");
  auto tok = var.set("x");
  ctxvars::context_var<std::string> other("other");
  try {
    other.reset(tok);
  } catch (const ctxvars::foreign_token_error& e) {
    std::printf("  - reset with another variable's token: %s\n", e.what());
  }
  auto foreign = ctxvars::context().run([] { return var.set("elsewhere"); });
  try {
    var.reset(foreign);
  } catch (const ctxvars::foreign_token_error& e) {
    std::printf("  - reset in another context:            %s\n", e.what());
  }
  var.reset(tok);
  try {
    var.reset(tok);
  } catch (const ctxvars::used_token_error& e) {
    std::printf("  - reset twice:                          %s\n", e.what());
  }
  ctxvars::context c;
  try {
    c.run([&] { c.run([] {}); });
  } catch (const ctxvars::context_in_use_error& e) {
    std::printf("  - entering a context twice:             %s\n\n", e.what());
  }

  std::printf("  Contexts are snapshots: copy_context() is O(1), and a copy never sees later sets.\n");
  auto t1 = var.set("request A");
  auto snapshot = ctxvars::copy_context();
  auto t2 = var.set("request B");
  std::printf("  now \"%s\"; in the snapshot \"%s\"\n", var.get().c_str(),
              snapshot.run([] { return var.get(); }).c_str());
  std::string in_thread;
  std::jthread([&] { in_thread = var.get("<nothing: a new thread starts empty>"); }).join();
  std::printf("  a plain std::thread sees: %s\n", in_thread.c_str());
  std::jthread(ctxvars::bind([&] { in_thread = var.get(); })).join();
  std::printf("  a thread started with ctxvars::bind(f) sees: \"%s\"\n\n", in_thread.c_str());
  var.reset(t2);
  var.reset(t1);
}

}  // namespace story

// ---------------------------------------------------------------- part 2 ----
namespace server {

std::atomic<int> g_request{0};  // a global (atomic only so that the race is not UB)
thread_local int t_request = 0;                            // a thread_local
ctxvars::context_var<int> c_request("request", 0);         // a context_var

struct tally {
  std::atomic<long> lines{0}, wrong_global{0}, wrong_thread_local{0}, wrong_context{0};
  std::mutex m;
  std::vector<std::string> samples;
};

// Request ids are numbers (client + 1) * 1000 + n; they print as "c<client>-r<n>"
// (c3-r7: client 3's request 7), so a reader never takes them for counts.
std::string label(int id) {
  if (id < 1000) return std::to_string(id);
  return "c" + std::to_string(id / 1000 - 1) + "-r" + std::to_string(id % 1000);
}

// Logs one line about request `truth`, attributing it three ways.
void log(tally& t, int truth, const char* what) {
  const int g = g_request.load(std::memory_order_relaxed), tl = t_request, cv = c_request.get();
  ++t.lines;
  if (g != truth) ++t.wrong_global;
  if (tl != truth) ++t.wrong_thread_local;
  if (cv != truth) ++t.wrong_context;
  if ((g != truth || tl != truth || cv != truth)) {
    std::lock_guard lk(t.m);
    if (t.samples.size() < 4)
      t.samples.push_back("  request " + label(truth) + " " + what + ": global says " + label(g) +
                          ", thread_local says " + label(tl) + ", context_var says " + label(cv));
  }
}

awaitable<void> pause(std::chrono::microseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(use_awaitable);
}

// One connection: read "id\n", handle it across timer waits, reply "id\n".
awaitable<void> session(tcp::socket sock, tally& t) {
  std::string buf;
  std::mt19937 rng(static_cast<unsigned>(sock.remote_endpoint().port()));
  try {
    for (;;) {
      const std::size_t n = co_await asio::async_read_until(sock, asio::dynamic_buffer(buf), '\n', use_awaitable);
      const int id = std::atoi(buf.substr(0, n).c_str());
      buf.erase(0, n);
      g_request.store(id, std::memory_order_relaxed);  // what code using a global or thread_local would do
      t_request = id;
      auto scope = c_request.scoped_set(id);
      log(t, id, "received");
      co_await pause(std::chrono::microseconds(rng() % 800));
      log(t, id, "queried the database");
      co_await pause(std::chrono::microseconds(rng() % 800));
      log(t, id, "rendered");
      const std::string reply = std::to_string(c_request.get()) + "\n";
      co_await asio::async_write(sock, asio::buffer(reply), use_awaitable);
      log(t, id, "replied");
    }
  } catch (const std::system_error&) {
    // client closed the connection
  }
}

awaitable<void> accept_loop(tcp::acceptor& acc, int clients, tally& t) {
  for (int i = 0; i < clients; ++i) {
    tcp::socket s = co_await acc.async_accept(use_awaitable);
    // Each connection is a task with a context of its own.
    ctxvars::asio::co_spawn(acc.get_executor(), session(std::move(s), t), asio::detached);
  }
}

awaitable<void> client(tcp::endpoint ep, int first_id, int requests, std::atomic<long>& ok) {
  tcp::socket s(co_await asio::this_coro::executor);
  co_await s.async_connect(ep, use_awaitable);
  std::string buf;
  for (int r = 0; r < requests; ++r) {
    const std::string msg = std::to_string(first_id + r) + "\n";
    co_await asio::async_write(s, asio::buffer(msg), use_awaitable);
    const std::size_t n = co_await asio::async_read_until(s, asio::dynamic_buffer(buf), '\n', use_awaitable);
    if (buf.substr(0, n) == msg) ++ok;
    buf.erase(0, n);
  }
}

int run(int clients, int requests, int threads) {
  std::printf("== 2. Live: a coroutine server on 127.0.0.1 ==\n\n");
  asio::io_context io;
  tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  const tcp::endpoint ep = acc.local_endpoint();
  std::printf("  %d clients x %d requests on port %u, io_context run by %d threads.\n", clients,
              requests, ep.port(), threads);
  std::printf("  Each request sets its id in a global, a thread_local and a context_var, then awaits\n"
              "  timers and socket I/O, logging as it goes; each log line checks whom it attributes.\n\n");
  tally t;
  std::atomic<long> ok{0};
  ctxvars::asio::co_spawn(io, accept_loop(acc, clients, t), asio::detached);
  for (int c = 0; c < clients; ++c)
    ctxvars::asio::co_spawn(io, client(ep, (c + 1) * 1000, requests, ok), asio::detached);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back([&] { io.run(); });
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("  Some misattributed log lines (cX-rY is client X's request Y):\n");
  for (const auto& s : t.samples) std::printf("%s\n", s.c_str());
  const long total = static_cast<long>(clients) * requests;
  auto pct = [&](long w) { return t.lines ? 100.0 * static_cast<double>(w) / static_cast<double>(t.lines.load()) : 0.0; };
  std::printf("\n  +--------------+----------+-----------+-------------------+----------+\n");
  std::printf("  | mechanism    | requests | log lines | misattributed     | verdict  |\n");
  std::printf("  +--------------+----------+-----------+-------------------+----------+\n");
  auto row = [&](const char* name, long wrong) {
    std::printf("  | %-12s | %8ld | %9ld | %8ld (%5.1f%%) | %-8s |\n", name, total, t.lines.load(), wrong,
                pct(wrong), wrong ? "WRONG" : "correct");
  };
  row("global", t.wrong_global.load());
  row("thread_local", t.wrong_thread_local.load());
  row("context_var", t.wrong_context.load());
  std::printf("  +--------------+----------+-----------+-------------------+----------+\n");
  std::printf("  %ld/%ld replies correct, %.2f s, %.0f requests/s\n\n", ok.load(), total, secs,
              static_cast<double>(total) / secs);
  const bool good = t.wrong_context == 0 && ok == total;
  std::printf("  %s\n", good ? "context_var attributed every line to the right request."
                             : "UNEXPECTED: context_var misattributed a line or a reply was wrong.");
  return good ? 0 : 1;
}

}  // namespace server

int main(int argc, char** argv) {
  int clients = 50, requests = 20, threads = 4;
  bool story_part = true, server_part = true;
  for (int i = 1; i < argc; ++i) {
    auto next = [&](int& v) {
      if (i + 1 >= argc || (v = std::atoi(argv[++i])) <= 0) {
        std::fprintf(stderr, "%s needs a positive number\n", argv[i]);
        std::exit(2);
      }
    };
    if (!std::strcmp(argv[i], "--clients")) next(clients);
    else if (!std::strcmp(argv[i], "--requests")) next(requests);
    else if (!std::strcmp(argv[i], "--threads")) next(threads);
    else if (!std::strcmp(argv[i], "--story-only")) server_part = false;
    else if (!std::strcmp(argv[i], "--server-only")) story_part = false;
    else {
      std::fprintf(stderr,
                   "usage: %s [--clients N] [--requests N] [--threads N] [--story-only] [--server-only]\n",
                   argv[0]);
      return 2;
    }
  }
  if (story_part) story::run();
  return server_part ? server::run(clients, requests, threads) : 0;
}
