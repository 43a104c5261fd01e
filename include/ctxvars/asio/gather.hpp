// gather: each branch a task in its own copy of the awaiting task's context.
// Part of the Asio adapter (one implementation for both Asios; see adapter.hpp).
#pragma once

#include "co_spawn.hpp"

namespace ctxvars::detail::asio_adapter {

// ---- gather -------------------------------------------------------------------------

template <class T>
using gather_value_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class Traits, class Aw>
auto as_value(Aw aw) {
  using T = typename awaitable_parts<Aw>::value_type;
  using E = typename awaitable_parts<Aw>::executor_type;
  if constexpr (std::is_void_v<T>) {
    return [](Aw a) -> typename Traits::template awaitable<std::monostate, E> {
      co_await std::move(a);
      co_return std::monostate{};
    }(std::move(aw));
  } else {
    return aw;
  }
}

template <class Tuple, std::size_t... I>
auto gather_results(Tuple& r, std::index_sequence<I...>) {
  // r = (completion order, e0, v0, e1, v1, ...)
  const std::exception_ptr errors[] = {std::get<1 + 2 * I>(r)...};
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return std::make_tuple(std::move(std::get<2 + 2 * I>(r))...);
}

template <class Traits>
struct gather_fn {
  // co_await gather(a, b, ...) runs every awaitable as its own task, each in a
  // copy of the awaiting task's context (Python's asyncio.gather),
  // concurrently, and resumes with a tuple of their results once all have
  // finished; an awaitable<void> branch gives std::monostate. If any branch
  // throws, the first exception in argument order is rethrown after all have
  // finished.
  template <class... Aws>
  auto operator()(Aws... branches) const {
    static_assert(sizeof...(Aws) > 0, "ctxvars gather needs at least one branch");
    static_assert((awaitable_type<Traits, Aws> && ...),
                  "ctxvars gather takes awaitables (asio::awaitable<T>), one per branch");
    return run(as_value<Traits>(std::move(branches))...);
  }

 private:
  template <class... Aws>
  static typename Traits::template awaitable<
      std::tuple<typename awaitable_parts<Aws>::value_type...>>
  run(Aws... branches) {
    auto ex = co_await Traits::this_coro_executor;
    auto r = co_await Traits::make_parallel_group(
                 co_spawn_fn<Traits>{}(ex, std::move(branches), Traits::deferred)...)
                 .async_wait(Traits::wait_for_all(), Traits::use_awaitable());
    co_return gather_results(r, std::index_sequence_for<Aws...>{});
  }
};

}  // namespace ctxvars::detail::asio_adapter
