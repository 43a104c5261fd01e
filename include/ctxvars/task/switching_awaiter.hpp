// ctxvars/task/switching_awaiter.hpp — how a task leaves its context around a
// suspension on a foreign awaitable and re-enters it on resumption.
// Internal to <ctxvars/task.hpp>.
#pragma once

#include <coroutine>
#include <type_traits>
#include <utility>

#include "../config.hpp"
#include "chain.hpp"

namespace ctxvars {
namespace detail {

template <class A>
decltype(auto) get_awaiter(A&& a) {
  if constexpr (requires { std::forward<A>(a).operator co_await(); })
    return std::forward<A>(a).operator co_await();
  else if constexpr (requires { operator co_await(std::forward<A>(a)); })
    return operator co_await(std::forward<A>(a));
  else
    return std::forward<A>(a);
}

// What switching_awaiter::await_suspend returns for an inner await_suspend
// returning R: bool for void and bool (no transfer through a no-op coroutine
// on the hot path), the handle otherwise.
template <class R>
using suspend_result_t = std::conditional_t<std::is_void_v<R> || std::is_same_v<R, bool>, bool, std::coroutine_handle<>>;

// Calls inner.await_suspend(h), expressing its outcome as suspend_result_t.
template <class R, class Awaiter, class H>
suspend_result_t<R> forward_suspend(Awaiter& inner, H h) {
  if constexpr (std::is_void_v<R>) {
    inner.await_suspend(h);
    return true;
  } else {
    return inner.await_suspend(h);
  }
}

// Leaves the task's context around a suspension on a foreign awaitable, and
// makes it current again before the task's code continues.
//
// Private chains (the common case) leave and re-enter without atomics and can
// never find their context busy. Shared chains hand the foreign awaitable the
// chain's resumer instead of the task (see resumer), so a busy context delays
// the resumption, on the scheduler, instead of failing it.
template <class Awaiter>
struct switching_awaiter {
  chain_state* chain;
  Awaiter inner;

  // Whether the awaitable may be handed the chain's resumer (an untyped
  // handle): only if await_suspend is one plain function taking
  // std::coroutine_handle<>. A template (or an overload set) may be callable
  // with one and still use h.promise() in its body, which no constraint can
  // see: such an awaitable gets the task's own handle (see suspend_other).
  static constexpr bool takes_any_handle =
      requires { &std::remove_cvref_t<Awaiter>::await_suspend; } &&
      requires(Awaiter& a, std::coroutine_handle<> h) { a.await_suspend(h); };

  bool await_ready() { return inner.await_ready(); }

  // After inner.await_suspend the coroutine may already run on another
  // thread: touch nothing of *this once it returned.
  template <class P, class R = decltype(std::declval<Awaiter&>().await_suspend(std::declval<std::coroutine_handle<P>>()))>
  CTXVARS_ALWAYS_INLINE suspend_result_t<R> await_suspend(std::coroutine_handle<P> h) {
    chain_state* const c = chain;
    if (CTXVARS_LIKELY(c != nullptr && c->mode == chain_state::private_in)) {
      c->leave_private();
      try {
        return forward_suspend<R>(inner, h);
      } catch (...) {
        c->enter_private();  // resumed here, with the exception
        throw;
      }
    }
    return suspend_other<P, R>(h);
  }

  // The chain's mode says whether the suspension left the context (and, for
  // a shared chain, whether the resumer entered it again).
  decltype(auto) await_resume() {
    chain_state* const c = chain;
    if (c != nullptr) {
      if (CTXVARS_LIKELY(c->mode == chain_state::private_out))
        c->enter_private();  // the common case: we left at the suspension
      else if (CTXVARS_UNLIKELY(c->mode != chain_state::private_in))
        resume_other(c);
    }
    return inner.await_resume();
  }

 private:
  // No chain (awaited outside any task), a chain not yet inside (a spawned
  // task's first hop), or a shared context.
  template <class P, class R>
  CTXVARS_NOINLINE suspend_result_t<R> suspend_other(std::coroutine_handle<P> h) {
    chain_state* const c = chain;
    if (c == nullptr || c->is_private()) return forward_suspend<R>(inner, h);  // private_out: nothing to leave
    c->leave();
    if constexpr (takes_any_handle) {
      // The resumption goes through the resumer, which waits (off-thread, by
      // re-posting) until the context is free, then enters it.
      c->parked = h;
      const std::coroutine_handle<> r = c->resume.handle();
      try {
        if constexpr (std::is_void_v<R>) {
          inner.await_suspend(r);
          return true;
        } else if constexpr (std::is_same_v<R, bool>) {
          if (inner.await_suspend(r)) return true;
          return continue_here(c, r);  // declined to suspend
        } else {
          return inner.await_suspend(r);
        }
      } catch (...) {
        c->error = std::current_exception();  // rethrown once inside again
      }
      // inner.await_suspend threw: the task is ours to resume, inside.
      if constexpr (std::is_same_v<suspend_result_t<R>, bool>)
        return continue_here(c, r);
      else
        return r;
    } else {
      // A typed-handle awaitable: it resumes the task itself (see enter_waiting).
      try {
        return forward_suspend<R>(inner, h);
      } catch (...) {
        c->enter_waiting();
        throw;
      }
    }
  }
  // The task was not handed over: go on at once if the context is still free
  // (it nearly always is: we left it a moment ago), else let the resumer wait
  // for it. Returns await_suspend's answer.
  static bool continue_here(chain_state* c, std::coroutine_handle<> r) {
    if (c->try_enter()) return false;  // resume now, inside
    r.resume();
    return true;
  }
  CTXVARS_NOINLINE static void resume_other(chain_state* c) {
    switch (c->mode) {
      case chain_state::private_out:
        c->enter_private();
        break;
      case chain_state::shared_out:
        c->enter_waiting();  // resumed directly (typed-handle awaitable)
        break;
      default:  // shared_in: the resumer entered
        if (c->error) std::rethrow_exception(std::exchange(c->error, nullptr));
    }
  }
};

}  // namespace detail
}  // namespace ctxvars
