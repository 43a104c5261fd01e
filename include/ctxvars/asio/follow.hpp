// Following a task's coroutine through completions that Asio delivers through
// ANOTHER executor than the task's own.
//
// Why. A task's steps run through its context_executor, and every completion
// of an awaited operation normally goes through the awaiting handler's
// associated executor, which is the task's. A completion token bound to
// another executor — `net::bind_executor(pool, net::use_awaitable)`, the
// common way to hop a coroutine onto a pool or a strand, also inside
// as_tuple / redirect_error / bind_cancellation_slot — makes Asio resume the
// coroutine through that executor instead: no wrapper of ours would run, the
// coroutine would go on in the pool thread's own context, and its writes would
// leak into the next job on that thread.
//
// How. Each Asio face (<ctxvars/asio.hpp>, <ctxvars/boost_asio.hpp>) declares
// a constrained partial specialisation of Asio's async_result for
// executor_binder<T, Ex> whose T resumes a coroutine (use_awaitable_t, or one
// of the token adapters around it), or is deferred (initiated later, where it
// is consumed: followed when that is inside a task's step, whatever the
// consumer). Its initiation binds the handler to
// follow_executor<Ex> instead of Ex: the same executor, plus the task that is
// awaiting (the task of the step the initiation runs in). Every function the
// operation submits through it runs inside that task's context exactly as a
// step on the task's own executor does (in_context: enter, or wait a little,
// or give way; nothing after the task finished). Outside a task (a plain
// asio::co_spawn coroutine) it is the bare executor.
//
// Cost: nothing on paths without a bound token; with one, a task reference per
// copy of the bound executor (biased: no locked instruction on the task's own
// thread) and one step scope per resumption, as for the task's own executor.
//
// The one-definition rule. The specialisation is chosen where it is visible:
// a file that awaits a bound token without including an adapter header gets
// Asio's own, and its resumptions are not followed (docs/coroutines.md says
// which paths are followed; debug checks report a write that leaks). Both
// definitions return the same type and differ only in the handler type they
// build, so a program mixing such files keeps working either way.
#pragma once

#include <type_traits>
#include <utility>

#include "context_executor.hpp"

namespace ctxvars::detail::asio_adapter {

// The task of the step running on this thread (null outside any task step).
inline task_ref current_task() noexcept {
  step_scope* s = innermost_step;
  task_block* b = s ? s->block() : nullptr;
  if (!b) return task_ref();
  b->retain();
  return task_ref(b);
}

// The executor a bound token names, plus the awaiting task (or none). Its
// members and property forwarding are context_executor's (wrapping_executor);
// only execute and == differ.
template <class Traits, class Executor>
class follow_executor : public wrapping_executor<follow_executor<Traits, Executor>, Traits, Executor> {
  using base = wrapping_executor<follow_executor<Traits, Executor>, Traits, Executor>;

 public:
  follow_executor(Executor ex, task_ref t) noexcept(std::is_nothrow_move_constructible_v<Executor>)
      : base(std::move(ex), std::move(t)) {}

  template <class F>
  void execute(F&& f) const {
    if (!this->task_.get()) {
      Traits::execute(this->ex_, std::forward<F>(f));
      return;
    }
    Traits::execute(this->ex_, in_context<Traits, Executor, std::decay_t<F>>{
                                   basic_context_executor<Traits, Executor>(this->ex_, this->task_),
                                   std::forward<F>(f)});
  }

  friend bool operator==(const follow_executor& a, const follow_executor& b) noexcept {
    return a.ex_ == b.ex_ && a.task_.get() == b.task_.get();
  }
  friend bool operator!=(const follow_executor& a, const follow_executor& b) noexcept { return !(a == b); }
};

// The body of the async_result specialisation the faces declare for
// executor_binder<T, Executor> when T resumes a coroutine: Asio's own
// behaviour, with the handler bound to follow_executor<Executor>.
template <class Traits, class T, class Executor, class Signature>
class follow_async_result : public Traits::template binder_return_type<T, Signature> {
 public:
  template <class Initiation>
  struct init_wrapper {
    Executor ex_;
    Initiation initiation_;

    template <class Handler, class... Args>
    void operator()(Handler&& handler, Args&&... args) {
      using fex = follow_executor<Traits, Executor>;
      std::move(initiation_)(typename Traits::template executor_binder<std::decay_t<Handler>, fex>(
                                 Traits::executor_arg, fex(ex_, current_task()), std::forward<Handler>(handler)),
                             std::forward<Args>(args)...);
    }
    template <class Handler, class... Args>
    void operator()(Handler&& handler, Args&&... args) const {
      using fex = follow_executor<Traits, Executor>;
      initiation_(typename Traits::template executor_binder<std::decay_t<Handler>, fex>(
                      Traits::executor_arg, fex(ex_, current_task()), std::forward<Handler>(handler)),
                  std::forward<Args>(args)...);
    }
  };

  template <class Initiation, class RawCompletionToken, class... Args>
  static auto initiate(Initiation&& initiation, RawCompletionToken&& token, Args&&... args) {
    return Traits::template async_initiate<T, Signature>(
        init_wrapper<std::decay_t<Initiation>>{token.get_executor(), std::forward<Initiation>(initiation)},
        token.get(), std::forward<Args>(args)...);
  }
};

}  // namespace ctxvars::detail::asio_adapter
