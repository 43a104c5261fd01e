// thread_pool: a small fixed set of threads that runs functions and resumes
// coroutines, FIFO. A scheduler for ctxvars::spawn (see task.hpp). Posted
// work runs in the worker thread's own context unless it carries one
// (ctxvars::bind, or a ctxvars::task).
#pragma once

#include "config.hpp"  // first: its C++20 check comes before <coroutine>'s

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "context.hpp"
#include "detail/debug_checks.hpp"
#include "detail/thread_state.hpp"
#include "detail/unique_function.hpp"

namespace ctxvars {

// A fixed set of threads resuming coroutines and running functions, FIFO.
// The destructor finishes the queued work (including work queued meanwhile),
// then joins. A posted function must not throw (the worker thread would
// terminate the process, as std::thread does).
//
// Destroyed by a thread that is inside a context (c.run(...), a task): that
// thread may be what queued work waits for — a task spawned into c on this
// pool can only run where c is held — so while it waits for the queue to
// drain it runs queued work itself, each function in a fresh empty context
// of its own (the held context's values never leak into posted work, nor
// posted work's sets into it). A task step whose context this thread holds
// runs there (see task/chain.hpp, "is the holder me?").
//
// Thread safety: post() and schedule() may be called from any thread,
// workers included, until the destructor has returned.
class thread_pool {
 public:
  // What post() queues: any move-only callable taking no arguments.
  using function = detail::unique_function;

  // Starts `threads` workers (at least one). Throws std::system_error if a
  // thread cannot be started (the ones already started are joined).
  explicit thread_pool(unsigned threads = std::thread::hardware_concurrency()) {
    if (threads == 0) threads = 1;
    try {
      for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
    } catch (...) {
      stop_and_join();
      throw;
    }
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() {
    const detail::thread_state& st = detail::this_thread_state();
    stop_and_join(st.current != nullptr && st.current != st.base);
  }

  // Runs f (any callable taking no arguments, move-only ones included) on a
  // pool thread, in whatever context that thread has (use ctxvars::bind(f)
  // to carry the caller's). Allocates the queue's slot, and f itself if it is
  // larger than three pointers (std::bad_alloc; then nothing was queued).
  void post(function f) {
    // Notify under the lock: once the work is queued, the pool may finish it
    // and be destroyed; the destructor takes the lock, so it waits for this.
    std::lock_guard lk(m_);
    q_.push_back(std::move(f));
    if (stopping_)
      cv_.notify_all();  // the destroying thread may be the one to run it
    else
      cv_.notify_one();
  }
  // co_await pool.schedule(): continue on a pool thread. await_suspend throws
  // std::bad_alloc if the work cannot be queued (the coroutine then resumes
  // at once, on the calling thread, with the exception).
  auto schedule() noexcept {
    struct awaiter {
      thread_pool* p;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) const { p->post([h] { h.resume(); }); }
      void await_resume() const noexcept {}
    };
    return awaiter{this};
  }
  std::size_t size() const noexcept { return workers_.size(); }

 private:
  // `help`: the calling thread holds a context (see the class comment), so
  // it runs queued work too until nothing is queued or running anywhere.
  void stop_and_join(bool help = false) noexcept {
    {
      std::unique_lock lk(m_);
      stopping_ = true;
      cv_.notify_all();
      while (help) {
        cv_.wait(lk, [&] { return !q_.empty() || running_ == 0; });
        if (q_.empty()) break;  // nothing queued, nothing running: nothing can be queued by the pool
        function f = std::move(q_.front());
        q_.pop_front();
        lk.unlock();
        run_in_fresh_context(std::move(f));
        lk.lock();
      }
    }
    for (auto& w : workers_) w.join();
  }
  // f must not throw (it terminates, as on a worker).
  static void run_in_fresh_context(function f) noexcept {
    std::optional<context> fresh;
    try {
      fresh.emplace();
    } catch (const std::bad_alloc&) {
      // No memory for a context: run f where we are.
    }
    if (fresh)
      fresh->run(f);
    else
      f();
  }
  void work() {
    std::unique_lock lk(m_);
    for (;;) {
      cv_.wait(lk, [&] { return stopping_ || !q_.empty(); });
      if (q_.empty()) return;  // stopping, and nothing left
      {
        function f = std::move(q_.front());
        q_.pop_front();
        ++running_;
        lk.unlock();
#if CTXVARS_DEBUG_CHECKS
        detail::debug::job_scope job("thread_pool job");
#endif
        f();
      }  // f (user code) destroyed outside the lock
      lk.lock();
      if (--running_ == 0 && stopping_) cv_.notify_all();  // a helping destructor waits for this
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<function> q_;
  bool stopping_ = false;
  unsigned running_ = 0;  // workers running a function now
  std::vector<std::thread> workers_;
};

}  // namespace ctxvars
