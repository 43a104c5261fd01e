// to_thread: run a blocking function on a pool in a copy of the awaiting
// task's context (Python's asyncio.to_thread).
// Part of the Asio adapter (one implementation for both Asios; see adapter.hpp).
#pragma once

#include <functional>
#include <type_traits>
#include <utility>

#include "co_spawn.hpp"

namespace ctxvars::detail::asio_adapter {

// The pool side: calls f once, in the context co_spawn gave it.
template <class Traits, class R, class F>
typename Traits::template awaitable<R> call_once(F f) {
  if constexpr (std::is_void_v<R>) {
    std::invoke(f);
    co_return;
  } else {
    co_return std::invoke(f);
  }
}

// The awaiting side: snapshot the task's context when awaited (not when
// to_thread is called: an awaitable starts when awaited), run f as a task of
// its own on `where`, and resume through the awaiting handler's executor — the
// task's own — with the result or the exception.
template <class Traits, class R, class Where, class F>
typename Traits::template awaitable<R> to_thread_body(Where where, F f) {
  co_return co_await co_spawn_fn<Traits>{}(where, ctxvars::fork_context(),
                                          call_once<Traits, R>(std::move(f)), Traits::use_awaitable());
}

template <class Traits>
struct to_thread_fn {
  template <class F>
  using result_t = std::remove_cvref_t<std::invoke_result_t<std::decay_t<F>&>>;

  // On an executor (a thread_pool's, a strand, any_io_executor, ...).
  template <class Executor, class F>
    requires executor_like<Traits, Executor> && std::is_invocable_v<std::decay_t<F>&>
  auto operator()(const Executor& ex, F&& f) const {
    return to_thread_body<Traits, result_t<F>>(ex, std::decay_t<F>(std::forward<F>(f)));
  }
  // On an execution context (thread_pool&, io_context&): its executor.
  template <class ExecutionContext, class F>
    requires execution_context_like<Traits, ExecutionContext> && std::is_invocable_v<std::decay_t<F>&>
  auto operator()(ExecutionContext& ctx, F&& f) const {
    return to_thread_body<Traits, result_t<F>>(ctx.get_executor(), std::decay_t<F>(std::forward<F>(f)));
  }
};

}  // namespace ctxvars::detail::asio_adapter
