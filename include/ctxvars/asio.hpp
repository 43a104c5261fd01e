// ctxvars for standalone Asio: tasks (co_spawn) that run in their own context.
//
//   ctxvars::asio::co_spawn(ex, aw, token)      aw runs in a copy of the caller's
//                                              current context (asyncio.create_task)
//   ctxvars::asio::co_spawn(ex, ctx, aw, token) aw runs in ctx itself
//
// How: Asio has no suspend/resume hook, but every step of an awaitable — its
// start and every resumption after an asynchronous operation — is run through
// the coroutine's executor. co_spawn gives the coroutine a context_executor,
// which wraps the real executor and runs each function it is given inside the
// task's context. A coroutine that is co_awaited directly runs in the same
// step, so it shares its awaiter's context (Python's rule). When the task
// suspends, the step returns and the thread gets back the context it had.
//
// Rules and traps (see docs/coroutines.md):
//  - A context is entered by one thread at a time. Steps of tasks that share
//    one context (co_spawn(ex, ctx, ...) twice, or a handler posted to a task's
//    own executor) are serialised: a step waits while another thread is inside.
//    Never block inside a step waiting for another task of the same context.
//    Use ctxvars::asio::co_spawn (a copy per task) for nested tasks.
//  - Work posted to a task's own executor (co_await this_coro::executor) runs
//    in the task's context; post to the io_context's executor for a plain one.
//  - Asio's awaitable operators (a && b, a || b) and parallel groups run
//    branches of ONE task, in one context: a set in one branch is seen (and
//    can be undone) by the other. ctxvars::asio::gather runs each branch in its
//    own copy, like Python's asyncio.gather.
//  - Awaitables must use a polymorphic executor (asio::awaitable<T>, whose
//    executor is asio::any_io_executor).
//
// Requires ctxvars::asio (CMake), which also makes Asio 1.22's coroutines
// visible to clang++ 14 with libstdc++ (ASIO_HAS_CO_AWAIT, ASIO_HAS_STD_COROUTINE).
#pragma once

#include <asio.hpp>
#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/execution.hpp>
#include <asio/execution_context.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/parallel_group.hpp>

#include <exception>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include "ctxvars.hpp"

namespace ctxvars::asio {

namespace detail {

// Makes a task's context current for one step run by an executor.
//  - already current (a dispatch completing inline): nothing to do;
//  - entered by this thread further down the stack (a handler of another task
//    dispatched inline inside this one's step): switch back to it for the step;
//  - entered by another thread: that thread is finishing a step of the same
//    task (Asio posts the next step before the current one returns), or of a
//    task sharing the context: wait until it leaves. Steps of tasks that share
//    one context are thereby serialised, like handlers on a strand.
class step_scope {
 public:
  explicit step_scope(ctxvars::detail::context_impl* c) : c_(c) {
    ctxvars::detail::thread_state& st = ctxvars::detail::this_thread_state();
    if (st.current == c) {
      mode_ = mode::none;
      return;
    }
    if (c->entered_by_this_thread()) {
      mode_ = mode::switched;
    } else {
      for (unsigned spins = 0; !c->try_enter(); ++spins)
        if (spins > 64) std::this_thread::yield();
      mode_ = mode::entered;
    }
    r_ = ctxvars::detail::switch_to(st, c);
  }
  step_scope(const step_scope&) = delete;
  step_scope& operator=(const step_scope&) = delete;
  ~step_scope() {
    if (mode_ == mode::none) return;
    if (mode_ == mode::entered)
      ctxvars::detail::leave_context(c_, r_);
    else
      ctxvars::detail::switch_back(ctxvars::detail::this_thread_state(), c_, r_);
  }

