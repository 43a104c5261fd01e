// context_executor: an executor that runs everything submitted to it inside a task's context; unwrap.
// Part of the Asio adapter (one implementation for both Asios; see adapter.hpp).
#pragma once

#include "task_block.hpp"

namespace ctxvars::detail::asio_adapter {

// ---- context_executor ---------------------------------------------------------------

template <class Traits, class Executor>
class basic_context_executor;

// A function object that runs `f` inside the task's context, or queues it
// when it must not wait, or when earlier functions are queued (see "Order" in
// task_block.hpp and the waiting rule in adapter.hpp). Two exceptions:
//  - submitted through a blocking.always executor, it never queues (the caller
//    expects f to have run when execute returns): it waits for the context;
//  - destroyed without having run (its executor was shut down or destroyed
//    with it pending: a suspended coroutine's frame unwinding), it destroys f
//    inside the task's context, so that destructors of the frame's locals
//    that write variables write the task's values, not the destroying
//    thread's (best effort: if the context stays busy, f dies where the
//    thread is).
template <class Traits, class Executor, class F>
struct in_context {
  basic_context_executor<Traits, Executor> ex;
  F f;
  bool ran = false;  // f was run (or handed to a pending step, which runs it)

  template <class G>
  in_context(basic_context_executor<Traits, Executor> e, G&& g) : ex(std::move(e)), f(std::forward<G>(g)) {}
  in_context(in_context&&) = default;  // the moved-from one has no task: its destructor does nothing
  in_context& operator=(in_context&&) = delete;
  ~in_context() {
    if (CTXVARS_UNLIKELY(!ran && ex.task().get())) destroy_unrun();
  }

  void operator()() {
    ran = true;
    task_block* b = ex.task().get();
    if (CTXVARS_UNLIKELY(b->has_pending())) {
      if (CTXVARS_UNLIKELY(blocking_always())) return run_waiting(b);
      wait_in_line(b, false);  // behind the queued ones, finished or not
      return;
    }
    if (b->finished.load(std::memory_order_acquire)) {
      std::move(f)();
      return;
    }
    step_scope s;
    switch (s.begin(b)) {
      case step_entry::entered:
      case step_entry::finished:  // run where the thread is, entering nothing
        std::move(f)();
        return;
      case step_entry::busy:
        if (CTXVARS_UNLIKELY(blocking_always())) {
          s.end();
          return run_waiting(b);
        }
        wait_in_line(b, s.gave_way());
        return;
    }
  }

 private:
  CTXVARS_NOINLINE void wait_in_line(task_block* b, bool gave_way);  // the slow path, out of line
  CTXVARS_NOINLINE void run_waiting(task_block* b);
  CTXVARS_NOINLINE void destroy_unrun() noexcept;
  // The executor promises that execute() returns after f ran (only checked
  // on the slow paths).
  bool blocking_always() const noexcept {
    if constexpr (Traits::template can_query<const Executor&, std::decay_t<decltype(Traits::blocking)>>)
      return Traits::query(ex.get_inner_executor(), Traits::blocking) == Traits::blocking_always;
    else
      return false;
  }
};

// A queued in_context (allocated on the slow path only).
template <class Traits, class Executor, class F>
struct pending_in_context final : pending_step {
  explicit pending_in_context(in_context<Traits, Executor, F>&& s) : step(std::move(s)) {}
  void run() override {
    step.ran = true;
    std::move(step.f)();
  }
  void post_runner(task_block* b) override;
  bool same_executor(const pending_step& o) const noexcept override {
    return o.executor_type() == typeid(Executor) &&
           *static_cast<const Executor*>(o.executor()) == step.ex.get_inner_executor();
  }
  const std::type_info& executor_type() const noexcept override { return typeid(Executor); }
  const void* executor() const noexcept override { return &step.ex.get_inner_executor(); }

  in_context<Traits, Executor, F> step;
};

// Serves a task's queue (see "Order" in task_block.hpp), posted through the
// head's executor: enters the task's context by the waiting rule (giving way
// by re-posting itself), then runs the queued steps (run_pending). At most one
// exists per task, from the post that starts the queue's service until it
// ends; move-only. Destroyed without having run (its executor shut down
// first), it destroys the queued steps unrun, as the executor would have.
template <class Traits, class Executor>
class queue_runner {
 public:
  queue_runner(Executor ex, task_ref t) noexcept(std::is_nothrow_move_constructible_v<Executor>)
      : ex_(std::move(ex)), t_(std::move(t)) {}
  queue_runner(queue_runner&&) noexcept(std::is_nothrow_move_constructible_v<Executor>) = default;
  queue_runner& operator=(queue_runner&&) = delete;
  ~queue_runner() {
    if (t_.get()) task_block::drop_pending(t_.get());
  }

  void operator()() {
    task_ref t = std::move(t_);  // from here on this object is disarmed
    task_block* b = t.get();
    step_scope s;
    const step_entry e = b->finished.load(std::memory_order_acquire) ? step_entry::finished : s.begin(b);
    if (e == step_entry::busy) {
      const bool gave_way = s.gave_way();
      post(std::move(ex_), std::move(t));
      // After a vain wait the holder may be this executor's own loop, run by
      // a thread inside c.run(...): pause so that it, not this thread, picks
      // the runner up (otherwise this thread takes it straight back).
      if (gave_way) std::this_thread::sleep_for(std::chrono::microseconds(100));
      return;
    }
    run_pending(b, s);
  }

  // Posts a runner for b's queue through ex (blocking.never).
  static void post(Executor ex, task_ref t) {
    auto never = Traits::prefer(ex, Traits::blocking_never);
    Traits::execute(never, queue_runner(std::move(ex), std::move(t)));
  }

