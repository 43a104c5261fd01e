// ctxvars for standalone Asio: tasks (co_spawn) that run in their own context.
//
//   ctxvars::asio::co_spawn(ex, aw, token)      aw runs in a copy of the caller's
//                                              current context (asyncio.create_task)
//   ctxvars::asio::co_spawn(ex, ctx, aw, token) aw runs in ctx itself
//   co_await ctxvars::asio::gather(a, b, ...)  each branch in its own copy
//   ctxvars::asio::context_executor<E>         runs everything in one context
//   co_await ctxvars::asio::to_thread(pool, f) f() on pool in a copy of the task's
//                                              context (asyncio.to_thread)
//   ctxvars::asio::async_generator<T> g(ex, f) f(generator_yield<T>) is an Asio
//                                              coroutine producing values (co_await
//                                              out.yield(v)) in its own context layer
//                                              over each pull's (co_await g.next())
//
// Every resumption of a task's coroutine runs in the task's context, also when
// the completion is bound to another executor (bind_executor(pool,
// use_awaitable) and token adapters around it: asio/follow.hpp).
//
// `ex` is any executor (io_context executors, strands, thread_pool executors,
// system_executor, any_io_executor holding one of them) or an execution
// context (io_context&, thread_pool&); `aw` is an asio::awaitable<T> or a
// function object returning one (kept alive until the task ends); any
// completion token. A task spawned from inside a task runs on its parent's
// executor, strand included. The implementation (one for both Asios) and the
// rules it follows are in asio/adapter.hpp; see also
// docs/coroutines.md. The same adapter for Boost.Asio: <ctxvars/boost_asio.hpp>.
//
// Rules and traps:
//  - A context is entered by one thread at a time. Steps of tasks that share
//    one context (co_spawn(ex, ctx, ...) twice) are serialised; a step never
//    waits while its thread holds another context: it is queued instead (in
//    order: a task's steps that could not run keep their FIFO order).
//    Never block inside a step waiting for another task of the same context.
//  - Work posted to a task's own executor (co_await this_coro::executor) runs
//    in the task's context while the task runs; post to the io_context's
//    executor for a plain one.
//  - Asio's awaitable operators (a && b, a || b) and parallel groups run
//    branches of ONE task, in one context; gather gives each its own copy.
//  - `using namespace ctxvars;` makes `asio::` ambiguous (::asio or
//    ctxvars::asio): write `::asio::` for Asio's names in such code.
//
// Requires the CMake target ctxvars::asio, which also makes Asio 1.22's
// coroutines visible to clang++ 14 with libstdc++ (ASIO_HAS_CO_AWAIT,
// ASIO_HAS_STD_COROUTINE).
#pragma once

#include <asio/detail/config.hpp>

#if !defined(ASIO_HAS_CO_AWAIT) || !defined(ASIO_HAS_STD_COROUTINE)
#error "ctxvars/asio.hpp needs Asio's C++20 coroutines, which Asio 1.22 does not detect under clang with libstdc++: define ASIO_HAS_CO_AWAIT=1 and ASIO_HAS_STD_COROUTINE=1 (the CMake target ctxvars::asio does), and compile with -std=c++20"
#endif

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/bind_allocator.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/experimental/append.hpp>
#include <asio/experimental/as_single.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/prepend.hpp>
#include <asio/associated_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/execution.hpp>
#include <asio/execution_context.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <asio/system_executor.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>

#include "asio/adapter.hpp"
#include "asio/async_generator.hpp"
#include "asio/follow.hpp"
#include "asio/to_thread.hpp"
#include "detail/awaitable_adapter.hpp"

#if CTXVARS_DEBUG_CHECKS  // the leak check's view of this Asio's event loop
#include <asio/detail/thread_context.hpp>

#include "detail/debug_asio_probe.hpp"
namespace ctxvars::detail::debug {
inline const bool asio_probe = asio_probe_registered<::asio::detail::thread_context>;
}
#endif


