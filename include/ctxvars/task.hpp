// task<T>: a lazy C++20 coroutine that carries a context, for any scheduler
// that resumes coroutine handles; plus spawn, spawned<T> and sync_wait.
// (thread_pool, a small scheduler, lives in thread_pool.hpp, included here.)
//
// The rule (Python asyncio's):
//  - spawn(sched, t) / sync_wait(t) run t as a new task in a copy of the
//    context current at the call (or in a context given explicitly);
//  - `co_await t` inside a task runs t in the awaiter's context: what t sets is
//    visible to the awaiter afterwards;
//  - whenever a task's code runs, on whichever thread, its context is current;
//    whenever it suspends (on anything that is not a task), the thread gets
//    back the context it had.
//
// How: the promise's await_transform wraps every awaitable that is not a task
// so that await_suspend first leaves the task's context and the resumption
// re-enters it, on whatever thread it happens.
//
// Tasks sharing one explicit context (spawn(sched, c, t) twice, or a task
// spawning into its own context): a context is entered by one thread at a
// time, so such tasks take turns. A resumption that finds the context busy is
// never run outside it and never fails: it is queued again on the task's
// scheduler (the one given to spawn; sync_wait's own thread for sync_wait) and
// retried there, holding no context while it waits. Nothing waits for a
// context while holding another.
//
// Exceptions thrown by a task propagate to its awaiter, to sync_wait, or to
// spawned<T>::get(). Cancellation is cooperative: spawned<T>::request_stop(),
// and inside the task `co_await this_task::stop_token()`.
#pragma once

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

#include "ctxvars.hpp"
#include "thread_pool.hpp"

namespace ctxvars {

template <class T = void>
class task;

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
struct chain_state {
  // Private or shared, and inside (the context is current on the running
  // thread) or not: one byte, so the hot path of a suspension tests once.
  enum mode_t : unsigned char { private_out = 0, private_in = 1, shared_out = 2, shared_in = 3 };

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
  // nothing changed.
  bool try_enter() noexcept {
    if (!is_private() && !impl->try_enter()) return false;
    prev = switch_to(this_thread_state(), impl);
    mode = static_cast<mode_t>(mode | 1);
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

// A copy of the current context that no handle shares (see chain_state).
inline context private_copy_of_current() {
  context_impl* cur = this_thread_state().current;
  // Debug checks: shared (its writes take the lock) so that dump_tasks() may
  // read it from another thread.
  return context_access::adopt(new context_impl(CTXVARS_DEBUG_CHECKS != 0, cur ? cur->map : context_map()));
}

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

  static constexpr bool takes_any_handle =
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

template <class T>
struct is_task : std::false_type {};
template <class T>
struct is_task<task<T>> : std::true_type {};

struct stop_token_request {};

// Awaited by the driving frame of a spawned task: enters the chain's context
// if the first hop to the scheduler did not (it did not suspend).
struct enter_chain {};

template <class T>
class spawn_state;

// Awaited by the driving frame: runs the spawned task in this chain and hands
// its outcome to the spawn state. The value passes through await_resume's own
// stack frame, never through the coroutine frame.
template <class T>
struct deliver;

class promise_base {
 public:
  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) const noexcept {
      promise_base& p = h.promise();
      if (p.own_) {
        p.own_->leave();  // give the thread back what it had
        if (p.on_done_) return p.on_done_(p, p.on_done_arg_);  // destroys the frame
      }
      // Symmetric transfer: chains of any depth unwind without the stack.
      return p.continuation_ ? p.continuation_ : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() noexcept { return {}; }
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  template <class A>
  decltype(auto) await_transform(A&& a) {
    using plain = std::remove_cvref_t<A>;
    if constexpr (is_task<plain>::value) {
      return std::forward<A>(a).operator co_await();  // direct await: same context
    } else if constexpr (std::is_same_v<plain, stop_token_request>) {
      struct ready {
        std::stop_token t;
        bool await_ready() const noexcept { return true; }
        void await_suspend(std::coroutine_handle<>) const noexcept {}
        std::stop_token await_resume() const noexcept { return t; }
      };
      return ready{chain_ ? chain_->stop : std::stop_token{}};
    } else if constexpr (std::is_same_v<plain, enter_chain>) {
      struct enter {
        chain_state* c;
        bool await_ready() const noexcept { return c->inside() || c->try_enter(); }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) const noexcept {
          c->parked = h;
          return c->resume.handle();
        }
        void await_resume() const noexcept {}
      };
      return enter{chain_};
    } else if constexpr (requires { typename plain::is_ctxvars_deliver; }) {
      return std::forward<A>(a);
    } else {
      using aw = decltype(get_awaiter(std::forward<A>(a)));
      return switching_awaiter<aw>{chain_, get_awaiter(std::forward<A>(a))};
    }
  }

  // Makes this task the root of a chain running in `c`.
  chain_state& make_root(context c, std::stop_token s, bool private_context) {
    own_.emplace(context_access::take(c), std::move(s), private_context);
    chain_ = &*own_;
    return *own_;
  }
  void set_chain(chain_state* c) noexcept { chain_ = c; }
  chain_state* chain() const noexcept { return chain_; }
  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }
  // Called by the root's final suspend, after the final leave. It may destroy
  // the frame; it returns the coroutine to transfer to.
  using on_done_fn = std::coroutine_handle<> (*)(promise_base&, void*) noexcept;
  void set_on_done(on_done_fn f, void* arg) noexcept {
    on_done_ = f;
    on_done_arg_ = arg;
  }
  void rethrow_if_error() const {
    if (error_) std::rethrow_exception(error_);
  }
  std::exception_ptr error() const noexcept { return error_; }

