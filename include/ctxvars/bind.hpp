// bind: carry a context into work that runs later or elsewhere (threads,
// thread pools, callbacks).
#pragma once

#include <concepts>
#include <type_traits>
#include <utility>

#include "context.hpp"

// ---- Asio associations, whether or not an adapter header is included --------
//
// asio::post(ex, ctxvars::bind(h)) or timer.async_wait(ctxvars::bind(h)): the
// bound function object reports h's associated executor, allocator and
// cancellation slot, so binding a context never moves a handler off its strand
// or drops its cancellation slot — with standalone Asio and Boost.Asio, in a
// file that includes only <ctxvars/ctxvars.hpp>.
//
// Without declaring anything in ::asio or ::boost (a declaration there would
// clash with the common `namespace asio = boost::asio;`), and the same in every
// file of a program (no guessing from include order): the bound object asks
// h's own Asio through argument-dependent lookup, at the point where bind(h) is
// instantiated — `get_associated_executor(h, candidate)` is found in h's
// namespaces (an Asio binder's, or the namespaces of its template arguments)
// — with a candidate of ours that no association returns. If the answer is
// not our candidate, h has an association, and the bound object exposes it
// the way Asio reads a handler's own: `executor_type` + `get_executor()`,
// `allocator_type` + `get_allocator()`, `cancellation_slot_type` +
// `get_cancellation_slot()`. Otherwise it has no such member and Asio uses its
// default, as for the bare h.
//
// Limit: an association that Asio cannot find by that lookup — a handler type
// outside Asio's namespaces whose association is a specialisation of
// asio::associated_executor (not members) — is not forwarded: bind inside it
// (asio::bind_executor(ex, ctxvars::bind(f))). docs/coroutines.md.
namespace ctxvars::detail::assoc {

// Default candidates no association returns. no_executor meets Asio's
// execution::executor requirements just enough to be passed as a candidate;
// nothing is ever submitted to it.
struct no_executor {
  template <class G>
  void execute(G&&) const noexcept {}
  friend bool operator==(const no_executor&, const no_executor&) noexcept { return true; }
  friend bool operator!=(const no_executor&, const no_executor&) noexcept { return false; }
};
struct no_allocator {};
struct no_slot {};

template <class F>
concept has_executor = requires(const F& f) {
  { get_associated_executor(f, no_executor{}) };
} && !std::is_same_v<std::decay_t<decltype(get_associated_executor(std::declval<const F&>(), no_executor{}))>, no_executor>;
template <class F>
concept has_allocator = requires(const F& f) {
  { get_associated_allocator(f, no_allocator{}) };
} && !std::is_same_v<std::decay_t<decltype(get_associated_allocator(std::declval<const F&>(), no_allocator{}))>, no_allocator>;
template <class F>
concept has_slot = requires(const F& f) {
  { get_associated_cancellation_slot(f, no_slot{}) };
} && !std::is_same_v<std::decay_t<decltype(get_associated_cancellation_slot(std::declval<const F&>(), no_slot{}))>, no_slot>;

// Each base gives the bound object (Derived, whose function() is h) one
// association of h's, or nothing.
template <class Derived, class F>
struct executor_of {};
template <class Derived, class F>
  requires has_executor<F>
struct executor_of<Derived, F> {
  using executor_type = std::decay_t<decltype(get_associated_executor(std::declval<const F&>(), no_executor{}))>;
  executor_type get_executor() const noexcept {
    return get_associated_executor(static_cast<const Derived&>(*this).function(), no_executor{});
  }
};
template <class Derived, class F>
struct allocator_of {};
template <class Derived, class F>
  requires has_allocator<F>
struct allocator_of<Derived, F> {
  using allocator_type = std::decay_t<decltype(get_associated_allocator(std::declval<const F&>(), no_allocator{}))>;
  allocator_type get_allocator() const noexcept {
    return get_associated_allocator(static_cast<const Derived&>(*this).function(), no_allocator{});
  }
};
template <class Derived, class F>
struct slot_of {};
template <class Derived, class F>
  requires has_slot<F>
struct slot_of<Derived, F> {
  using cancellation_slot_type =
      std::decay_t<decltype(get_associated_cancellation_slot(std::declval<const F&>(), no_slot{}))>;
  cancellation_slot_type get_cancellation_slot() const noexcept {
    return get_associated_cancellation_slot(static_cast<const Derived&>(*this).function(), no_slot{});
  }
};

template <class Derived, class F>
struct associations : executor_of<Derived, F>, allocator_of<Derived, F>, slot_of<Derived, F> {};

}  // namespace ctxvars::detail::assoc

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
class bound : public assoc::associations<bound<F, FreshCopy>, F> {
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
