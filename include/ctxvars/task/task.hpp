// ctxvars/task/task.hpp — task<T>, the lazy coroutine, and this_task.
// Included by <ctxvars/task.hpp> (include that one).
#pragma once

#include <coroutine>
#include <type_traits>
#include <utility>

#include "promise.hpp"

namespace ctxvars {
namespace this_task {
// co_await this_task::stop_token() inside a task: the stop token of the
// spawned task it belongs to (never stopped for sync_wait).
inline detail::stop_token_request stop_token() noexcept { return {}; }
}  // namespace this_task

// A lazy coroutine: nothing runs until it is awaited or spawned. Move-only;
// destroying a task that never ran destroys its frame. T may be any object
// type that is move- or copy-constructible (const members, no default
// constructor, over-aligned and throwing moves all work: a move that throws
// fails the task with that exception).
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using value_type = T;

  task(task&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  task& operator=(task o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  ~task() {
    if (h_) h_.destroy();
  }

  struct awaiter {
    std::coroutine_handle<promise_type> h;
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
      h.promise().set_continuation(parent);
      if constexpr (std::is_base_of_v<detail::promise_base, P>) h.promise().set_chain(parent.promise().chain());
      return h;  // run the child now, on this thread, in the same context
    }
    T await_resume() { return h.promise().take(); }
  };
  // Awaiting a task runs it in the awaiter's context (Python: `await coro`).
  awaiter operator co_await() && noexcept { return awaiter{h_}; }

  std::coroutine_handle<promise_type> release() noexcept { return std::exchange(h_, nullptr); }

 private:
  friend promise_type;
  explicit task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}
}  // namespace detail
}  // namespace ctxvars
