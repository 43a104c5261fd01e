// "ContextVar vs ThreadLocal" and "ContextVar vs Global Variables": the same
// request id kept three ways, by tasks that interleave on ONE thread (like
// coroutines on an event loop) and by several threads.
#include <ctxvars/task.hpp>

#include <iostream>
#include <thread>
#include <vector>

int global_id = 0;                                  // shared by everybody
thread_local int thread_id = 0;                     // shared by everything on a thread
ctxvars::context_var<int> context_id("request", 0); // follows each task

// A scheduler that runs tasks interleaved on the calling thread.
struct round_robin {
  std::vector<std::coroutine_handle<>> ready;
  auto schedule() {
    struct aw {
      round_robin* r;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) { r->ready.push_back(h); }
      void await_resume() const noexcept {}
    };
    return aw{this};
  }
  void run() {
    while (!ready.empty()) {
      auto batch = std::move(ready);
      ready.clear();
      for (auto h : batch) h.resume();
    }
  }
};

int wrong_global = 0, wrong_thread_local = 0, wrong_context = 0, checks = 0;

ctxvars::task<void> request(round_robin& rr, int id) {
  global_id = id;
  thread_id = id;
  (void)context_id.set(id);
  for (int step = 0; step < 3; ++step) {
    co_await rr.schedule();  // another request runs here
    ++checks;
    wrong_global += global_id != id;
    wrong_thread_local += thread_id != id;
    wrong_context += context_id.get() != id;
  }
}

int main() {
  round_robin rr;
  std::vector<ctxvars::spawned<void>> tasks;
  for (int id = 1; id <= 4; ++id) tasks.push_back(ctxvars::spawn(rr, request(rr, id)));
  rr.run();
  std::cout << "4 interleaved tasks on one thread, " << checks << " checks:\n"
            << "  global       wrong " << wrong_global << "\n"
            << "  thread_local wrong " << wrong_thread_local << "\n"
            << "  context_var  wrong " << wrong_context << "\n";

  // With plain threads, thread_local and context_var both isolate; a global does not.
  int threads_wrong_context = 0;
  std::vector<std::jthread> ts;
  for (int id = 1; id <= 4; ++id)
    ts.emplace_back([id, &threads_wrong_context] {
      (void)context_id.set(id);
      thread_id = id;
      std::this_thread::yield();
      if (context_id.get() != id) ++threads_wrong_context;
    });
  ts.clear();
  std::cout << "4 threads: context_var wrong " << threads_wrong_context << "\n";
  return (wrong_context == 0 && wrong_thread_local > 0 && threads_wrong_context == 0) ? 0 : 1;
}
