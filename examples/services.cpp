// Two services, two processes, one request context (scripts/demo.sh services).
//
//   ctxvars_services demo [--clients N] [--requests N]
//
// starts a "back" and a "front" service as child processes on 127.0.0.1 and
// sends clients x requests orders into the front. For each order the front
// gives the request an id and a tenant (context variables registered for
// propagation), hands the work to a thread pool (ctxvars::bind carries the
// context there), which calls the back over HTTP (ctxvars::http injects the
// variables into the `baggage` header; the back's handler runs in a context
// built from it). Both services log through async spdlog loggers with the
// context flag `%&`. Each log message also states, independently of the
// context, which request it is about; afterwards every line of both logs is
// checked: does the flag's request_id and tenant match the message?
//
// Request ids read "c3-r7": client 3's request 7.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/http.hpp"
#include "ctxvars/spdlog.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
namespace h = ctxvars::http;

ctxvars::context_var<std::string> request_id("request_id");
ctxvars::context_var<std::string> tenant("tenant");

const char* const tenants[] = {"acme", "globex", "initech", "umbrella"};

std::string arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], name)) return argv[i + 1];
  return fallback;
}

std::string query(const std::string& target, const std::string& key) {
  const std::size_t q = target.find(key + "=");
  if (q == std::string::npos) return "";
  const std::size_t b = q + key.size() + 1, e = target.find('&', b);
  return target.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

h::response text(const h::request& req, std::string body) {
  h::response res(h::bhttp::status::ok, req.version());
  res.set(h::bhttp::field::content_type, "text/plain");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

// An async logger to `file` whose lines end with the context's fields.
std::shared_ptr<spdlog::logger> make_logger(const std::string& name, const std::string& file) {
  spdlog::init_thread_pool(8192, 2);
  auto async = spdlog::create_async<spdlog::sinks::basic_file_sink_mt>(name, file, true);
  auto log = ctxvars::spdlog::capture_context(async);
  log->set_formatter(ctxvars::spdlog::formatter("%H:%M:%S.%f %-5n %v | %&"));
  return log;
}

// Runs a service until GET /quit; writes its port to `port_file` once listening.
int serve(const std::string& port_file, h::server::handler_type handler, std::shared_ptr<spdlog::logger> log) {
  std::mutex m;
  std::condition_variable cv;
  bool quit = false;
  h::server srv({boost::asio::ip::make_address("127.0.0.1"), 0}, [&](const h::request& req) {
    if (req.target() == "/quit") {
      std::lock_guard g(m);
      quit = true;
      cv.notify_all();
      return text(req, "bye\n");
    }
    return handler(req);
  });
  {
    std::ofstream(port_file + ".tmp") << srv.port() << "\n";
    fs::rename(port_file + ".tmp", port_file);
  }
  std::unique_lock lk(m);
  cv.wait(lk, [&] { return quit; });
  lk.unlock();
  srv.stop();
  log->flush();
  spdlog::shutdown();
  return 0;
}

// ---- back: reserves stock for a job ------------------------------------------
int run_back(int argc, char** argv) {
  auto log = make_logger("back", arg(argc, argv, "--log", "back.log"));
  ctxvars::registry::global().add(request_id);
  ctxvars::registry::global().add(tenant);
  return serve(
      arg(argc, argv, "--port-file", "back.port"),
      [&](const h::request& req) {
        // The job id travels in the URL too: the truth the log check uses.
        const std::string target(req.target());
        const std::string job = query(target, "job"), of = query(target, "tenant");
        log->info("reserving stock for job {} of {}", job, of);
        thread_local std::mt19937 rng(std::random_device{}());
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
        log->info("reserved stock for job {} of {}", job, of);
        return text(req, request_id.get("?") + " " + tenant.get("?"));
      },
      log);
}

// ---- front: takes orders, asks the back ----------------------------------------
int run_front(int argc, char** argv) {
  auto log = make_logger("front", arg(argc, argv, "--log", "front.log"));
  ctxvars::registry::global().add(request_id);
  ctxvars::registry::global().add(tenant);
  const auto back = h::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                                     static_cast<unsigned short>(std::stoi(arg(argc, argv, "--back-port", "0"))));
  boost::asio::thread_pool workers(4);
  return serve(
      arg(argc, argv, "--port-file", "front.port"),
      [&](const h::request& req) {
        const std::string target(req.target());
        const int client = std::stoi(query(target, "client")), n = std::stoi(query(target, "n"));
        // The front names the request: these two values follow it everywhere.
        auto id = request_id.scoped_set("c" + std::to_string(client) + "-r" + std::to_string(n));
        auto tn = tenant.scoped_set(tenants[client % 4]);
        log->info("order {} of client {} received", n, client);
        // The call to the back runs on a pool thread, in a copy of this context.
        std::promise<std::string> answer;
        boost::asio::post(workers, ctxvars::bind([&] {
          thread_local std::unique_ptr<h::client> to_back;
          try {
            if (!to_back) to_back = std::make_unique<h::client>(back);
            const auto t0 = std::chrono::steady_clock::now();
            auto res = to_back->get("/reserve?job=" + request_id.get() + "&tenant=" + tenant.get());
            const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
            log->info("order {} of client {}: back answered '{}' in {} us", n, client, res.body(), us.count());
            answer.set_value(res.body());
          } catch (...) {
            to_back.reset();
            answer.set_exception(std::current_exception());
          }
        }));
        return text(req, answer.get_future().get());
      },
      log);
}

// ---- demo: starts both, sends the load, checks the logs -----------------------
pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) != 0) {
    std::perror("posix_spawn");
    std::exit(1);
  }
  return pid;
}

