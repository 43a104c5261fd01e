// co_spawn: a task in its own context.
// Part of the Asio adapter (one implementation for both Asios; see adapter.hpp).
#pragma once

#include "context_executor.hpp"

namespace ctxvars::detail::asio_adapter {

// ---- co_spawn -----------------------------------------------------------------------

template <class Traits, class A>
concept awaitable_type = Traits::template is_awaitable<std::remove_cvref_t<A>>::value;

template <class Traits, class F>
concept awaitable_factory =
    std::is_invocable_v<std::decay_t<F>&> &&
    awaitable_type<Traits, std::invoke_result_t<std::decay_t<F>&>>;

template <class Traits, class E>
concept executor_like = Traits::template is_executor<E>;

template <class Traits, class C>
concept execution_context_like =
    std::is_convertible_v<C&, typename Traits::execution_context&> &&
    requires(C& c) { c.get_executor(); };

template <class Aw>
struct awaitable_parts;
template <template <class, class> class A, class T, class E>
struct awaitable_parts<A<T, E>> {
  using value_type = T;
  using executor_type = E;
};

// The task's body, wrapped: runs the user's awaitable (or the awaitable f()
// returns, keeping f alive until it is done), then leaves the task's context
// before Asio completes the task (see "A finished task leaves nothing behind").
template <class Traits, class Aw, class Src>
Aw run_task(Src src, task_ref t) {
  using T = typename awaitable_parts<Aw>::value_type;
  std::exception_ptr e;
  if constexpr (std::is_void_v<T>) {
    try {
      if constexpr (awaitable_type<Traits, Src>) {
        co_await std::move(src);
      } else {
        std::optional<Src> f(std::move(src));
        co_await std::invoke(*f);
      }
    } catch (...) {
      e = std::current_exception();
    }
    finish_task(t.get());
    if (e) std::rethrow_exception(e);
    co_return;
  } else {
    std::optional<T> r;
    try {
      if constexpr (awaitable_type<Traits, Src>) {
        r.emplace(co_await std::move(src));
      } else {
        std::optional<Src> f(std::move(src));
        r.emplace(co_await std::invoke(*f));
        // f dies here, in the task's context (its captures may hold values).
      }
    } catch (...) {
      e = std::current_exception();
    }
    finish_task(t.get());
    if (e) std::rethrow_exception(e);
    co_return std::move(*r);
  }
}

// The awaitable type a source gives: the awaitable itself, or what f() returns.
template <class Traits, class Src>
struct source_awaitable {
  using type = std::remove_cvref_t<Src>;
};
template <class Traits, class Src>
  requires(!awaitable_type<Traits, Src>)
struct source_awaitable<Traits, Src> {
  using type = std::remove_cvref_t<std::invoke_result_t<std::decay_t<Src>&>>;
};

// What co_spawn accepts, for the one-line error below: (where, source),
// (where, context, source), (where, source, token), (where, context, source, token).
template <class Traits, class E>
concept where_like = executor_like<Traits, std::decay_t<E>> ||
                     (!std::is_const_v<std::remove_reference_t<E>> &&
                      execution_context_like<Traits, std::remove_reference_t<E>>);
template <class Traits, class S>
concept source_like = awaitable_type<Traits, S> || awaitable_factory<Traits, S>;
template <class C>
concept context_arg = std::is_same_v<std::remove_cvref_t<C>, ctxvars::context>;

template <class Traits, class... A>
struct spawnable : std::false_type {};
template <class Traits, class E, class S>
struct spawnable<Traits, E, S> : std::bool_constant<where_like<Traits, E> && source_like<Traits, S>> {};
template <class Traits, class E, class X, class S>
struct spawnable<Traits, E, X, S>
    : std::bool_constant<where_like<Traits, E> &&
                         ((context_arg<X> && source_like<Traits, S>) || source_like<Traits, X>)> {};
template <class Traits, class E, class X, class S, class T>
struct spawnable<Traits, E, X, S, T>
    : std::bool_constant<where_like<Traits, E> && context_arg<X> && source_like<Traits, S>> {};

template <class...>
inline constexpr bool always_false = false;

template <class Traits>
struct co_spawn_fn {
  template <class Executor>
  using default_token = typename Traits::template default_completion_token_t<Executor>;

