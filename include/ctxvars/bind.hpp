// bind: carry a context into work that runs later or elsewhere (threads,
// thread pools, callbacks).
#pragma once

#include <concepts>
#include <type_traits>
#include <utility>

#include "context.hpp"

namespace ctxvars {
namespace detail {

[[noreturn]] void throw_moved_from_bound();
[[noreturn]] void throw_moved_from_context_executor();

// What ctxvars::bind returns: f and a context. FreshCopy: every call runs f in a
// fresh copy of the context, a snapshot (Python: the context an asyncio callback
// or a new thread started with copy_context().run gets); otherwise every call
// runs f inside the context itself.
//
// Moving one hands its context over without touching the context's reference
// count (Asio, std::function and thread pools move a handler several times
// before calling it; moving a `context` handle would cost a locked increment
// and decrement each time). A moved-from one may be destroyed, assigned (if F
// is) or copied; calling it throws std::logic_error.
//
// Assignment reads everything it needs from the source before it changes
// *this: the source may be owned by this object's own function ("replace my
// handler with the continuation it holds"), and assigning f_ destroys that.
template <class F, bool FreshCopy>
class bound {
 public:
  bound(context c, F f) : f_(std::move(f)), ctx_(context_access::take(c)) {}
  bound(const bound& o)
    requires std::is_copy_constructible_v<F>
      : f_(o.f_), ctx_(context_access::copy_of(o.ctx_)) {}
  bound(bound&& o) noexcept(std::is_nothrow_move_constructible_v<F>)
      : f_(std::move(o.f_)), ctx_(context_access::take(o.ctx_)) {}
  // On throw: *this keeps its context (and f_ what F's assignment leaves).
  bound& operator=(const bound& o)
    requires std::is_copy_assignable_v<F>
  {
    context c = context_access::copy_of(o.ctx_);  // o is not touched after f_ changes
    f_ = o.f_;
    context_access::assign(ctx_, context_access::take(c));
    return *this;
  }
  // On throw: *this keeps its context; the source keeps its own if F's move
  // constructor threw, else it is left moved-from.
  bound& operator=(bound&& o) noexcept(std::is_nothrow_move_assignable_v<F>)
    requires std::is_move_assignable_v<F>
  {
    if (this == &o) return *this;
    if constexpr (std::is_nothrow_move_assignable_v<F>) {
      context c = context_access::take(o.ctx_);  // o is not touched after f_ changes
      f_ = std::move(o.f_);
      context_access::assign(ctx_, context_access::take(c));
    } else {
      F moved(std::move(o.f_));  // may throw: nothing taken yet
      context c = context_access::take(o.ctx_);
      f_ = std::move(moved);
      context_access::assign(ctx_, context_access::take(c));
    }
    return *this;
  }

  template <class... A>
    requires std::invocable<F&, A...>
  decltype(auto) operator()(A&&... a) {
    return run_in(f_, std::forward<A>(a)...);
  }
  template <class... A>
    requires std::invocable<const F&, A...>
  decltype(auto) operator()(A&&... a) const {
    return run_in(f_, std::forward<A>(a)...);
  }
  const F& function() const noexcept { return f_; }

 private:
  template <class G, class... A>
  decltype(auto) run_in(G& f, A&&... a) const {
    if (CTXVARS_UNLIKELY(context_access::empty(ctx_))) throw_moved_from_bound();
    if constexpr (FreshCopy)
      return ctx_.copy().run(f, std::forward<A>(a)...);
    else
      return ctx_.run(f, std::forward<A>(a)...);
  }
  F f_;  // first: if moving it throws, the source keeps its context
  mutable context ctx_;  // run() changes which thread is inside, not the handle
};

template <class F>
using snapshot_bound = bound<F, true>;
template <class F>
using context_bound = bound<F, false>;

}  // namespace detail

// Snapshots fork_context() now (the current context with every variable's
// flow policy applied, once, here: flow.hpp); every call of the result runs f
// in a fresh plain copy of that snapshot, so calls never see each other's sets
// (or the caller's later ones). `std::jthread t(ctxvars::bind(f));` starts f
// in a fork of the creator's context. Throws what fork_context() throws (an
// on_fork f's exception: then f was not bound). Cost per call: one context
// copy (one allocation).
template <class F>
auto bind(F&& f) {
  return detail::snapshot_bound<std::decay_t<F>>(fork_context(), std::forward<F>(f));
}

// Every call of the result runs f inside c itself: its sets stay in c. Two
// calls at once on different threads: the second throws context_in_use_error.
template <class F>
auto bind(context c, F&& f) {
  return detail::context_bound<std::decay_t<F>>(detail::context_access::take(c), std::forward<F>(f));
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
// standalone Asio never sees a namespace ::asio from here.
//
// Boost code often writes `namespace asio = boost::asio;`, which clashes with
// any namespace ::asio. A program that does and uses only Boost.Asio defines
// CTXVARS_NO_STANDALONE_ASIO for every file (one compile definition): then
// the standalone block is left out. Only by that explicit choice — never by
// guessing from include order, which would give files of one program
// different definitions of the same associator (an ODR violation: the linker
// keeps one, and a correctly ordered file loses its strand).
// <ctxvars/asio.hpp> refuses to build with the macro (docs/coroutines.md).
namespace ctxvars::detail {
// The body of the associator specialisation below (one per Asio): what h's
// Associator says, read through the bound object.
template <template <typename, typename> class Associator, class Bound, class F, class DefaultCandidate>
struct bound_associator {
  using type = typename Associator<F, DefaultCandidate>::type;
  // Two overloads, as Asio declares them: the one-argument form must not
  // return a reference to a defaulted candidate (Boost >= 1.80 returns the
  // candidate by reference from the two-argument form and by value from this
  // one), so each forwards to the same form of h's associator.
  static decltype(auto) get(const Bound& b) noexcept { return Associator<F, DefaultCandidate>::get(b.function()); }
  static decltype(auto) get(const Bound& b, const DefaultCandidate& c) noexcept {
    return Associator<F, DefaultCandidate>::get(b.function(), c);
  }
};
}  // namespace ctxvars::detail

// The declaration and the specialisation, the same for both Asios.
#define CTXVARS_DETAIL_BOUND_ASSOCIATORS                                                                    \
  template <template <typename, typename> class Associator, typename T, typename DefaultCandidate>         \
  struct associator;                                                                                        \
  template <template <typename, typename> class Associator, class F, bool FreshCopy, class DefaultCandidate> \
  struct associator<Associator, ::ctxvars::detail::bound<F, FreshCopy>, DefaultCandidate>                   \
      : ::ctxvars::detail::bound_associator<Associator, ::ctxvars::detail::bound<F, FreshCopy>, F,          \
                                            DefaultCandidate> {};

#if __has_include(<asio/associator.hpp>) && !defined(CTXVARS_NO_STANDALONE_ASIO)
#define CTXVARS_DETAIL_STANDALONE_ASIO_ASSOCIATOR 1
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
