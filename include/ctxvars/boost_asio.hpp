// ctxvars for Boost.Asio: the same adapter as <ctxvars/asio.hpp>, with the
// same names, in namespace ctxvars::boost_asio, for boost::asio (Boost >= 1.80;
// tested with Boost 1.81).
//
//   ctxvars::boost_asio::co_spawn(ex, aw, token)      aw runs in a copy of the
//                                                    caller's current context
//   ctxvars::boost_asio::co_spawn(ex, ctx, aw, token) aw runs in ctx itself
//   co_await ctxvars::boost_asio::gather(a, b, ...)  each branch in its own copy
//   ctxvars::boost_asio::context_executor<E>         runs everything in one context
//
// Everything that decides behaviour, and the rules it follows, is in the one
// implementation detail/asio_adapter.hpp; this header only names Boost.Asio.
// Requires the CMake target ctxvars::boost_asio.
#pragma once

#include <boost/asio/detail/config.hpp>
#include <boost/version.hpp>

#if BOOST_VERSION < 108000
#error "ctxvars/boost_asio.hpp needs Boost.Asio >= 1.80 (boost::asio::deferred and the associator hook); Debian: libboost1.81-dev"
#endif

#if !defined(BOOST_ASIO_HAS_CO_AWAIT) || !defined(BOOST_ASIO_HAS_STD_COROUTINE)
#error "ctxvars/boost_asio.hpp needs Boost.Asio's C++20 coroutines: compile with -std=c++20, and with clang++ define BOOST_ASIO_HAS_CO_AWAIT=1 and BOOST_ASIO_HAS_STD_COROUTINE=1 (the CMake target ctxvars::boost_asio does)"
#endif

#include <boost/asio/any_io_executor.hpp>
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

#include "detail/asio_adapter.hpp"
#include "detail/awaitable_adapter.hpp"

namespace ctxvars::boost_asio {

// Which Asio the adapter serves: Boost.Asio (namespace ::boost::asio).
struct traits {
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
  static constexpr auto this_coro_executor = ::boost::asio::this_coro::executor;
  static constexpr auto deferred = ::boost::asio::deferred;
  static auto use_awaitable() { return ::boost::asio::use_awaitable_t<>(); }
  static auto wait_for_all() { return ::boost::asio::experimental::wait_for_all(); }
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

}  // namespace ctxvars::boost_asio

// For Asio-neutral headers (http.hpp's async_handle): Boost.Asio's awaitables run
// through this adapter.
namespace ctxvars::detail {
template <class T>
struct awaitable_adapter<::boost::asio::awaitable<T, ::boost::asio::any_io_executor>> {
  using traits = ctxvars::boost_asio::traits;
  static constexpr const auto& co_spawn = ctxvars::boost_asio::co_spawn;
};
}  // namespace ctxvars::detail
