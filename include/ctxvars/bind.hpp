// bind: carry a context into work that runs later or elsewhere (threads,
// thread pools, callbacks).
#pragma once

#include <concepts>
#include <type_traits>
#include <utility>

#include "context.hpp"

namespace ctxvars {
namespace detail {

// Runs f in a fresh copy of a snapshot on every call (Python: the context an
// asyncio callback or a new thread started with copy_context().run gets).
template <class F>
class snapshot_bound {
 public:
  snapshot_bound(context snap, F f) : snap_(std::move(snap)), f_(std::move(f)) {}
  template <class... A>
    requires std::invocable<F&, A...>
  decltype(auto) operator()(A&&... a) {
    return snap_.copy().run(f_, std::forward<A>(a)...);
  }
  template <class... A>
    requires std::invocable<const F&, A...>
  decltype(auto) operator()(A&&... a) const {
    return snap_.copy().run(f_, std::forward<A>(a)...);
  }
  const context& snapshot() const noexcept { return snap_; }
  const F& function() const noexcept { return f_; }

 private:
  context snap_;
  F f_;
};

// Runs f inside one given context on every call.
template <class F>
class context_bound {
 public:
  context_bound(context c, F f) : ctx_(std::move(c)), f_(std::move(f)) {}
  template <class... A>
    requires std::invocable<F&, A...>
  decltype(auto) operator()(A&&... a) {
    return ctx_.run(f_, std::forward<A>(a)...);
  }
  template <class... A>
    requires std::invocable<const F&, A...>
  decltype(auto) operator()(A&&... a) const {
    return ctx_.run(f_, std::forward<A>(a)...);
  }
  const context& bound_context() const noexcept { return ctx_; }
  const F& function() const noexcept { return f_; }

 private:
  mutable context ctx_;  // run() changes which thread is inside, not the handle
  F f_;
};

}  // namespace detail

// Snapshots copy_context() now; every call of the result runs f in a fresh
// copy of that snapshot, so calls never see each other's sets (or the
// caller's later ones). `std::jthread t(ctxvars::bind(f));` starts f in a copy
// of the creator's context. Cost per call: one context copy (one allocation).
template <class F>
auto bind(F&& f) {
  return detail::snapshot_bound<std::decay_t<F>>(copy_context(), std::forward<F>(f));
}

// Every call of the result runs f inside c itself: its sets stay in c. Two
// calls at once on different threads: the second throws context_in_use_error.
template <class F>
auto bind(context c, F&& f) {
  return detail::context_bound<std::decay_t<F>>(std::move(c), std::forward<F>(f));
}

}  // namespace ctxvars

// ---- Asio associations, whether or not an adapter header is included --------
//
// asio::post(ex, ctxvars::bind(h)) or timer.async_wait(ctxvars::bind(h)): the
// bound function object reports h's associated executor, allocator and
// cancellation slot (and any other associator), so binding a context never
// moves a handler off its strand or drops its cancellation slot. Declared
// here, not in the adapter headers, so that a file including only
// <ctxvars/ctxvars.hpp> cannot lose an association silently. Asio's generic
// `associator` hook (standalone Asio >= 1.22, Boost >= 1.80) is forward-
// declared exactly as Asio declares it, for both Asios; the partial
// specialisations are only instantiated by code that uses Asio. Each block is
// there only when that Asio is installed (__has_include), so a machine without
// standalone Asio never sees a namespace ::asio from here. Where it is
// installed, `namespace asio = boost::asio;` at global scope clashes with this
// declaration: write a different alias name (say `net`).
namespace ctxvars::detail {
// The one body behind the four associator specialisations below: what h's
// Associator says, read through the bound object.
template <template <typename, typename> class Associator, class Bound, class F, class DefaultCandidate>
struct bound_associator {
  using type = typename Associator<F, DefaultCandidate>::type;
  static decltype(auto) get(const Bound& b, const DefaultCandidate& c = DefaultCandidate()) noexcept {
    return Associator<F, DefaultCandidate>::get(b.function(), c);
  }
};
}  // namespace ctxvars::detail

// The declaration and the two specialisations, the same for both Asios.
#define CTXVARS_DETAIL_BOUND_ASSOCIATORS                                                                    \
  template <template <typename, typename> class Associator, typename T, typename DefaultCandidate>         \
  struct associator;                                                                                        \
  template <template <typename, typename> class Associator, class F, class DefaultCandidate>               \
  struct associator<Associator, ::ctxvars::detail::snapshot_bound<F>, DefaultCandidate>                     \
      : ::ctxvars::detail::bound_associator<Associator, ::ctxvars::detail::snapshot_bound<F>, F,            \
                                            DefaultCandidate> {};                                           \
  template <template <typename, typename> class Associator, class F, class DefaultCandidate>               \
  struct associator<Associator, ::ctxvars::detail::context_bound<F>, DefaultCandidate>                      \
      : ::ctxvars::detail::bound_associator<Associator, ::ctxvars::detail::context_bound<F>, F,             \
                                            DefaultCandidate> {};

#if __has_include(<asio/associator.hpp>)
namespace asio {
CTXVARS_DETAIL_BOUND_ASSOCIATORS
}  // namespace asio
#endif

#if __has_include(<boost/asio/associator.hpp>)
namespace boost::asio {
CTXVARS_DETAIL_BOUND_ASSOCIATORS
}  // namespace boost::asio
#endif

#undef CTXVARS_DETAIL_BOUND_ASSOCIATORS
