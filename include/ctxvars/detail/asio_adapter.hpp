// The one implementation of the Asio adapter, templated on a traits type that
// names the Asio it serves: `ctxvars::asio::traits` (standalone Asio, in
// <ctxvars/asio.hpp>) or `ctxvars::boost_asio::traits` (Boost.Asio, in
// <ctxvars/boost_asio.hpp>). Those headers only name their Asio and export
// the objects below under the public names (co_spawn, context_executor,
// gather); everything that decides behaviour is here.
//
// A Traits type provides:
//   awaitable<T, E = any_io_executor>, any_io_executor, io_executor (of
//   io_context), thread_pool_executor, system_executor, strand<E>,
//   execution_context, default_completion_token_t<E>, is_awaitable<A>;
//   is_executor<E>, can_query<E, P>, can_require<E, P>, can_prefer<E, P>,
//   is_nothrow_query<E, P>; execute, query, require, prefer, co_spawn,
//   make_parallel_group (static functions); blocking_never, this_coro_executor,
//   deferred, use_awaitable, wait_for_all (static constexpr values or functions).
//
// How a task keeps its context. Asio has no suspend/resume hook, but every
// step of an awaitable (its start and every resumption after an asynchronous
// operation) runs through the coroutine's executor. co_spawn gives the
// coroutine a context_executor, which wraps the real executor and runs each
// function it is given inside the task's context (a step_scope). A coroutine
// that is co_awaited directly runs in the same step, so it shares its
// awaiter's context (Python's rule). When the task suspends, the step returns
// and the thread gets back the context it had.
//
// The waiting rule (no livelock). A context is entered by one thread at a
// time, so a step may find its context busy: Asio posts the next step of a
// task before the current step has returned, and tasks may share one context
// explicitly. A step whose thread holds no context (only its own base
// context) waits a little for the other thread to leave, and gives way (is
// posted again) if it does not: the holder may itself be waiting for this
// step (a thread running the event loop inside c.run(...) leaves c only when
// the loop ends). A step whose thread already holds a context (a step
// dispatched inline from inside another task's step: co_spawn's first step, a
// dispatch completing inline) NEVER waits: it is posted again to its executor
// (blocking.never) and runs later. So no thread ever waits while holding a
// context, and no wait is unbounded: no cycle of waiting threads can form.
//
// A finished task leaves nothing behind. The task's body is wrapped (run_task)
// so that once it has returned or thrown, the step leaves the task's context
// before Asio invokes the completion handler, and the task's executor stops
// entering the context. The handler (a plain coroutine awaiting the task, a
// callback, a future) runs in the context the thread had outside the task.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>

#include "../ctxvars.hpp"

namespace ctxvars::detail::asio_adapter {

// ---- the task block ---------------------------------------------------------------

// This thread's identity for task_block::owner: the address of a trivially
// destructible thread_local, valid at any point of the thread's life. An
// address may be reused by a later thread (HAZARDS.md), which is harmless
// here: a thread clears `owner` before its step ends, so no block names a
// thread that is gone, and that clear happens before any later thread with
// the same TLS block starts (the block is handed over through the thread
// library's join/stack cache), so it cannot read the old value either.
// Tested: AsioStress.StepsOnShortLivedThreadsCountEveryExecutorCopyOfEveryTask.
inline constinit thread_local char owner_tag = 0;
inline std::uintptr_t this_owner_tag() noexcept { return reinterpret_cast<std::uintptr_t>(&owner_tag); }

// Shared by every copy of one task's executor: the task's context and whether
// the task has finished. Counted (Asio copies executors across threads).
//
// Biased counting. Asio copies and destroys the executor many times per
// resumption, nearly all of it on the thread running the task's step. While a
// thread runs a step that entered the task's context (step_scope), it owns the
// block: its copies and releases change `biased`, a plain counter only the
// owner touches; every other thread uses the atomic `shared`. The owner sets
// `owned` in `shared` when its step begins and, when the step ends, adds
// `biased` into `shared` and clears `owned` in one atomic operation. The true
// count is shared + biased - owned; `shared` cannot reach zero while `owned`
// is set (it exceeds any possible count), so the block is deleted only by a
// release that finds no owner, or by the owner's flush. Ownership is taken
// after the step entered the context and given up before it leaves it; a
// context is entered by one thread at a time, so a block has at most one
// owner, and the next owner sees `biased` == 0 (the flush happens before the
// leave, which the next enter acquires).
struct task_block {
  explicit task_block(context_impl* c) noexcept : ctx(c) { c->retain(); }
  ~task_block() { ctx->release(); }
  task_block(const task_block&) = delete;
  task_block& operator=(const task_block&) = delete;