unsigned short wait_port(const fs::path& file) {
  for (int i = 0; i < 1000; ++i) {
    if (fs::exists(file)) {
      int p = 0;
      std::ifstream(file) >> p;
      return static_cast<unsigned short>(p);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "services: %s never appeared\n", file.c_str());
  std::exit(1);
}

struct check {
  long lines = 0, bad_id = 0, bad_tenant = 0, misattributed = 0, split = 0;
  std::map<std::string, std::string> trace;  // request id -> the trace-id its lines show
  std::vector<std::string> sample;
};

// Each line: "<time> <service> <message> | request_id=<id> tenant=<t>
// traceparent=<tp>" (every request is served in a trace). The message states
// the request (order N of client C, or job cC-rN of T) on its own; the fields
// after '|' come from the context.
check check_log(const fs::path& file) {
  static const std::regex order(R"(order (\d+) of client (\d+))"), job(R"(job (c\d+-r\d+) of (\w+))"),
      fields(R"(\| request_id=(\S+) tenant=(\S+)(?: traceparent=00-([0-9a-f]{32})-\S+)?$)");
  check c;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    std::smatch m, f;
    std::string want_id, want_tenant;
    if (std::regex_search(line, m, order)) {
      const int client = std::stoi(m[2]);
      want_id = "c" + m[2].str() + "-r" + m[1].str();
      want_tenant = tenants[client % 4];
    } else if (std::regex_search(line, m, job)) {
      want_id = m[1];
      want_tenant = m[2];
    } else {
      continue;
    }
    ++c.lines;
    const bool ok_fields = std::regex_search(line, f, fields);
    const bool id_ok = ok_fields && f[1] == want_id, tenant_ok = ok_fields && f[2] == want_tenant;
    c.bad_id += !id_ok;
    c.bad_tenant += !tenant_ok;
    c.misattributed += !(id_ok && tenant_ok);
    // One request, one trace: the front serves each order in a new trace, the
    // back's lines for that job show the same trace-id (a child span).
    if (ok_fields && id_ok) {
      const std::string t = f[3].matched ? f[3].str() : "none";
      auto [it, added] = c.trace.emplace(want_id, t);
      c.split += !added && it->second != t;
    }
    if (c.sample.size() < 4 && c.lines % 97 == 1) c.sample.push_back(line);
  }
  return c;
}

