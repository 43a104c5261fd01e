// ctxvars/task/chain.hpp — the context a chain of tasks runs in (chain_state)
// and the resumer that enters a shared context for a foreign resumption.
// Internal to <ctxvars/task.hpp>; see the top of that header for the rules.
#pragma once

#include <coroutine>
#include <exception>
#include <stop_token>
#include <thread>
#include <utility>

#include "../context.hpp"
#include "../detail/context_impl.hpp"
#include "../detail/debug_checks.hpp"

namespace ctxvars {
namespace detail {

// A coroutine that, each time it is resumed, enters a chain's shared context
// — re-posting itself on the chain's scheduler for as long as another thread
// is inside — and then transfers to the chain's parked coroutine. It is what
// foreign awaitables resume instead of a task whose context is shared, so a
// busy context delays the task instead of failing it or running it outside.
class resumer {
 public:
  struct promise_type {
    resumer get_return_object() noexcept {
      return resumer(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }  // never reached
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }  // its body catches everything
  };
  resumer() noexcept = default;
  resumer(resumer&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  resumer& operator=(resumer&& o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  ~resumer() {
    if (h_) h_.destroy();  // always suspended when its chain ends
  }
  std::coroutine_handle<> handle() const noexcept { return h_; }

 private:
  explicit resumer(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

// The context a chain of tasks (one spawned task and the tasks it awaits
// directly) runs in, and what the running thread had before entering it.
//
// A chain spawned in a fresh copy of the creator's context owns that context
// alone (`private_`): no handle to it exists anywhere else, so no other thread
// can enter or read it, and entering never fails. Such a chain switches the
// thread's current context without the atomic enter/leave, and its sets skip
// the context's lock. A chain in an explicit context (`shared`) enters it
// atomically and may find it busy: see resumer.
//
// Is the holder me? A shared context may be busy because the very thread
// that wants to run the step is inside it, further down its stack: the
// scheduler's loop runs inside c.run(...), or ~thread_pool waits for the step
// inside c.run(...). Waiting for that holder would wait forever, so the step
// runs there and then, switched into the context without entering it again
// (`shared_borrowed`), as the Asio adapter's steps do.
struct chain_state {
  // Private or shared, and inside (the context is current on the running
  // thread) or not: one byte, so the hot path of a suspension tests once.
  // shared_borrowed: inside a context this thread entered further down its
  // stack (bit 1: inside; bit 2: not entered by this chain).
  enum mode_t : unsigned char { private_out = 0, private_in = 1, shared_out = 2, shared_in = 3, shared_borrowed = 7 };

  context ctx;
  context_impl* const impl;
  std::stop_token stop;
  switch_record prev{};
  mode_t mode;
  std::coroutine_handle<> parked{};  // shared: where the resumer goes once inside
  std::exception_ptr error{};        // shared: thrown by a foreign await_suspend, rethrown inside
  resumer resume;                    // shared only
#if CTXVARS_DEBUG_CHECKS
  debug::task_entry debug_entry{impl, "task"};  // ctxvars::debug::dump_tasks()
#endif

  chain_state(context c, std::stop_token s, bool priv) noexcept
      : ctx(context_access::take(c)),
        impl(context_access::impl(ctx)),
        stop(std::move(s)),
        mode(priv ? private_out : shared_out) {}
  bool is_private() const noexcept { return mode < shared_out; }
  bool inside() const noexcept { return (mode & 1) != 0; }

  // Private chains, outside only.
  CTXVARS_ALWAYS_INLINE void enter_private() noexcept {
    prev = switch_to(this_thread_state(), impl);
    mode = private_in;
#if CTXVARS_DEBUG_CHECKS
    debug_entry.running(thread_id(this_thread_state()));
#endif
  }
  // Private chains, inside only.
  CTXVARS_ALWAYS_INLINE void leave_private() noexcept {
#if CTXVARS_DEBUG_CHECKS
    debug_entry.suspended(nullptr);  // before the next step can begin elsewhere
#endif
    mode = private_out;
    switch_back(this_thread_state(), impl, prev);
  }
  // Outside only. false: another thread is inside (shared chains only);
  // nothing changed. If this thread itself is inside (see "is the holder
  // me?" above), switches to the context without entering it.
  bool try_enter() noexcept {
    mode_t in = static_cast<mode_t>(mode | 1);
    if (!is_private() && !impl->try_enter()) {
      if (!impl->entered_by_this_thread()) return false;
      in = shared_borrowed;
    }
    prev = switch_to(this_thread_state(), impl);
    mode = in;
#if CTXVARS_DEBUG_CHECKS
    debug_entry.running(thread_id(this_thread_state()));
#endif
    return true;
  }
  // For awaitables that cannot be handed the resumer (their await_suspend
  // wants a typed handle): wait on this thread, yielding. Documented as the
  // one place a task waits in place.
  void enter_waiting() noexcept {
    while (!try_enter()) std::this_thread::yield();
  }
  void leave() noexcept {
    if (!inside()) return;
    if (is_private()) {
      leave_private();
    } else if (mode == shared_borrowed) {
#if CTXVARS_DEBUG_CHECKS
      debug_entry.suspended(nullptr);
#endif
      mode = shared_out;
      switch_back(this_thread_state(), impl, prev);  // the holder, down the stack, leaves it
    } else {
#if CTXVARS_DEBUG_CHECKS
      debug_entry.suspended(nullptr);  // before another thread can enter
#endif
      mode = shared_out;
      leave_context(impl, prev);
    }
  }
};

struct transfer_to {
  std::coroutine_handle<> next;
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<>) const noexcept { return next; }
  void await_resume() const noexcept {}
};

// The resumer's body. `schedule` is the chain's scheduler (its own copy).
template <class Schedule>
resumer make_resumer(chain_state& chain, Schedule schedule) {
  for (;;) {
    while (!chain.try_enter()) {
      // Busy: another thread runs a step in this context. Let it finish,
      // holding nothing: queue this resumption again on the scheduler.
      std::this_thread::yield();
      try {
        auto aw = schedule();
        if constexpr (requires { aw.await_ready(); }) {
          if (aw.await_ready()) continue;  // an inline scheduler: retry here
        }
        co_await std::move(aw);
      } catch (...) {
        // Could not re-post (std::bad_alloc): retry on this thread.
      }
    }
    co_await transfer_to{chain.parked};
  }
}

// A fork of the current context (every variable's flow policy applied) that
// no handle shares (see chain_state): what a new task starts in.
inline context private_copy_of_current() {
  context_impl* cur = this_thread_state().current;
  // Debug checks: shared (its writes take the lock) so that dump_tasks() may
  // read it from another thread.
  return context_access::adopt(fork_of(cur, CTXVARS_DEBUG_CHECKS != 0));
}

}  // namespace detail
}  // namespace ctxvars
