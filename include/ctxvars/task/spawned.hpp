// ctxvars/task/spawned.hpp — spawned<T>, the join handle of a spawned task.
// Included by <ctxvars/task.hpp> (include that one).
#pragma once

#include <coroutine>
#include <memory>
#include <stdexcept>
#include <utility>

#include "spawn_state.hpp"

namespace ctxvars {
// A handle to a spawned task: await it from a task (once), or block on get()
// (once). Move-only, like std::future: the result is moved out to the one
// taker; a second get() or co_await, or a second coroutine awaiting while one
// already waits, throws std::logic_error. Destroying the handle detaches the
// task (it runs on; its result is dropped).
template <class T>
class spawned {
 public:
  explicit spawned(std::shared_ptr<detail::spawn_state<T>> s) noexcept : st_(std::move(s)) {}
  spawned(spawned&&) noexcept = default;
  spawned& operator=(spawned&&) noexcept = default;
  spawned(const spawned&) = delete;
  spawned& operator=(const spawned&) = delete;

  // True while the result can still be taken (not moved from, not taken).
  bool valid() const { return st_ && !st_->taken(); }
  // True once the task finished. Throws std::logic_error on a moved-from handle.
  bool done() const { return state().done(); }
  // Blocks until the task finished; returns its value or rethrows its
  // exception. Throws std::logic_error if the result was already taken, and
  // context_in_use_error if the calling thread is inside the task's explicit
  // context (the task could never run: leave it first).
  T get() {
    state().wait();
    return st_->take();
  }
  // Asks the task to stop (see this_task::stop_token). No effect on a
  // moved-from handle.
  void request_stop() noexcept {
    if (st_) st_->stop_source().request_stop();
  }

  struct awaiter {
    std::shared_ptr<detail::spawn_state<T>> st;
    bool await_ready() const { return st->done(); }
    bool await_suspend(std::coroutine_handle<> h) { return st->set_waiter(h); }
    T await_resume() { return st->take(); }
  };
  // co_await s (from a task: the awaiting task keeps its own context).
  awaiter operator co_await() const {
    (void)state();
    return awaiter{st_};
  }

 private:
  detail::spawn_state<T>& state() const {
    if (!st_) throw std::logic_error("ctxvars: use of a moved-from spawned<T>");
    return *st_;
  }
  std::shared_ptr<detail::spawn_state<T>> st_;
};
}  // namespace ctxvars