 private:
  std::optional<chain_state> own_;
  chain_state* chain_ = nullptr;
  std::coroutine_handle<> continuation_;
  std::exception_ptr error_;
  on_done_fn on_done_ = nullptr;
  void* on_done_arg_ = nullptr;
};

// Coroutine frames come from operator new(size_t), which C++20 does not ask
// for more than the default alignment; a promise holding an over-aligned T
// gets a frame allocated with alignof(T) instead.
template <class T, bool over_aligned = (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__)>
struct frame_allocation {};
template <class T>
struct frame_allocation<T, true> {
  static void* operator new(std::size_t n) { return ::operator new(n, std::align_val_t(alignof(T))); }
  static void operator delete(void* p, std::size_t n) noexcept {
    (void)n;
    ::operator delete(p, std::align_val_t(alignof(T)));
  }
};

template <class T>
class task_promise : public promise_base, public frame_allocation<T> {
 public:
  task<T> get_return_object() noexcept;
  template <class U>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) {
    value_.emplace(std::forward<U>(v));
  }
  // The result, moved out (a throwing move propagates to the awaiter).
  T take() {
    rethrow_if_error();
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class task_promise<void> : public promise_base {
 public:
  task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() { rethrow_if_error(); }
};

}  // namespace detail

namespace this_task {
// co_await this_task::stop_token() inside a task: the stop token of the
// spawned task it belongs to (never stopped for sync_wait).
inline detail::stop_token_request stop_token() noexcept { return {}; }
}  // namespace this_task

// A lazy coroutine: nothing runs until it is awaited or spawned. Move-only;
// destroying a task that never ran destroys its frame. T may be any object
// type that is move- or copy-constructible (const members, no default
// constructor, over-aligned and throwing moves all work: a move that throws
// fails the task with that exception).
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using value_type = T;

