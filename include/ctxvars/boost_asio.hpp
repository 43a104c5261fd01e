// ctxvars for Boost.Asio: the same adapter as <ctxvars/asio.hpp>, with the
// same names, in namespace ctxvars::boost_asio, for boost::asio (Boost >= 1.80;
// tested with Boost 1.81).
//
//   ctxvars::boost_asio::co_spawn(ex, aw, token)      aw runs in a copy of the
//                                                    caller's current context
//   ctxvars::boost_asio::co_spawn(ex, ctx, aw, token) aw runs in ctx itself
//   co_await ctxvars::boost_asio::gather(a, b, ...)  each branch in its own copy
//   ctxvars::boost_asio::context_executor<E>         runs everything in one context
//   co_await ctxvars::boost_asio::to_thread(pool, f) f() on pool in a copy of the
//                                                    task's context
//   ctxvars::boost_asio::async_generator<T> g(ex, f) a producer whose body is a
//                                                    coroutine, in its own context layer
//
// Everything that decides behaviour, and the rules it follows, is in the one
// implementation asio/adapter.hpp; this header only names Boost.Asio.
// Requires the CMake target ctxvars::boost_asio.
#pragma once

#include <boost/asio/detail/config.hpp>
#include <boost/version.hpp>

#if BOOST_VERSION < 108000
#error "ctxvars/boost_asio.hpp needs Boost 1.80 or later (boost::asio::deferred and the associator hook); Debian: libboost1.81-dev"
#endif

#if !defined(BOOST_ASIO_HAS_CO_AWAIT) || !defined(BOOST_ASIO_HAS_STD_COROUTINE)
#error "ctxvars/boost_asio.hpp needs Boost.Asio's C++20 coroutines: compile with -std=c++20, and with clang++ define BOOST_ASIO_HAS_CO_AWAIT=1 and BOOST_ASIO_HAS_STD_COROUTINE=1 (the CMake target ctxvars::boost_asio does)"
#endif

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/experimental/append.hpp>
#include <boost/asio/experimental/as_single.hpp>
#include <boost/asio/experimental/as_tuple.hpp>
#include <boost/asio/experimental/prepend.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/consign.hpp>
#include <boost/asio/prepend.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "asio/adapter.hpp"
#include "asio/async_generator.hpp"
#include "asio/follow.hpp"
#include "asio/to_thread.hpp"
#include "detail/awaitable_adapter.hpp"

#if CTXVARS_DEBUG_CHECKS  // the leak check's view of this Asio's event loop
#include <boost/asio/detail/thread_context.hpp>

#include "detail/debug_asio_probe.hpp"
namespace ctxvars::detail::debug {
inline const bool boost_asio_probe = asio_probe_registered<::boost::asio::detail::thread_context>;
}
#endif

namespace ctxvars::boost_asio {

// Which Asio the adapter serves: Boost.Asio (namespace ::boost::asio).
struct traits {
  static constexpr bool is_boost = true;
  template <class T, class E = ::boost::asio::any_io_executor>
  using awaitable = ::boost::asio::awaitable<T, E>;
  using any_io_executor = ::boost::asio::any_io_executor;
  using io_executor = ::boost::asio::io_context::executor_type;
  using thread_pool_executor = ::boost::asio::thread_pool::executor_type;
  using system_executor = ::boost::asio::system_executor;
  template <class E>
  using strand = ::boost::asio::strand<E>;
  using execution_context = ::boost::asio::execution_context;
  template <class E>
  using default_completion_token_t = ::boost::asio::default_completion_token_t<E>;

  template <class A>
  struct is_awaitable : std::false_type {};
  template <class T, class E>
  struct is_awaitable<::boost::asio::awaitable<T, E>> : std::true_type {};

  template <class E>
  static constexpr bool is_executor =
      ::boost::asio::execution::is_executor<E>::value || ::boost::asio::is_executor<E>::value;
  template <class E, class P>
  static constexpr bool can_query = ::boost::asio::can_query<E, P>::value;
  template <class E, class P>
  static constexpr bool is_nothrow_query = ::boost::asio::is_nothrow_query<E, P>::value;
  template <class E, class P>
  static constexpr bool can_require = ::boost::asio::can_require<E, P>::value;
  template <class E, class P>
  static constexpr bool can_prefer = ::boost::asio::can_prefer<E, P>::value;