 private:
  Executor ex_;
  task_ref t_;  // null once moved from or run
};

template <class Traits, class Executor, class F>
void pending_in_context<Traits, Executor, F>::post_runner(task_block* b) {
  b->retain();
  queue_runner<Traits, Executor>::post(step.ex.get_inner_executor(), task_ref(b));
}

template <class Traits, class Executor, class F>
void in_context<Traits, Executor, F>::wait_in_line(task_block* b, bool gave_way) {
  ran = false;  // the pending copy runs it, or destroys it unrun (in the context)
  task_block::enqueue(b, new pending_in_context<Traits, Executor, F>(std::move(*this)));
  // After a vain wait the holder may be this executor's own loop, run by a
  // thread inside c.run(...): pause so that it, not this thread, picks the
  // queue's runner up.
  if (gave_way) std::this_thread::sleep_for(std::chrono::microseconds(100));
}

// blocking.always: wait for the context (never queue), however long, also
// while this thread holds another context: the caller asked to block until f
// has run, so this wait is the caller's, like a mutex's (two such waits, each
// holding the context the other needs, deadlock). Does not keep FIFO order
// with steps queued before it.
template <class Traits, class Executor, class F>
void in_context<Traits, Executor, F>::run_waiting(task_block* b) {
  for (unsigned round = 0;; ++round) {
    if (b->finished.load(std::memory_order_acquire) && !b->has_pending()) {
      std::move(f)();
      return;
    }
    {
      step_scope s;
      const step_entry e = s.begin(b);
      if (e != step_entry::busy) {
        std::move(f)();
        return;
      }
    }
    if (round < 64)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

template <class Traits, class Executor, class F>
void in_context<Traits, Executor, F>::destroy_unrun() noexcept {
  task_block* b = ex.task().get();
  if (b->finished.load(std::memory_order_acquire)) return;  // nothing of the task is left to run in it
  step_scope s;
  if (s.begin(b) != step_entry::entered) return;  // busy (or finished): f dies where the thread is
  F doomed(std::move(f));  // destroyed here, in the context; the moved-from f dies after
  (void)doomed;
}

// What the executors of this adapter that wrap another executor for a task
// share (CRTP: Wrapper is basic_context_executor<Traits, Executor> or
// follow_executor<Traits, Executor>): the wrapped executor, the task, and
// the forwarding of every property query, require and prefer to the wrapped
// executor (require and prefer re-wrap the result in Wrapper's template, for
// the same task), so that a Wrapper fits any_io_executor. Each Wrapper
// defines execute and ==. Costs nothing beyond the members.
template <class Wrapper, class Traits, class Executor>
class wrapping_executor;

// Wrapper's template, around another executor.
template <class Wrapper, class Inner>
struct rewrap;
template <template <class, class> class W, class Traits, class Executor, class Inner>
struct rewrap<W<Traits, Executor>, Inner> {
  using type = W<Traits, Inner>;
};

template <class Wrapper, class Traits, class Executor>
class wrapping_executor {
 public:
  using inner_executor_type = Executor;

  const Executor& get_inner_executor() const noexcept { return ex_; }
  // The task (null for a moved-from executor, or for a follow_executor awaited
  // outside any task).
  const task_ref& task() const noexcept { return task_; }

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
    return typename rewrap<Wrapper, inner>::type(Traits::require(ex_, p), task_);
  }
  template <class P>
    requires Traits::template can_prefer<const Executor&, P>
  auto prefer(const P& p) const {
    using inner = std::decay_t<decltype(Traits::prefer(ex_, p))>;
    return typename rewrap<Wrapper, inner>::type(Traits::prefer(ex_, p), task_);
  }

 protected:
  wrapping_executor(Executor ex, task_ref t) noexcept(std::is_nothrow_move_constructible_v<Executor>)
      : ex_(std::move(ex)), task_(std::move(t)) {}

  Executor ex_;
  task_ref task_;
};

// An executor that runs everything submitted to it inside one context.
// Every property query, require and prefer is forwarded to the wrapped
// executor (require and prefer re-wrap the result), so it fits any_io_executor.
// Functions submitted to copies of one executor run in submission order where
// the wrapped executor keeps it (a strand), however busy the context is: one
// that must wait for the context is queued (one allocation; std::bad_alloc
// would leave the loop's run()), see "Order" in task_block.hpp. Thread-safe
// as the wrapped executor is.
// A move hands the task over (Asio moves executors constantly): a moved-from
// executor may be destroyed, assigned, copied and compared (equal only to
// another moved-from one with an equal inner executor); get_context() and
// execute() on it throw std::logic_error.
template <class Traits, class Executor>
class basic_context_executor
    : public wrapping_executor<basic_context_executor<Traits, Executor>, Traits, Executor> {
  using base = wrapping_executor<basic_context_executor<Traits, Executor>, Traits, Executor>;

 public:
  // Runs what is submitted inside c (a new task block: the executor never
  // stops entering c). Allocates.
  basic_context_executor(Executor ex, const context& c) : base(std::move(ex), make_task(c)) {}
  basic_context_executor(Executor ex, task_ref t) noexcept(std::is_nothrow_move_constructible_v<Executor>)
      : base(std::move(ex), std::move(t)) {}

  // The context every function submitted here runs in.
  ctxvars::context get_context() const { return context_access::make(live_task()->ctx); }

  template <class F>
  void execute(F&& f) const {
    (void)live_task();
    Traits::execute(this->ex_, in_context<Traits, Executor, std::decay_t<F>>{*this, std::forward<F>(f)});
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
    if (CTXVARS_UNLIKELY(!this->task_.get())) throw_moved_from_context_executor();
    return this->task_.get();
  }
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

}  // namespace ctxvars::detail::asio_adapter