  task(task&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  task& operator=(task o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  ~task() {
    if (h_) h_.destroy();
  }

  struct awaiter {
    std::coroutine_handle<promise_type> h;
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
      h.promise().set_continuation(parent);
      if constexpr (std::is_base_of_v<detail::promise_base, P>) h.promise().set_chain(parent.promise().chain());
      return h;  // run the child now, on this thread, in the same context
    }
    T await_resume() { return h.promise().take(); }
  };
  // Awaiting a task runs it in the awaiter's context (Python: `await coro`).
  awaiter operator co_await() && noexcept { return awaiter{h_}; }

  std::coroutine_handle<promise_type> release() noexcept { return std::exchange(h_, nullptr); }

 private:
  friend promise_type;
  explicit task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}

[[noreturn]] inline void throw_result_taken() {
  throw std::logic_error(
      "ctxvars: this spawned task's result was already taken (spawned<T> is move-only: its value or "
      "exception is taken once, by get() or by one co_await)");
}
[[noreturn]] inline void throw_second_waiter() {
  throw std::logic_error(
      "ctxvars: this spawned task is already awaited by another coroutine (spawned<T> is move-only: "
      "one get() or one co_await)");
}

// The shared state between a spawned task and its join handle.
//
// Thread safety: `m_` orders everything. The value is written by the task's
// last step before finish() publishes done_ under the lock, and read by the
// one caller that claimed it (taken_) after seeing done_ under the lock; user
// code (T's moves, destructors) never runs under the lock.
template <class T>
class spawn_state : public std::enable_shared_from_this<spawn_state<T>> {
 public:
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

  // The task's outcome, recorded by its last step (not yet visible). A
  // throwing construction propagates (the caller records it as the error).
  template <class... U>
  void set_value(U&&... v) {
    value_.emplace(std::forward<U>(v)...);  // constructed in place: no assignment
  }
  void set_error(std::exception_ptr e) noexcept { error_ = std::move(e); }

  // An explicit context the task runs in (retained until the task ended), so
  // that get() from a thread inside it fails instead of waiting forever.
  void watch_context(context_impl* c) noexcept {
    c->retain();
    ctx_ = c;
  }

  // Runs after the task left its context: frees the driving frame (and with
  // it the task's context and values), then publishes the outcome and returns
  // the awaiting coroutine, if any, for symmetric transfer (so a chain of
  // tasks awaiting one another unwinds at constant stack depth).
  // So when get() returns, the task is gone.
  static std::coroutine_handle<> finish(promise_base& p, void* self) noexcept {
    auto keep = static_cast<spawn_state*>(self)->shared_from_this();
    const std::exception_ptr frame_error = p.error();
    std::coroutine_handle<task_promise<void>>::from_promise(static_cast<task_promise<void>&>(p)).destroy();
    context_impl* ctx;
    {
      std::lock_guard lk(keep->m_);
      ctx = std::exchange(keep->ctx_, nullptr);
    }
    if (ctx) ctx->release();  // may run value destructors: not under the lock
    std::coroutine_handle<> cont;
    {
      std::lock_guard lk(keep->m_);
      if (!keep->value_ && !keep->error_)
        keep->error_ = frame_error ? frame_error
                                   : std::make_exception_ptr(std::logic_error("ctxvars: task ended without a result"));
      keep->done_ = true;
      cont = std::exchange(keep->waiter_, nullptr);
      keep->cv_.notify_all();
    }
    return cont ? cont : std::noop_coroutine();
  }
  bool done() const {
    std::lock_guard lk(m_);
    return done_;
  }
  // Blocks until done, running the coroutines queued for this waiting thread
  // meanwhile (sync_wait with an explicit context: see local_schedule).
  // Throws context_in_use_error if the calling thread is inside the task's
  // explicit context: the task could never enter it.
  void wait() {
    std::unique_lock lk(m_);
    for (;;) {
      if (!done_ && ctx_ && ctx_->entered_by_this_thread())
        throw context_in_use_error(
            "ctxvars: waiting for a task from a thread that is inside the task's context: the task could never "
            "enter it (leave the context first, or co_await the task)");
      cv_.wait(lk, [&] { return done_ || !local_.empty(); });
      if (local_.empty()) return;
      const std::coroutine_handle<> h = local_.front();
      local_.pop_front();
      lk.unlock();
      h.resume();
      lk.lock();
    }
  }
  // false: already done, do not suspend. Throws std::logic_error if another
  // coroutine already waits or the result was taken.
  bool set_waiter(std::coroutine_handle<> h) {
    std::lock_guard lk(m_);
    if (taken_) throw_result_taken();
    if (waiter_) throw_second_waiter();
    if (done_) return false;
    waiter_ = h;
    return true;
  }
  // The outcome, once: rethrows the task's exception, or moves the value out.
  // If the move throws, the exception propagates and the value stays for
  // another try.
  T take() {
    {
      std::lock_guard lk(m_);
      if (taken_) throw_result_taken();
      taken_ = true;
      if (error_) std::rethrow_exception(error_);
    }
    if constexpr (!std::is_void_v<T>) {
      try {
        T r = std::move(*value_);
        value_.reset();  // the moved-from shell dies now, not with the last handle
        return r;
      } catch (...) {
        std::lock_guard lk(m_);
        taken_ = false;
        throw;
      }
    }
  }
  bool taken() const {
    std::lock_guard lk(m_);
    return taken_;
  }
  std::stop_source& stop_source() noexcept { return stop_; }