namespace ctxvars::asio {

// Which Asio the adapter serves: standalone Asio (namespace ::asio).
struct traits {
  static constexpr bool is_boost = false;
  template <class T, class E = ::asio::any_io_executor>
  using awaitable = ::asio::awaitable<T, E>;
  using any_io_executor = ::asio::any_io_executor;
  using io_executor = ::asio::io_context::executor_type;
  using thread_pool_executor = ::asio::thread_pool::executor_type;
  using system_executor = ::asio::system_executor;
  template <class E>
  using strand = ::asio::strand<E>;
  using execution_context = ::asio::execution_context;
  template <class E>
  using default_completion_token_t = ::asio::default_completion_token_t<E>;

  template <class A>
  struct is_awaitable : std::false_type {};
  template <class T, class E>
  struct is_awaitable<::asio::awaitable<T, E>> : std::true_type {};

  template <class E>
  static constexpr bool is_executor = ::asio::execution::is_executor<E>::value || ::asio::is_executor<E>::value;
  template <class E, class P>
  static constexpr bool can_query = ::asio::can_query<E, P>::value;
  template <class E, class P>
  static constexpr bool is_nothrow_query = ::asio::is_nothrow_query<E, P>::value;
  template <class E, class P>
  static constexpr bool can_require = ::asio::can_require<E, P>::value;
  template <class E, class P>
  static constexpr bool can_prefer = ::asio::can_prefer<E, P>::value;

  template <class E, class F>
  static void execute(const E& e, F&& f) { ::asio::execution::execute(e, std::forward<F>(f)); }
  template <class E, class P>
  static decltype(auto) query(const E& e, const P& p) { return ::asio::query(e, p); }
  template <class E, class P>
  static auto require(const E& e, const P& p) { return ::asio::require(e, p); }
  template <class E, class P>
  static auto prefer(const E& e, const P& p) { return ::asio::prefer(e, p); }
  template <class... A>
  static auto co_spawn(A&&... a) { return ::asio::co_spawn(std::forward<A>(a)...); }
  template <class... Ops>
  static auto make_parallel_group(Ops&&... ops) {
    return ::asio::experimental::make_parallel_group(std::forward<Ops>(ops)...);
  }
  static constexpr auto blocking_never = ::asio::execution::blocking.never;
  static constexpr auto blocking = ::asio::execution::blocking;
  static constexpr auto blocking_always = ::asio::execution::blocking.always;
  static constexpr auto this_coro_executor = ::asio::this_coro::executor;
  static constexpr auto deferred = ::asio::experimental::deferred;
  static auto use_awaitable() { return ::asio::use_awaitable_t<>(); }
  static auto wait_for_all() { return ::asio::experimental::wait_for_all(); }
  // For following bound completion tokens (asio/follow.hpp).
  template <class H, class E>
  using executor_binder = ::asio::executor_binder<H, E>;
  static constexpr auto executor_arg = ::asio::executor_arg;
  template <class T, class Sig>
  using binder_return_type = ::asio::detail::executor_binder_async_result_return_type<::asio::async_result<T, Sig>>;
  template <class T, class Sig, class Init, class... A>
  static auto async_initiate(Init&& init, T& token, A&&... a) {
    return ::asio::async_initiate<T, Sig>(std::forward<Init>(init), token, std::forward<A>(a)...);
  }
  // For async_generator (asio/async_generator.hpp).
  template <class... A>
  static auto post(A&&... a) { return ::asio::post(std::forward<A>(a)...); }
  template <class... A>
  static auto dispatch(A&&... a) { return ::asio::dispatch(std::forward<A>(a)...); }
  template <class H, class E>
  static auto associated_executor(const H& h, const E& e) noexcept { return ::asio::get_associated_executor(h, e); }
  template <class H>
  static auto associated_cancellation_slot(const H& h) noexcept { return ::asio::get_associated_cancellation_slot(h); }
  using cancellation_signal = ::asio::cancellation_signal;
  using cancellation_slot = ::asio::cancellation_slot;
  using cancellation_type = ::asio::cancellation_type;
  static constexpr auto outstanding_work_tracked = ::asio::execution::outstanding_work.tracked;
};

// An executor that runs everything submitted to it inside one context.
template <class Executor>
using context_executor = ctxvars::detail::asio_adapter::basic_context_executor<traits, Executor>;

// co_spawn(executor or execution context, [context,] awaitable or function
// returning one, [completion token]). See the top of this file.
inline constexpr ctxvars::detail::asio_adapter::co_spawn_fn<traits> co_spawn{};

// co_await gather(a, b, ...): each branch a task in its own copy of the
// awaiting task's context; a tuple of results (std::monostate for void).
inline constexpr ctxvars::detail::asio_adapter::gather_fn<traits> gather{};

// co_await to_thread(pool, f): f() on `pool` (an executor or execution
// context) in a copy of the awaiting task's context; the task resumes on its
// own executor, in its own context, with f's result or exception
// (Python's asyncio.to_thread).
inline constexpr ctxvars::detail::asio_adapter::to_thread_fn<traits> to_thread{};

// A producer whose body is an Asio coroutine, run in its own context layer
// over its consumer's current context (PEP 568, like ctxvars::generator):
//   async_generator<T> g(ex, [](generator_yield<T> out) -> awaitable<void> {
//     ... co_await out.yield(v); ... });
//   while (std::optional<T> v = co_await g.next()) ...
// Rules and costs: asio/async_generator.hpp, docs/beyond-python.md.
template <class T>
using async_generator = ctxvars::detail::asio_adapter::basic_async_generator<traits, T>;
template <class T>
using generator_yield = ctxvars::detail::asio_adapter::basic_generator_yield<traits, T>;

}  // namespace ctxvars::asio