int run_demo(int argc, char** argv) {
  const int clients = std::stoi(arg(argc, argv, "--clients", "32"));
  const int requests = std::stoi(arg(argc, argv, "--requests", "50"));
  char tmpl[] = "/tmp/ctxvars-services-XXXXXX";
  const fs::path dir = mkdtemp(tmpl);
  std::printf("== Two services, two processes: front -> back over HTTP on 127.0.0.1 ==\n\n");
  const pid_t back = spawn({"ctxvars_services", "back", "--port-file", (dir / "back.port").string(), "--log",
                            (dir / "back.log").string()});
  const unsigned short back_port = wait_port(dir / "back.port");
  const pid_t front = spawn({"ctxvars_services", "front", "--port-file", (dir / "front.port").string(), "--log",
                             (dir / "front.log").string(), "--back-port", std::to_string(back_port)});
  const unsigned short front_port = wait_port(dir / "front.port");
  std::printf("  back  pid %d on port %u; front pid %d on port %u; logs in %s\n", back, back_port, front,
              front_port, dir.c_str());
  std::printf("  %d clients x %d orders, sent concurrently. The front names each order (request_id\n"
              "  \"c3-r7\" = client 3's order 7; tenant by client) and calls the back from a thread pool;\n"
              "  both log through async spdlog loggers with the %%& context flag.\n\n",
              clients, requests);

  const h::tcp::endpoint fe(boost::asio::ip::make_address("127.0.0.1"), front_port);
  std::atomic<long> ok{0}, failed{0};
  const auto start = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> ts;
    for (int c = 0; c < clients; ++c)
      ts.emplace_back([&, c] {
        try {
          h::client cli(fe);
          for (int n = 0; n < requests; ++n) {
            auto res = cli.get("/order?client=" + std::to_string(c) + "&n=" + std::to_string(n));
            const std::string want =
                "c" + std::to_string(c) + "-r" + std::to_string(n) + " " + tenants[c % 4];
            (res.body() == want ? ok : failed)++;
          }
        } catch (const std::exception& e) {
          std::fprintf(stderr, "client %d: %s\n", c, e.what());
          ++failed;
        }
      });
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (unsigned short port : {front_port, back_port}) {
    try {
      h::client(h::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port)).get("/quit");
    } catch (const std::exception&) {
    }
  }
  int status = 0;
  waitpid(front, &status, 0);
  waitpid(back, &status, 0);

  const check f = check_log(dir / "front.log"), b = check_log(dir / "back.log");
  std::printf("  Sample of the front's log:\n");
  for (auto& l : f.sample) std::printf("    %s\n", l.c_str());
  std::printf("  Sample of the back's log:\n");
  for (auto& l : b.sample) std::printf("    %s\n", l.c_str());
  std::printf("\n  +---------+-----------+------------------+---------------+---------------+\n");
  std::printf("  | service | log lines | wrong request_id | wrong tenant  | misattributed |\n");
  std::printf("  +---------+-----------+------------------+---------------+---------------+\n");
  auto row = [](const char* n, const check& c) {
    std::printf("  | %-7s | %9ld | %16ld | %13ld | %13ld |\n", n, c.lines, c.bad_id, c.bad_tenant, c.misattributed);
  };
  row("front", f);
  row("back", b);
  std::printf("  +---------+-----------+------------------+---------------+---------------+\n");
  const long n = static_cast<long>(clients) * requests;
  std::printf("  %ld/%ld replies correct, %.2f s\n\n", ok.load(), n, secs);
  long split = f.split + b.split;
  for (const auto& [id, t] : f.trace) {
    auto it = b.trace.find(id);
    split += t == "none" || (it != b.trace.end() && it->second != t);
  }
  std::printf("  %zu requests' traces: %ld not one trace-id across both services\n\n", f.trace.size(), split);
  const long lines = f.lines + b.lines, bad = f.misattributed + b.misattributed + split;
  // Every request logs two lines in each service: anything missing counts as misattributed.
  const long missing = 4 * n - lines;
  std::printf("services: %ld requests, %ld log lines checked, %ld misattributed\n", n, lines,
              bad + (missing > 0 ? missing : 0) + failed.load());
  std::error_code ec;
  if (bad == 0 && missing == 0 && failed == 0) fs::remove_all(dir, ec);
  return (bad == 0 && missing == 0 && failed == 0) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string role = argc > 1 ? argv[1] : "demo";
  if (role == "back") return run_back(argc, argv);
  if (role == "front") return run_front(argc, argv);
  if (role == "demo") return run_demo(argc, argv);
  std::fprintf(stderr, "usage: %s demo|front|back [options]\n  demo [--clients N] [--requests N]\n", argv[0]);
  return 2;
}