  // A scheduler whose work runs on the thread blocked in wait(): sync_wait's.
  struct local_schedule {
    spawn_state* st;
    auto operator()() const noexcept {
      struct awaiter {
        spawn_state* st;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) const {
          std::lock_guard lk(st->m_);
          st->local_.push_back(h);
          st->cv_.notify_all();
        }
        void await_resume() const noexcept {}
      };
      return awaiter{st};
    }
  };

  ~spawn_state() {
    if (ctx_) ctx_->release();  // the task never started (start failed)
  }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  bool done_ = false;
  bool taken_ = false;
  std::optional<stored> value_;
  std::exception_ptr error_;
  std::coroutine_handle<> waiter_;
  context_impl* ctx_ = nullptr;
  std::deque<std::coroutine_handle<>> local_;
  std::stop_source stop_;
};

template <class T>
struct deliver {
  using is_ctxvars_deliver = void;
  spawn_state<T>* st;
  typename task<T>::awaiter inner;
  bool await_ready() const noexcept { return false; }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
    return inner.await_suspend(parent);
  }
  void await_resume() {
    if constexpr (std::is_void_v<T>) {
      inner.await_resume();
      st->set_value();
    } else {
      st->set_value(inner.await_resume());
    }
  }
};

// The frame that drives a spawned task: hops to the scheduler, enters the
// task's context, awaits the task (so it shares this frame's context), and
// records the outcome; finish() publishes it.
template <class T, class Schedule>
task<void> drive(std::shared_ptr<spawn_state<T>> st, Schedule schedule, task<T> t) {
  try {
    co_await schedule();
    co_await enter_chain{};  // if the hop did not suspend
    co_await deliver<T>{st.get(), std::move(t).operator co_await()};
  } catch (...) {
    st->set_error(std::current_exception());
  }
}

struct inline_schedule {
  std::suspend_never operator()() const noexcept { return {}; }
};

template <class T, class Schedule>
void start(const std::shared_ptr<spawn_state<T>>& st, context c, bool private_context, Schedule schedule,
           task<T> t) {
  if (!private_context) {
    context_impl* ci = context_access::impl(c);
    st->watch_context(ci);
  }
  auto h = drive<T>(st, schedule, std::move(t)).release();
  try {
    chain_state& chain =
        h.promise().make_root(context_access::take(c), st->stop_source().get_token(), private_context);
    if (!private_context) chain.resume = make_resumer(chain, schedule);
  } catch (...) {
    h.destroy();
    throw;
  }
  h.promise().set_on_done(&spawn_state<T>::finish, st.get());  // detached: frees itself
  h.resume();  // hops to the scheduler (or, inline, runs the task)
}
}  // namespace detail