  static constexpr std::int64_t owned = std::int64_t{1} << 48;

  std::atomic<std::int64_t> shared{1};
  std::atomic<std::uintptr_t> owner{0};  // this_owner_tag() of the owner, 0 if none
  std::int64_t biased = 0;               // the owner's part; owner only
  // Set by the task's last step, before its completion handler runs; from
  // then on the executor runs functions without entering the context.
  std::atomic<bool> finished{false};
  context_impl* const ctx;  // owns one reference
#if CTXVARS_DEBUG_CHECKS
  debug::task_entry debug_entry{ctx, "Asio co_spawn"};  // ctxvars::debug::dump_tasks()
#endif

  bool owned_by_this_thread() const noexcept {
    return owner.load(std::memory_order_relaxed) == this_owner_tag();
  }
  void retain() noexcept {
    if (owned_by_this_thread())
      ++biased;
    else
      shared.fetch_add(1, std::memory_order_relaxed);
  }
  // Deletes the block if that was the last reference.
  static void release(task_block* b) noexcept {
    if (b->owned_by_this_thread()) {
      --b->biased;  // the owner's flush decides
      return;
    }
    // The only reference and no owner: nobody else can make a new one.
    if (b->shared.load(std::memory_order_acquire) == 1 ||
        b->shared.fetch_sub(1, std::memory_order_acq_rel) == 1)
      delete b;
  }
  // The calling thread entered ctx for a step: count its copies privately.
  void own() noexcept {
    shared.fetch_add(owned, std::memory_order_relaxed);
    owner.store(this_owner_tag(), std::memory_order_relaxed);
  }
  // Before leaving ctx. Deletes the block if no reference is left.
  static void disown(task_block* b) noexcept {
    const std::int64_t d = b->biased - owned;
    b->biased = 0;
    b->owner.store(0, std::memory_order_relaxed);
    if (b->shared.fetch_add(d, std::memory_order_acq_rel) + d == 0) delete b;
  }
};

class task_ref {
 public:
  task_ref() noexcept = default;
  explicit task_ref(task_block* b) noexcept : b_(b) {}  // adopts
  task_ref(const task_ref& o) noexcept : b_(o.b_) {
    if (b_) b_->retain();
  }
  task_ref(task_ref&& o) noexcept : b_(std::exchange(o.b_, nullptr)) {}
  task_ref& operator=(task_ref o) noexcept {
    std::swap(b_, o.b_);
    return *this;
  }
  // Asio moves executors around constantly: a moved-from reference must cost
  // one compare, so the release is kept out of line.
  ~task_ref() {
    if (b_) release(b_);
  }
  task_block* get() const noexcept { return b_; }
  task_block* operator->() const noexcept { return b_; }

 private:
  [[gnu::noinline]] static void release(task_block* b) noexcept { task_block::release(b); }
  task_block* b_ = nullptr;
};

inline task_ref make_task(const context& c) {
  return task_ref(new task_block(context_access::impl(c)));
}

// ---- steps --------------------------------------------------------------------------

class step_scope;
// The innermost step_scope of this thread that switched contexts (or null).
inline constinit thread_local step_scope* innermost_step = nullptr;

// True if the thread is inside a context other than its own base context,
// i.e. it holds one that another thread may be waiting for.
inline bool holds_a_context(const thread_state& st) noexcept {
  return st.current != nullptr && st.current != st.base;
}

// Makes a task's context current for one step run by an executor (see the
// waiting rule at the top of this file).
class step_scope {
 public:
  step_scope() noexcept = default;
  step_scope(const step_scope&) = delete;
  step_scope& operator=(const step_scope&) = delete;
  ~step_scope() { end(); }

  // Makes c current. false: c is busy and this thread holds another context
  // or c stayed busy through a short wait, so the step must not wait here
  // (the caller re-posts it); nothing changed.
  bool begin(task_block* b) noexcept {
    context_impl* const c = b->ctx;
    thread_state& st = this_thread_state();
    if (st.current == c) return true;  // already current: a dispatch completing inline
    if (c->entered_by_this_thread()) {
      // Entered further down this thread's stack (a step of another task was
      // dispatched inline inside this one's): switch back to it for the step.
      mode_ = mode::switched;
    } else {
      if (!c->try_enter()) {
        if (holds_a_context(st)) return false;
        if (!wait_to_enter(c)) {
          gave_way_ = true;
          return false;
        }
      }
      mode_ = mode::entered;
    }
    c_ = c;
    b_ = b;
    if (mode_ == mode::entered) b->own();
#if CTXVARS_DEBUG_CHECKS
    if (mode_ == mode::entered) b->debug_entry.running(thread_id(st));
#endif
    r_ = switch_to(st, c);
    prev_ = innermost_step;
    innermost_step = this;
    return true;
  }