 private:
  enum class mode { none, switched, entered };
  ctxvars::detail::context_impl* c_;
  ctxvars::detail::switch_record r_{};
  mode mode_;
};

// One counted reference to a context's shared state, with real moves (a
// ctxvars::context handle copies on move, and Asio moves executors and
// handlers around on every resumption: each copy is a locked instruction).
class context_ref {
 public:
  explicit context_ref(ctxvars::detail::context_impl* c) noexcept : c_(c) { c_->retain(); }
  context_ref(const context_ref& o) noexcept : c_(o.c_) {
    if (c_) c_->retain();
  }
  context_ref(context_ref&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  context_ref& operator=(context_ref o) noexcept {
    std::swap(c_, o.c_);
    return *this;
  }
  ~context_ref() {
    if (c_) c_->release();
  }
  ctxvars::detail::context_impl* get() const noexcept { return c_; }

 private:
  ctxvars::detail::context_impl* c_;
};

// A function object that runs `f` inside a context.
template <class F>
struct in_context {
  context_ref ctx;
  F f;
  void operator()() {
    step_scope s(ctx.get());
    std::move(f)();
  }
};
}  // namespace detail

// An executor that runs everything submitted to it inside one context.
// Every property query, require and prefer is forwarded to the wrapped
// executor (requires re-wrap the result), so it fits asio::any_io_executor.
template <class Executor>
class context_executor {
 public:
  using inner_executor_type = Executor;

  context_executor(Executor ex, const ctxvars::context& ctx) noexcept(
      std::is_nothrow_move_constructible_v<Executor>)
      : ex_(std::move(ex)), ctx_(ctxvars::detail::context_access::impl(ctx)) {}

  const Executor& get_inner_executor() const noexcept { return ex_; }
  // The context every function submitted here runs in.
  ctxvars::context get_context() const noexcept { return ctxvars::detail::context_access::make(ctx_.get()); }

  template <class F>
  void execute(F&& f) const {
    ::asio::execution::execute(ex_, detail::in_context<std::decay_t<F>>{ctx_, std::forward<F>(f)});
  }

  template <class P>
    requires ::asio::can_query<const Executor&, P>::value
  decltype(auto) query(const P& p) const
      noexcept(::asio::is_nothrow_query<const Executor&, P>::value) {
    return ::asio::query(ex_, p);
  }
  template <class P>
    requires ::asio::can_require<const Executor&, P>::value
  auto require(const P& p) const {
    using inner = std::decay_t<decltype(::asio::require(ex_, p))>;
    return context_executor<inner>(::asio::require(ex_, p), ctx_);
  }
  template <class E>
  context_executor(E ex, detail::context_ref ctx) noexcept : ex_(std::move(ex)), ctx_(std::move(ctx)) {}
  template <class P>
    requires ::asio::can_prefer<const Executor&, P>::value
  auto prefer(const P& p) const {
    using inner = std::decay_t<decltype(::asio::prefer(ex_, p))>;
    return context_executor<inner>(::asio::prefer(ex_, p), ctx_);
  }

  friend bool operator==(const context_executor& a, const context_executor& b) noexcept {
    return a.ex_ == b.ex_ && a.ctx_.get() == b.ctx_.get();
  }
  friend bool operator!=(const context_executor& a, const context_executor& b) noexcept {
    return !(a == b);
  }

