// ctxvars/task/spawn_state.hpp — what a spawned task and its join handle
// share: the outcome, the waiter, the stop source. Internal to <ctxvars/task.hpp>.
#pragma once

#include <condition_variable>
#include <coroutine>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <variant>

#include "../errors.hpp"
#include "promise.hpp"

namespace ctxvars {
namespace detail {

[[noreturn]] inline void throw_result_taken() {
  throw std::logic_error(
      "ctxvars: this spawned task's result was already taken (spawned<T> is move-only: its value or "
      "exception is taken once, by get() or by one co_await)");
}
[[noreturn]] inline void throw_second_waiter() {
  throw std::logic_error(
      "ctxvars: this spawned task is already awaited by another coroutine (spawned<T> is move-only: "
      "one get() or one co_await)");
}

// The shared state between a spawned task and its join handle.
//
// Thread safety: `m_` orders everything. The value is written by the task's
// last step before finish() publishes done_ under the lock, and read by the
// one caller that claimed it (taken_) after seeing done_ under the lock; user
// code (T's moves, destructors) never runs under the lock.
template <class T>
class spawn_state : public std::enable_shared_from_this<spawn_state<T>> {
 public:
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

  // The task's outcome, recorded by its last step (not yet visible). A
  // throwing construction propagates (the caller records it as the error).
  template <class... U>
  void set_value(U&&... v) {
    value_.emplace(std::forward<U>(v)...);  // constructed in place: no assignment
  }
  void set_error(std::exception_ptr e) noexcept { error_ = std::move(e); }

  // An explicit context the task runs in (retained until the task ended), so
  // that get() from a thread inside it fails instead of waiting forever.
  void watch_context(context_impl* c) noexcept {
    c->retain();
    ctx_ = c;
  }

  // Runs after the task left its context: frees the driving frame (and with
  // it the task's context and values), then publishes the outcome and returns
  // the awaiting coroutine, if any, for symmetric transfer (so a chain of
  // tasks awaiting one another unwinds at constant stack depth).
  // So when get() returns, the task is gone.
  static std::coroutine_handle<> finish(promise_base& p, void* self) noexcept {
    auto keep = static_cast<spawn_state*>(self)->shared_from_this();
    const std::exception_ptr frame_error = p.error();
    std::coroutine_handle<task_promise<void>>::from_promise(static_cast<task_promise<void>&>(p)).destroy();
    context_impl* ctx;
    {
      std::lock_guard lk(keep->m_);
      ctx = std::exchange(keep->ctx_, nullptr);
    }
    if (ctx) ctx->release();  // may run value destructors: not under the lock
    std::coroutine_handle<> cont;
    {
      std::lock_guard lk(keep->m_);
      if (!keep->value_ && !keep->error_)
        keep->error_ = frame_error ? frame_error
                                   : std::make_exception_ptr(std::logic_error("ctxvars: task ended without a result"));
      keep->done_ = true;
      cont = std::exchange(keep->waiter_, nullptr);
      keep->cv_.notify_all();
    }
    return cont ? cont : std::noop_coroutine();
  }
  bool done() const {
    std::lock_guard lk(m_);
    return done_;
  }
  // Blocks until done, running the coroutines queued for this waiting thread
  // meanwhile (sync_wait with an explicit context: see local_schedule).
  // Throws context_in_use_error if the calling thread is inside the task's
  // explicit context: the task could never enter it.
  void wait() {
    std::unique_lock lk(m_);
    for (;;) {
      if (!done_ && ctx_ && ctx_->entered_by_this_thread())
        throw context_in_use_error(
            "ctxvars: waiting for a task from a thread that is inside the task's context: the task could never "
            "enter it (leave the context first, or co_await the task)");
      cv_.wait(lk, [&] { return done_ || !local_.empty(); });
      if (local_.empty()) return;
      const std::coroutine_handle<> h = local_.front();
      local_.pop_front();
      lk.unlock();
      h.resume();
      lk.lock();
    }
  }
  // false: already done, do not suspend. Throws std::logic_error if another
  // coroutine already waits or the result was taken.
  bool set_waiter(std::coroutine_handle<> h) {
    std::lock_guard lk(m_);
    if (taken_) throw_result_taken();
    if (waiter_) throw_second_waiter();
    if (done_) return false;
    waiter_ = h;
    return true;
  }
  // The outcome, once: rethrows the task's exception, or moves the value out.
  // If the move throws, the exception propagates and the value stays for
  // another try.
  T take() {
    {
      std::lock_guard lk(m_);
      if (taken_) throw_result_taken();
      taken_ = true;
      if (error_) std::rethrow_exception(error_);
    }
    if constexpr (!std::is_void_v<T>) {
      try {
        T r = std::move(*value_);
        value_.reset();  // the moved-from shell dies now, not with the last handle
        return r;
      } catch (...) {
        std::lock_guard lk(m_);
        taken_ = false;
        throw;
      }
    }
  }
  bool taken() const {
    std::lock_guard lk(m_);
    return taken_;
  }
  std::stop_source& stop_source() noexcept { return stop_; }

  // A scheduler whose work runs on the thread blocked in wait(): sync_wait's.
  struct local_schedule {
    spawn_state* st;
    auto operator()() const noexcept {
      struct awaiter {
        spawn_state* st;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) const {
          std::lock_guard lk(st->m_);
          st->local_.push_back(h);
          st->cv_.notify_all();
        }
        void await_resume() const noexcept {}
      };
      return awaiter{st};
    }
  };

  ~spawn_state() {
    if (ctx_) ctx_->release();  // the task never started (start failed)
  }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  bool done_ = false;
  bool taken_ = false;
  std::optional<stored> value_;
  std::exception_ptr error_;
  std::coroutine_handle<> waiter_;
  context_impl* ctx_ = nullptr;
  std::deque<std::coroutine_handle<>> local_;
  std::stop_source stop_;
};

}  // namespace detail
}  // namespace ctxvars
