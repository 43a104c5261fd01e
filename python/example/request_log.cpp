// An example C++ library that keeps its logger's request id in a ctxvars variable,
// exposed to Python with pybind11. Called from asyncio tasks, it sees each calling
// task's request id, and an id it sets stays in that task's context.
#include <ctxvars/python.hpp>

#include <pybind11/stl.h>

#include <chrono>
#include <ctime>
#include <string>
#include <thread>

namespace py = pybind11;

namespace {

// The library's own state: plain C++, no Python in sight.
ctxvars::context_var<std::string> request_id("request_id", "-");

std::string log_line(const std::string& message) { return "[" + request_id.get() + "] " + message; }

// Sets the id from C++ (for example a library that assigns ids itself).
void assign_request_id(const std::string& id) { (void)request_id.set(id); }

// Works without the GIL for a while, then logs: the context stays current.
std::string slow_log_line(const std::string& message) {
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return log_line(message);
}

// CPU time of the calling thread, in ns (the machine may be loaded: wall time is not).
double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// Nanoseconds per request_id.get() (peek: no string copy) over n calls, measured in
// C++ inside a guarded call (bench_python.py reports it), and the same loop over a
// plain thread_local for reference.
double ns_per_get(int n) {
  const std::string* sink = nullptr;
  const double t0 = thread_cpu_ns();
  for (int i = 0; i < n; ++i) {
    sink = request_id.peek();
    asm volatile("" : : "r"(sink) : "memory");
  }
  return (thread_cpu_ns() - t0) / n;
}
thread_local std::string tl_request_id = "-";
double ns_per_thread_local_read(int n) {
  const std::string* sink = nullptr;
  const double t0 = thread_cpu_ns();
  for (int i = 0; i < n; ++i) {
    sink = &tl_request_id;
    asm volatile("" : : "r"(sink) : "memory");
  }
  return (thread_cpu_ns() - t0) / n;
}

}  // namespace

PYBIND11_MODULE(request_log, m) {
  using ctxvars::python::calling_context;
  // One call per entry point: run it in the calling task's context.
  m.def("log_line", &log_line, py::call_guard<calling_context>());
  m.def("assign_request_id", &assign_request_id, py::call_guard<calling_context>());
  m.def("slow_log_line", &slow_log_line, py::call_guard<calling_context, py::gil_scoped_release>());
  // The same call without the guard (reads the thread's own context): the cost
  // baseline for python/bench_python.py.
  m.def("log_line_unguarded", &log_line);
  m.def("ns_per_get", &ns_per_get, py::call_guard<calling_context>());
  m.def("ns_per_thread_local_read", &ns_per_thread_local_read);
  // The variable itself, with ContextVar's get/set/reset.
  ctxvars::python::expose(m, "request_id", request_id);
}
