// Instruction counts per operation, for valgrind --tool=callgrind (stable on
// a noisy machine): `callgrind_probe OP N` runs OP N times; the script runs it
// with N and 0 and divides the difference by N.
#include <ctxvars/ctxvars.hpp>
#include <ctxvars/task.hpp>

#include <coroutine>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {
constinit thread_local int* tl_ptr = nullptr;
volatile int sink;

// task_resume / bare_resume: N resumptions of one coroutine through a queue
// drained on this thread (the same loop as coro_bench's BM_Task_Resume).
struct loop {
  std::vector<std::coroutine_handle<>> q;
  auto schedule() {
    struct aw {
      loop* l;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) const { l->q.push_back(h); }
      void await_resume() const noexcept {}
    };
    return aw{this};
  }
  void run() {
    for (std::size_t i = 0; i < q.size(); ++i) q[i].resume();
    q.clear();
  }
};
struct bare {
  struct promise_type {
    bare get_return_object() { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() { std::terminate(); }
  };
};
bare bare_yielder(loop& l, long k) {
  for (long i = 0; i < k; ++i) co_await l.schedule();
}
ctxvars::task<void> task_yielder(loop& l, long k) {
  for (long i = 0; i < k; ++i) co_await l.schedule();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s get|get_default|set_reset|set_reset_base|copy|run|request|set_after_copy|tl|task_resume|bare_resume VARS N\n", argv[0]);
    return 2;
  }
  const std::string op = argv[1];
  const int vars_n = std::atoi(argv[2]);
  const long n = std::atol(argv[3]);
  std::vector<std::unique_ptr<ctxvars::context_var<int>>> vars;
  for (int i = 0; i < vars_n + 4; ++i) vars.push_back(std::make_unique<ctxvars::context_var<int>>("v", -1));
  auto fill = [&] {
    for (int i = 0; i < vars_n; ++i) (void)vars[static_cast<std::size_t>(i)]->set(i);
  };
  auto& v = *vars[static_cast<std::size_t>(vars_n - 1)];
  auto& unset = *vars.back();
  // Request variables: never set in the server's context (see cpython_bench.cpp).
  ctxvars::context_var<int>* rv[3] = {vars[static_cast<std::size_t>(vars_n)].get(),
                                      vars[static_cast<std::size_t>(vars_n + 1)].get(),
                                      vars[static_cast<std::size_t>(vars_n + 2)].get()};
  int x = 1;
  tl_ptr = &x;
  ctxvars::context c;
  if (op == "task_resume" || op == "bare_resume") {
    loop l;
    l.q.reserve(static_cast<std::size_t>(n) + 8);
    if (op == "bare_resume") {
      bare_yielder(l, n);
      l.run();
    } else {
      auto s = ctxvars::spawn(l, task_yielder(l, n));
      l.run();
      s.get();
    }
    return 0;
  }
  if (op == "set_reset_base") {
    fill();
    for (long i = 0; i < n; ++i) {
      auto t = v.set(7);
      v.reset(t);
    }
    return 0;
  }
  c.run([&] {
    fill();
    if (op == "get")
      for (long i = 0; i < n; ++i) sink = v.get();
    else if (op == "get_default")
      for (long i = 0; i < n; ++i) sink = unset.get();
    else if (op == "set_reset")
      for (long i = 0; i < n; ++i) {
        auto t = v.set(7);
        v.reset(t);
      }
    else if (op == "copy")
      for (long i = 0; i < n; ++i) (void)ctxvars::copy_context();
    else if (op == "request")
      for (long i = 0; i < n; ++i)
        ctxvars::copy_context().run([&] {
          for (int j = 0; j < 3; ++j) (void)rv[j]->set(100 + j);
          for (int j = 0; j < 20; ++j) sink = rv[j % 3]->get();
        });
    else if (op == "set_after_copy")
      for (long i = 0; i < n; ++i) ctxvars::copy_context().run([&] { (void)rv[0]->set(100); });
    else if (op == "tl")
      for (long i = 0; i < n; ++i) sink = *tl_ptr;
  });
  if (op == "run") {
    for (long i = 0; i < n; ++i) c.run([] {});
  }
  return 0;
}