 private:
  template <class>
  friend class context_executor;
  Executor ex_;
  detail::context_ref ctx_;
};

namespace detail {

template <class T>
struct is_context_executor : std::false_type {};
template <class E>
struct is_context_executor<context_executor<E>> : std::true_type {};

template <class Ex>
concept executor_like = ::asio::execution::is_executor<Ex>::value || ::asio::is_executor<Ex>::value;

// The executor under any context_executor layer, so that a task spawned from
// inside another task does not also try to enter its parent's context.
template <class Ex>
auto unwrap(const Ex& ex) {
  if constexpr (is_context_executor<Ex>::value) {
    return unwrap(ex.get_inner_executor());
  } else if constexpr (std::is_same_v<Ex, ::asio::any_io_executor>) {
    using io_ex = ::asio::io_context::executor_type;
    if (auto* p = ex.template target<context_executor<io_ex>>())
      return ::asio::any_io_executor(p->get_inner_executor());
    if (auto* p = ex.template target<context_executor<::asio::any_io_executor>>())
      return unwrap(p->get_inner_executor());
    if (auto* p = ex.template target<context_executor<::asio::strand<io_ex>>>())
      return ::asio::any_io_executor(p->get_inner_executor());
    if (auto* p = ex.template target<context_executor<::asio::strand<::asio::any_io_executor>>>())
      return ::asio::any_io_executor(p->get_inner_executor());
    return ex;
  } else {
    return ex;
  }
}

template <class F>
using awaitable_of = std::invoke_result_t<F>;

template <class T>
struct is_awaitable : std::false_type {};
template <class T, class E>
struct is_awaitable<::asio::awaitable<T, E>> : std::true_type {};

}  // namespace detail

// ---- co_spawn: an executor -------------------------------------------------------

// Runs `aw` in `c` itself (asyncio.create_task(coro, context=c)).
template <detail::executor_like Executor, class T, class AwaitableExecutor,
          class CompletionToken = ::asio::default_completion_token_t<Executor>>
auto co_spawn(const Executor& ex, ctxvars::context c, ::asio::awaitable<T, AwaitableExecutor> aw,
              CompletionToken&& token = ::asio::default_completion_token_t<Executor>()) {
  auto base = detail::unwrap(ex);
  return ::asio::co_spawn(context_executor<decltype(base)>(std::move(base), std::move(c)),
                          std::move(aw), std::forward<CompletionToken>(token));
}

// Runs `aw` in a copy of the caller's current context (asyncio.create_task(coro)).
template <detail::executor_like Executor, class T, class AwaitableExecutor,
          class CompletionToken = ::asio::default_completion_token_t<Executor>>
auto co_spawn(const Executor& ex, ::asio::awaitable<T, AwaitableExecutor> aw,
              CompletionToken&& token = ::asio::default_completion_token_t<Executor>()) {
  return ctxvars::asio::co_spawn(ex, ctxvars::copy_context(), std::move(aw),
                                 std::forward<CompletionToken>(token));
}

// The function-object forms: f() returns the awaitable and is kept alive
// until the task ends (the safe way to write a lambda task with captures).
template <detail::executor_like Executor, class F,
          class CompletionToken = ::asio::default_completion_token_t<Executor>>
  requires detail::is_awaitable<std::decay_t<detail::awaitable_of<std::decay_t<F>&>>>::value
auto co_spawn(const Executor& ex, ctxvars::context c, F&& f,
              CompletionToken&& token = ::asio::default_completion_token_t<Executor>()) {
  auto base = detail::unwrap(ex);
  return ::asio::co_spawn(context_executor<decltype(base)>(std::move(base), std::move(c)),
                          std::forward<F>(f), std::forward<CompletionToken>(token));
}
template <detail::executor_like Executor, class F,
          class CompletionToken = ::asio::default_completion_token_t<Executor>>
  requires detail::is_awaitable<std::decay_t<detail::awaitable_of<std::decay_t<F>&>>>::value
auto co_spawn(const Executor& ex, F&& f,
              CompletionToken&& token = ::asio::default_completion_token_t<Executor>()) {
  return ctxvars::asio::co_spawn(ex, ctxvars::copy_context(), std::forward<F>(f),
                                 std::forward<CompletionToken>(token));
}

// ---- co_spawn: an execution context (asio::io_context&, thread_pool&, ...) ------

template <class ExecutionContext, class T, class AwaitableExecutor,
          class CompletionToken =
              ::asio::default_completion_token_t<typename ExecutionContext::executor_type>>
  requires std::is_convertible_v<ExecutionContext&, ::asio::execution_context&>
auto co_spawn(ExecutionContext& ctx, ctxvars::context c, ::asio::awaitable<T, AwaitableExecutor> aw,
              CompletionToken&& token =
                  ::asio::default_completion_token_t<typename ExecutionContext::executor_type>()) {
  return ctxvars::asio::co_spawn(ctx.get_executor(), std::move(c), std::move(aw),
                                 std::forward<CompletionToken>(token));
}
template <class ExecutionContext, class T, class AwaitableExecutor,
          class CompletionToken =
              ::asio::default_completion_token_t<typename ExecutionContext::executor_type>>
  requires std::is_convertible_v<ExecutionContext&, ::asio::execution_context&>
auto co_spawn(ExecutionContext& ctx, ::asio::awaitable<T, AwaitableExecutor> aw,
              CompletionToken&& token =
                  ::asio::default_completion_token_t<typename ExecutionContext::executor_type>()) {
  return ctxvars::asio::co_spawn(ctx.get_executor(), std::move(aw),
                                 std::forward<CompletionToken>(token));
}
template <class ExecutionContext, class F,
          class CompletionToken =
              ::asio::default_completion_token_t<typename ExecutionContext::executor_type>>
  requires std::is_convertible_v<ExecutionContext&, ::asio::execution_context&> &&
           detail::is_awaitable<std::decay_t<detail::awaitable_of<std::decay_t<F>&>>>::value
auto co_spawn(ExecutionContext& ctx, F&& f,
              CompletionToken&& token =
                  ::asio::default_completion_token_t<typename ExecutionContext::executor_type>()) {
  return ctxvars::asio::co_spawn(ctx.get_executor(), std::forward<F>(f),
                                 std::forward<CompletionToken>(token));
}

// ---- gather: concurrent branches, each in its own copy -----------------------------

namespace detail {
template <class Tuple, std::size_t... I>
auto gather_results(Tuple& r, std::index_sequence<I...>) {
  // r = (completion order, e0, v0, e1, v1, ...)
  const std::exception_ptr errors[] = {std::get<1 + 2 * I>(r)...};
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return std::make_tuple(std::move(std::get<2 + 2 * I>(r))...);
}
}  // namespace detail

// co_await gather(a, b, ...) runs every awaitable as its own task, each in a
// copy of the awaiting task's context (Python's asyncio.gather), concurrently,
// and resumes with a tuple of their results once all have finished. If any
// branch throws, the first exception in argument order is rethrown after all
// have finished. Branches must return a value (not awaitable<void>).
template <class... T>
::asio::awaitable<std::tuple<T...>> gather(::asio::awaitable<T>... branches) {
  static_assert(sizeof...(T) > 0, "gather needs at least one branch");
  static_assert((!std::is_void_v<T> && ...), "gather branches must return a value");
  auto ex = co_await ::asio::this_coro::executor;
  auto r = co_await ::asio::experimental::make_parallel_group(
               ctxvars::asio::co_spawn(ex, std::move(branches), ::asio::experimental::deferred)...)
               .async_wait(::asio::experimental::wait_for_all(), ::asio::use_awaitable);
  co_return detail::gather_results(r, std::index_sequence_for<T...>{});
}

}  // namespace ctxvars::asio

// ---- callbacks: ctxvars::bind keeps the handler's associations -------------------
//
// asio::post(ex, ctxvars::bind(h)) or timer.async_wait(ctxvars::bind(h)): the
// bound function object reports h's associated executor, allocator and
// cancellation slot (and any other associator), so binding a context never
// moves a handler off its strand or drops its cancellation slot.
namespace asio {
template <template <typename, typename> class Associator, class F, class DefaultCandidate>
struct associator<Associator, ::ctxvars::detail::snapshot_bound<F>, DefaultCandidate> {
  using type = typename Associator<F, DefaultCandidate>::type;
  static type get(const ::ctxvars::detail::snapshot_bound<F>& b,
                  const DefaultCandidate& c = DefaultCandidate()) noexcept {
    return Associator<F, DefaultCandidate>::get(b.function(), c);
  }
};
template <template <typename, typename> class Associator, class F, class DefaultCandidate>
struct associator<Associator, ::ctxvars::detail::context_bound<F>, DefaultCandidate> {
  using type = typename Associator<F, DefaultCandidate>::type;
  static type get(const ::ctxvars::detail::context_bound<F>& b,
                  const DefaultCandidate& c = DefaultCandidate()) noexcept {
    return Associator<F, DefaultCandidate>::get(b.function(), c);
  }
};
}  // namespace asio