  template <class E, class F>
  static void execute(const E& e, F&& f) { ::boost::asio::execution::execute(e, std::forward<F>(f)); }
  template <class E, class P>
  static decltype(auto) query(const E& e, const P& p) { return ::boost::asio::query(e, p); }
  template <class E, class P>
  static auto require(const E& e, const P& p) { return ::boost::asio::require(e, p); }
  template <class E, class P>
  static auto prefer(const E& e, const P& p) { return ::boost::asio::prefer(e, p); }
  template <class... A>
  static auto co_spawn(A&&... a) { return ::boost::asio::co_spawn(std::forward<A>(a)...); }
  template <class... Ops>
  static auto make_parallel_group(Ops&&... ops) {
    return ::boost::asio::experimental::make_parallel_group(std::forward<Ops>(ops)...);
  }
  static constexpr auto blocking_never = ::boost::asio::execution::blocking.never;
  static constexpr auto blocking = ::boost::asio::execution::blocking;
  static constexpr auto blocking_always = ::boost::asio::execution::blocking.always;
  static constexpr auto this_coro_executor = ::boost::asio::this_coro::executor;
  static constexpr auto deferred = ::boost::asio::deferred;
  static auto use_awaitable() { return ::boost::asio::use_awaitable_t<>(); }
  static auto wait_for_all() { return ::boost::asio::experimental::wait_for_all(); }
  // For following bound completion tokens (asio/follow.hpp).
  template <class H, class E>
  using executor_binder = ::boost::asio::executor_binder<H, E>;
  static constexpr auto executor_arg = ::boost::asio::executor_arg;
  template <class T, class Sig>
  using binder_return_type = ::boost::asio::detail::executor_binder_async_result_return_type<::boost::asio::async_result<T, Sig>>;
  template <class T, class Sig, class Init, class... A>
  static auto async_initiate(Init&& init, T& token, A&&... a) {
    return ::boost::asio::async_initiate<T, Sig>(std::forward<Init>(init), token, std::forward<A>(a)...);
  }
  // For async_generator (asio/async_generator.hpp).
  template <class... A>
  static auto post(A&&... a) { return ::boost::asio::post(std::forward<A>(a)...); }
  template <class... A>
  static auto dispatch(A&&... a) { return ::boost::asio::dispatch(std::forward<A>(a)...); }
  template <class H, class E>
  static auto associated_executor(const H& h, const E& e) noexcept { return ::boost::asio::get_associated_executor(h, e); }
  template <class H>
  static auto associated_cancellation_slot(const H& h) noexcept { return ::boost::asio::get_associated_cancellation_slot(h); }
  using cancellation_signal = ::boost::asio::cancellation_signal;
  using cancellation_slot = ::boost::asio::cancellation_slot;
  using cancellation_type = ::boost::asio::cancellation_type;
  static constexpr auto outstanding_work_tracked = ::boost::asio::execution::outstanding_work.tracked;
};

// An executor that runs everything submitted to it inside one context.
template <class Executor>
using context_executor = ctxvars::detail::asio_adapter::basic_context_executor<traits, Executor>;

// co_spawn(executor or execution context, [context,] awaitable or function
// returning one, [completion token]). See <ctxvars/asio.hpp>.
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

}  // namespace ctxvars::boost_asio

// ---- following bound completion tokens (asio/follow.hpp) ---------------------
namespace ctxvars::boost_asio::detail {
// True for a completion token that resumes an awaiting coroutine: use_awaitable,
// possibly inside token adapters and binders.
template <class T>
struct resumes_coroutine : std::false_type {};
template <class E>
struct resumes_coroutine<::boost::asio::use_awaitable_t<E>> : std::true_type {};
// A deferred operation is initiated later, where it is consumed: co_awaited
// (or passed use_awaitable) inside a task, its resumption follows the task;
// consumed outside any task, the executor is the bare one.
template <>
struct resumes_coroutine<::boost::asio::deferred_t> : std::true_type {};
template <class T>
struct resumes_coroutine<::boost::asio::redirect_error_t<T>> : resumes_coroutine<T> {};
template <class T>
struct resumes_coroutine<::boost::asio::experimental::as_single_t<T>> : resumes_coroutine<T> {};
template <class T>
struct resumes_coroutine<::boost::asio::as_tuple_t<T>> : resumes_coroutine<T> {};
template <class T, class X>
struct resumes_coroutine<::boost::asio::executor_binder<T, X>> : resumes_coroutine<T> {};
template <class T, class X>
struct resumes_coroutine<::boost::asio::cancellation_slot_binder<T, X>> : resumes_coroutine<T> {};
template <class T, class X>
struct resumes_coroutine<::boost::asio::allocator_binder<T, X>> : resumes_coroutine<T> {};
template <class T, class... V>
struct resumes_coroutine<::boost::asio::append_t<T, V...>> : resumes_coroutine<T> {};
template <class T, class... V>
struct resumes_coroutine<::boost::asio::prepend_t<T, V...>> : resumes_coroutine<T> {};
template <class T, class... V>
struct resumes_coroutine<::boost::asio::consign_t<T, V...>> : resumes_coroutine<T> {};
}  // namespace ctxvars::boost_asio::detail

// bind_executor(ex, use_awaitable) (and adapters around use_awaitable): the
// coroutine resumes through ex inside its task's context.
namespace boost::asio {
template <typename T, typename Executor, typename Signature>
  requires ::ctxvars::boost_asio::detail::resumes_coroutine<T>::value
class async_result<executor_binder<T, Executor>, Signature>
    : public ::ctxvars::detail::asio_adapter::follow_async_result<::ctxvars::boost_asio::traits, T, Executor, Signature> {
};
}  // namespace boost::asio

// For Asio-neutral headers (http.hpp's async_handle): Boost.Asio's awaitables run
// through this adapter.
namespace ctxvars::detail {
template <class T>
struct awaitable_adapter<::boost::asio::awaitable<T, ::boost::asio::any_io_executor>> {
  using traits = ctxvars::boost_asio::traits;
  static constexpr const auto& co_spawn = ctxvars::boost_asio::co_spawn;
};
}  // namespace ctxvars::detail