// A handle to a spawned task: await it from a task (once), or block on get()
// (once). Move-only, like std::future: the result is moved out to the one
// taker; a second get() or co_await, or a second coroutine awaiting while one
// already waits, throws std::logic_error. Destroying the handle detaches the
// task (it runs on; its result is dropped).
template <class T>
class spawned {
 public:
  explicit spawned(std::shared_ptr<detail::spawn_state<T>> s) noexcept : st_(std::move(s)) {}
  spawned(spawned&&) noexcept = default;
  spawned& operator=(spawned&&) noexcept = default;
  spawned(const spawned&) = delete;
  spawned& operator=(const spawned&) = delete;

  // True while the result can still be taken (not moved from, not taken).
  bool valid() const { return st_ && !st_->taken(); }
  // True once the task finished. Throws std::logic_error on a moved-from handle.
  bool done() const { return state().done(); }
  // Blocks until the task finished; returns its value or rethrows its
  // exception. Throws std::logic_error if the result was already taken, and
  // context_in_use_error if the calling thread is inside the task's explicit
  // context (the task could never run: leave it first).
  T get() {
    state().wait();
    return st_->take();
  }
  // Asks the task to stop (see this_task::stop_token). No effect on a
  // moved-from handle.
  void request_stop() noexcept {
    if (st_) st_->stop_source().request_stop();
  }

  struct awaiter {
    std::shared_ptr<detail::spawn_state<T>> st;
    bool await_ready() const { return st->done(); }
    bool await_suspend(std::coroutine_handle<> h) { return st->set_waiter(h); }
    T await_resume() { return st->take(); }
  };
  // co_await s (from a task: the awaiting task keeps its own context).
  awaiter operator co_await() const {
    (void)state();
    return awaiter{st_};
  }

 private:
  detail::spawn_state<T>& state() const {
    if (!st_) throw std::logic_error("ctxvars: use of a moved-from spawned<T>");
    return *st_;
  }
  std::shared_ptr<detail::spawn_state<T>> st_;
};

// Starts t as a task on `sched` (anything with schedule() returning an
// awaitable that resumes on the scheduler), in a copy of the current context.
// The task's first step runs on the scheduler, never inline. Allocates the
// copy, the task's state and its driving frame (std::bad_alloc).
template <class Scheduler, class T>
spawned<T> spawn(Scheduler& sched, task<T> t) {
  auto st = std::make_shared<detail::spawn_state<T>>();
  detail::start(st, detail::private_copy_of_current(), true, [&sched] { return sched.schedule(); }, std::move(t));
  return spawned<T>(std::move(st));
}
// The same, in `c` itself. Never fails because another task (or thread) is
// inside `c`: the task's steps wait their turn (see the top of this file).
template <class Scheduler, class T>
spawned<T> spawn(Scheduler& sched, context c, task<T> t) {
  auto st = std::make_shared<detail::spawn_state<T>>();
  detail::start(st, detail::context_access::take(c), false, [&sched] { return sched.schedule(); }, std::move(t));
  return spawned<T>(std::move(st));
}

// Runs t to completion as a task started on this thread (it may hop to other
// threads), in a copy of the current context; returns its value or rethrows.
template <class T>
T sync_wait(task<T> t) {
  auto st = std::make_shared<detail::spawn_state<T>>();
  detail::start(st, detail::private_copy_of_current(), true, detail::inline_schedule{}, std::move(t));
  return spawned<T>(std::move(st)).get();
}
// The same, in `c` itself. If another thread is inside `c`, the task's steps
// wait their turn on this (blocked) thread. Throws context_in_use_error if the
// calling thread is itself inside `c` (it would wait for itself).
template <class T>
T sync_wait(context c, task<T> t) {
  if (detail::context_access::impl(c)->entered_by_this_thread())
    throw context_in_use_error(
        "ctxvars: sync_wait(c, task) from a thread that is inside c: the task could never enter it");
  auto st = std::make_shared<detail::spawn_state<T>>();
  detail::start(st, detail::context_access::take(c), false, typename detail::spawn_state<T>::local_schedule{st.get()},
                std::move(t));
  return spawned<T>(std::move(st)).get();
}

}  // namespace ctxvars