  // Gives the thread back what it had before begin(). Idempotent.
  void end() noexcept {
    if (mode_ == mode::none) return;
    innermost_step = prev_;
    switch_back(this_thread_state(), c_, r_);
    if (mode_ == mode::entered) {
#if CTXVARS_DEBUG_CHECKS
      b_->debug_entry.suspended(nullptr);
#endif
      // Never the last reference (the in_context running this step holds
      // one); if it were, c would still live: entering it counted a reference.
      task_block::disown(b_);
      c_->leave();
    }
    mode_ = mode::none;
  }

  // begin() returned false after waiting for c in vain (see wait_to_enter).
  bool gave_way() const noexcept { return gave_way_; }

  // The task whose step this is (null once ended or if begin() switched nothing).
  task_block* block() const noexcept { return mode_ == mode::none ? nullptr : b_; }

 private:
  enum class mode { none, switched, entered };
  // A short wait for c, for a thread that holds no context. Bounded: the
  // holder may be a thread running the event loop inside c.run(...), which
  // leaves c only when the loop ends, i.e. after this step; false: give way.
  static bool wait_to_enter(context_impl* c) noexcept {
    for (unsigned spins = 0; spins < 64 + 256; ++spins) {
      if (spins >= 64) std::this_thread::yield();
      if (c->try_enter()) return true;
    }
    return false;
  }

  context_impl* c_ = nullptr;
  task_block* b_ = nullptr;  // the step's task; owned by this thread while entered
  switch_record r_{};
  step_scope* prev_ = nullptr;
  mode mode_ = mode::none;
  bool gave_way_ = false;
};

// Called by a task's last step once its body is done: no more task code runs,
// so leave the context now, before Asio runs the completion handler. Only a
// step of this task ends here: a task whose context was already current (a
// child spawned in its parent's own context, finishing inline inside the
// parent's step) leaves that step to the parent, whose code goes on in it.
inline void finish_task(task_block* b) noexcept {
  b->finished.store(true, std::memory_order_release);
  step_scope* s = innermost_step;
  if (s && s->block() == b && this_thread_state().current == b->ctx) s->end();
}

// ---- context_executor ---------------------------------------------------------------

template <class Traits, class Executor>
class basic_context_executor;

// A function object that runs `f` inside the task's context, or re-posts
// itself when it must not wait (see the waiting rule).
template <class Traits, class Executor, class F>
struct in_context {
  basic_context_executor<Traits, Executor> ex;
  F f;
  void operator()() {
    task_block* b = ex.task().get();
    if (b->finished.load(std::memory_order_acquire)) {
      std::move(f)();
      return;
    }
    step_scope s;
    if (!s.begin(b)) {
      const bool gave_way = s.gave_way();
      auto inner = Traits::prefer(ex.get_inner_executor(), Traits::blocking_never);
      Traits::execute(inner, std::move(*this));
      // After a vain wait the holder may be this executor's own loop, run by
      // a thread inside c.run(...): pause so that it, not this thread, picks
      // the step up (otherwise this thread takes it straight back).
      if (gave_way) std::this_thread::sleep_for(std::chrono::microseconds(100));
      return;
    }
    std::move(f)();
  }
};

// An executor that runs everything submitted to it inside one context.
// Every property query, require and prefer is forwarded to the wrapped
// executor (require and prefer re-wrap the result), so it fits any_io_executor.
// A move hands the task over (Asio moves executors constantly): a moved-from
// executor may be destroyed, assigned, copied and compared (equal only to
// another moved-from one with an equal inner executor); get_context() and
// execute() on it throw std::logic_error.
template <class Traits, class Executor>
class basic_context_executor {
 public:
  using inner_executor_type = Executor;

  // Runs what is submitted inside c (a new task block: the executor never
  // stops entering c). Allocates.
  basic_context_executor(Executor ex, const context& c)
      : ex_(std::move(ex)), task_(make_task(c)) {}
  basic_context_executor(Executor ex, task_ref t) noexcept(
      std::is_nothrow_move_constructible_v<Executor>)
      : ex_(std::move(ex)), task_(std::move(t)) {}

  const Executor& get_inner_executor() const noexcept { return ex_; }
  // The context every function submitted here runs in.
  ctxvars::context get_context() const { return context_access::make(live_task()->ctx); }
  const task_ref& task() const noexcept { return task_; }

  template <class F>
  void execute(F&& f) const {
    (void)live_task();
    Traits::execute(ex_, in_context<Traits, Executor, std::decay_t<F>>{*this, std::forward<F>(f)});
  }

