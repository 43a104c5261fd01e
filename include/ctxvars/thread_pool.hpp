// thread_pool: a small fixed set of threads that runs functions and resumes
// coroutines, FIFO. A scheduler for ctxvars::spawn (see task.hpp); it knows
// nothing about contexts itself: posted work runs in the worker thread's own
// context unless it carries one (ctxvars::bind, or a ctxvars::task).
#pragma once

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "detail/debug_checks.hpp"

namespace ctxvars {

// A fixed set of threads resuming coroutines and running functions, FIFO.
// The destructor finishes the queued work (including work queued meanwhile),
// then joins. A posted function must not throw (the worker thread would
// terminate the process, as std::thread does).
class thread_pool {
 public:
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
  ~thread_pool() { stop_and_join(); }

  // Runs f on a pool thread, in whatever context that thread has (use
  // ctxvars::bind(f) to carry the caller's). Allocates (std::bad_alloc).
  void post(std::function<void()> f) {
    // Notify under the lock: once the work is queued, the pool may finish it
    // and be destroyed; the destructor takes the lock, so it waits for this.
    std::lock_guard lk(m_);
    q_.push_back(std::move(f));
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
  void stop_and_join() noexcept {
    {
      std::lock_guard lk(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  void work() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock lk(m_);
        cv_.wait(lk, [&] { return stopping_ || !q_.empty(); });
        if (q_.empty()) return;
        f = std::move(q_.front());
        q_.pop_front();
      }
#if CTXVARS_DEBUG_CHECKS
      detail::debug::job_scope job("thread_pool job");
#endif
      f();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace ctxvars