// ---- following bound completion tokens (asio/follow.hpp) ---------------------
namespace ctxvars::asio::detail {
// True for a completion token that resumes an awaiting coroutine: use_awaitable,
// possibly inside token adapters and binders.
template <class T>
struct resumes_coroutine : std::false_type {};
template <class E>
struct resumes_coroutine<::asio::use_awaitable_t<E>> : std::true_type {};
// A deferred operation is initiated later, where it is consumed: co_awaited
// (or passed use_awaitable) inside a task, its resumption follows the task;
// consumed outside any task, the executor is the bare one.
template <>
struct resumes_coroutine<::asio::experimental::deferred_t> : std::true_type {};
template <class T>
struct resumes_coroutine<::asio::redirect_error_t<T>> : resumes_coroutine<T> {};
template <class T>
struct resumes_coroutine<::asio::experimental::as_single_t<T>> : resumes_coroutine<T> {};
template <class T>
struct resumes_coroutine<::asio::experimental::as_tuple_t<T>> : resumes_coroutine<T> {};
template <class T, class X>
struct resumes_coroutine<::asio::executor_binder<T, X>> : resumes_coroutine<T> {};
template <class T, class X>
struct resumes_coroutine<::asio::cancellation_slot_binder<T, X>> : resumes_coroutine<T> {};
template <class T, class X>
struct resumes_coroutine<::asio::allocator_binder<T, X>> : resumes_coroutine<T> {};
template <class T, class... V>
struct resumes_coroutine<::asio::experimental::append_t<T, V...>> : resumes_coroutine<T> {};
template <class T, class... V>
struct resumes_coroutine<::asio::experimental::prepend_t<T, V...>> : resumes_coroutine<T> {};
}  // namespace ctxvars::asio::detail

// bind_executor(ex, use_awaitable) (and adapters around use_awaitable): the
// coroutine resumes through ex inside its task's context.
namespace asio {
template <typename T, typename Executor, typename Signature>
  requires ::ctxvars::asio::detail::resumes_coroutine<T>::value
class async_result<executor_binder<T, Executor>, Signature>
    : public ::ctxvars::detail::asio_adapter::follow_async_result<::ctxvars::asio::traits, T, Executor, Signature> {
};
}  // namespace asio

// For Asio-neutral headers (http.hpp's async_handle): standalone Asio's awaitables run
// through this adapter.
namespace ctxvars::detail {
template <class T>
struct awaitable_adapter<::asio::awaitable<T, ::asio::any_io_executor>> {
  using traits = ctxvars::asio::traits;
  static constexpr const auto& co_spawn = ctxvars::asio::co_spawn;
};
}  // namespace ctxvars::detail