  template <class P>
    requires Traits::template can_query<const Executor&, P>
  decltype(auto) query(const P& p) const
      noexcept(Traits::template is_nothrow_query<const Executor&, P>) {
    return Traits::query(ex_, p);
  }
  template <class P>
    requires Traits::template can_require<const Executor&, P>
  auto require(const P& p) const {
    using inner = std::decay_t<decltype(Traits::require(ex_, p))>;
    return basic_context_executor<Traits, inner>(Traits::require(ex_, p), task_);
  }
  template <class P>
    requires Traits::template can_prefer<const Executor&, P>
  auto prefer(const P& p) const {
    using inner = std::decay_t<decltype(Traits::prefer(ex_, p))>;
    return basic_context_executor<Traits, inner>(Traits::prefer(ex_, p), task_);
  }

  friend bool operator==(const basic_context_executor& a, const basic_context_executor& b) noexcept {
    if (!a.task_.get() || !b.task_.get()) return a.ex_ == b.ex_ && a.task_.get() == b.task_.get();  // moved-from
    return a.ex_ == b.ex_ && a.task_->ctx == b.task_->ctx;
  }
  friend bool operator!=(const basic_context_executor& a, const basic_context_executor& b) noexcept {
    return !(a == b);
  }

 private:
  // The task, or std::logic_error for a moved-from executor.
  task_block* live_task() const {
    if (CTXVARS_UNLIKELY(!task_.get())) throw_moved_from_context_executor();
    return task_.get();
  }
  Executor ex_;
  task_ref task_;
};

template <class T>
struct is_context_executor : std::false_type {};
template <class Tr, class E>
struct is_context_executor<basic_context_executor<Tr, E>> : std::true_type {};

// ---- unwrap: spawn a child on its parent's own executor -----------------------------

// If `ex` (a polymorphic executor) holds a context_executor<Inner>, the Inner
// as an any_io_executor. Asio 1.22's target<T>() is an unchecked static_cast:
// compare target_type() first.
template <class Traits, class Inner, class AnyEx>
bool try_unwrap_as(const AnyEx& ex, std::optional<typename Traits::any_io_executor>& out);

template <class Traits, class Ex>
auto unwrap(const Ex& ex);

template <class Traits, class Inner, class AnyEx>
bool try_unwrap_as(const AnyEx& ex, std::optional<typename Traits::any_io_executor>& out) {
  using wrapped = basic_context_executor<Traits, Inner>;
  if (ex.target_type() != typeid(wrapped)) return false;
  const wrapped* p = ex.template target<wrapped>();
  if (!p) return false;
  out.emplace(typename Traits::any_io_executor(unwrap<Traits>(p->get_inner_executor())));
  return true;
}

// The executor under any context_executor layer, so that a task spawned from
// inside another task runs on its parent's executor (its strand included)
// without also entering its parent's context. An unknown executor type
// wrapped in any_io_executor is left as it is: the child then runs correctly
// in its own context (the innermost layer wins) but its steps also enter the
// parent's context, serialising it with its parent.
template <class Traits, class Ex>
auto unwrap(const Ex& ex) {
  if constexpr (is_context_executor<Ex>::value) {
    return unwrap<Traits>(ex.get_inner_executor());
  } else if constexpr (std::is_same_v<Ex, typename Traits::any_io_executor>) {
    using any = typename Traits::any_io_executor;
    using io = typename Traits::io_executor;
    using pool = typename Traits::thread_pool_executor;
    using sys = typename Traits::system_executor;
    std::optional<any> out;
    if (ex.target_type() == typeid(void)) return ex;  // empty
    (void)(try_unwrap_as<Traits, io>(ex, out) || try_unwrap_as<Traits, any>(ex, out) ||
           try_unwrap_as<Traits, typename Traits::template strand<io>>(ex, out) ||
           try_unwrap_as<Traits, typename Traits::template strand<any>>(ex, out) ||
           try_unwrap_as<Traits, pool>(ex, out) ||
           try_unwrap_as<Traits, typename Traits::template strand<pool>>(ex, out) ||
           try_unwrap_as<Traits, sys>(ex, out) ||
           try_unwrap_as<Traits, typename Traits::template strand<sys>>(ex, out));
    return out ? std::move(*out) : ex;
  } else {
    return ex;
  }
}

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
    return (*this)(ex, ctxvars::copy_context(), std::forward<Src>(src), std::forward<Token>(token));
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
    return (*this)(ctx.get_executor(), ctxvars::copy_context(), std::forward<Src>(src),
                   std::forward<Token>(token));
  }

};

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