  // Spawns the wrapped body on context_executor<Base>.
  template <class Base, class Src, class Token>
  static auto spawn_on(Base base, ctxvars::context c, Src&& src, Token&& token) {
    using Aw = typename source_awaitable<Traits, Src>::type;
    task_ref t = make_task(c);
    basic_context_executor<Traits, Base> cex(std::move(base), t);
    return Traits::co_spawn(std::move(cex),
                            run_task<Traits, Aw>(std::decay_t<Src>(std::forward<Src>(src)), std::move(t)),
                            std::forward<Token>(token));
  }

  // Runs `aw` (an awaitable, or a function returning one) in `c` itself
  // (asyncio.create_task(coro, context=c)).
  template <class Executor, class Src, class Token = default_token<Executor>>
    requires executor_like<Traits, Executor> &&
             (awaitable_type<Traits, Src> || awaitable_factory<Traits, Src>)
  auto operator()(const Executor& ex, ctxvars::context c, Src&& src, Token&& token = Token()) const {
    auto base = unwrap<Traits>(ex);
    using any = typename Traits::any_io_executor;
    using io = typename Traits::io_executor;
    if constexpr (std::is_same_v<decltype(base), any> &&
                  std::is_same_v<decltype(spawn_on(std::declval<io>(), c, std::forward<Src>(src),
                                                   std::forward<Token>(token))),
                                 decltype(spawn_on(std::declval<any>(), c, std::forward<Src>(src),
                                                   std::forward<Token>(token)))>) {
      // An any_io_executor holding a plain io_context executor: wrap the
      // io_context executor itself. context_executor<any_io_executor> does not
      // fit any_io_executor's small-object buffer, so every one of the many
      // copies Asio makes per resumption would allocate.
      if (base.target_type() == typeid(io))
        if (const io* p = base.template target<io>())
          return spawn_on(*p, context_access::take(c), std::forward<Src>(src), std::forward<Token>(token));
    }
    return spawn_on(std::move(base), context_access::take(c), std::forward<Src>(src), std::forward<Token>(token));
  }

  // Runs `aw` in a copy of the caller's current context (asyncio.create_task).
  template <class Executor, class Src, class Token = default_token<Executor>>
    requires executor_like<Traits, Executor> &&
             (awaitable_type<Traits, Src> || awaitable_factory<Traits, Src>)
  auto operator()(const Executor& ex, Src&& src, Token&& token = Token()) const {
    return (*this)(ex, ctxvars::fork_context(), std::forward<Src>(src), std::forward<Token>(token));
  }

  // The same on an execution context (io_context&, thread_pool&, ...).
  template <class ExecutionContext, class Src,
            class Token = default_token<typename ExecutionContext::executor_type>>
    requires execution_context_like<Traits, ExecutionContext> &&
             (awaitable_type<Traits, Src> || awaitable_factory<Traits, Src>)
  auto operator()(ExecutionContext& ctx, ctxvars::context c, Src&& src, Token&& token = Token()) const {
    return (*this)(ctx.get_executor(), context_access::take(c), std::forward<Src>(src), std::forward<Token>(token));
  }
  template <class ExecutionContext, class Src,
            class Token = default_token<typename ExecutionContext::executor_type>>
    requires execution_context_like<Traits, ExecutionContext> &&
             (awaitable_type<Traits, Src> || awaitable_factory<Traits, Src>)
  auto operator()(ExecutionContext& ctx, Src&& src, Token&& token = Token()) const {
    return (*this)(ctx.get_executor(), ctxvars::fork_context(), std::forward<Src>(src),
                   std::forward<Token>(token));
  }


  // Anything else: one line that says what to do, instead of pages of
  // unsatisfied constraints (the usual cause: the other Asio's types).
  template <class... A>
    requires(!spawnable<Traits, A...>::value)
  void operator()(A&&...) const {
    if constexpr (Traits::is_boost)
      static_assert(always_false<A...>,
                    "ctxvars::boost_asio::co_spawn takes Boost.Asio's types: (executor or execution context, "
                    "[ctxvars::context,] boost::asio::awaitable<T> or a function returning one, [token]); "
                    "for standalone Asio (::asio) use ctxvars::asio::co_spawn from <ctxvars/asio.hpp>");
    else
      static_assert(always_false<A...>,
                    "ctxvars::asio::co_spawn takes standalone Asio's types: (executor or execution context, "
                    "[ctxvars::context,] ::asio::awaitable<T> or a function returning one, [token]); "
                    "for Boost.Asio use ctxvars::boost_asio::co_spawn from <ctxvars/boost_asio.hpp>");
  }
};

}  // namespace ctxvars::detail::asio_adapter
