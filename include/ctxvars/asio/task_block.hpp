// The task block (a task's context, shared by every copy of its executor) and the step scope that enters it.
// Part of the Asio adapter (one implementation for both Asios; see adapter.hpp).
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

struct task_block;

// A function that could not run when it arrived, waiting in its task's queue
// (see "Order" below). Type-erased; allocated only on that slow path.
struct pending_step {
  pending_step() noexcept = default;
  pending_step(const pending_step&) = delete;
  pending_step& operator=(const pending_step&) = delete;
  virtual ~pending_step() = default;
  // Runs the function (in whatever context the caller made current).
  virtual void run() = 0;
  // Posts the queue's runner (with a new reference to b) through this step's
  // executor, blocking.never. Throws what the executor's execute throws; the
  // runner it built then drops the queue (see queue_runner).
  virtual void post_runner(task_block* b) = 0;
  // True if `o` was submitted to an executor equal to this one's.
  virtual bool same_executor(const pending_step& o) const noexcept = 0;
  virtual const std::type_info& executor_type() const noexcept = 0;
  virtual const void* executor() const noexcept = 0;

  pending_step* next = nullptr;  // the block's queue lock guards it
};

// Shared by every copy of one task's executor: the task's context and whether
// the task has finished. Counted (Asio copies executors across threads).
//
// The gate. A step enters the task's context only through the block's gate:
// it takes the gate (adds `owned` to `shared`: one locked add, acquire), then reads
// `finished`, then tries to enter ctx; it gives the gate back (release) only
// after it has left ctx. The task's last step sets `finished` while holding the
// gate (finish_task). So a step that waited while the last step ran takes the
// gate after it, sees `finished`, and runs its function outside the context:
// no thread enters a finished task's context, not even for a moment, and
// c.run(...) right after the completion handler finds c free (issue 17 §3.2).
// A thread that takes the gate and finds ctx busy (held by c.run(...) on
// another thread, or by a task sharing the context) gives it back at once: the
// gate is held for a whole step only together with ctx, so it adds no wait.
//
// Biased counting. Asio copies and destroys the executor many times per
// resumption, nearly all of it on the thread running the task's step. The
// thread holding the gate owns the block: its copies and releases change
// `biased`, a plain counter only the owner touches; every other thread uses
// the atomic `shared`. The true count is shared + biased - owned; `shared`
// cannot reach zero while `owned` is set (it exceeds any possible count), so
// the block is deleted only by a release that finds no owner, or by the
// owner's flush, which adds `biased` into `shared` and clears `owned` in the
// one atomic operation that gives the gate back. The next owner's fetch_add
// acquires that flush, so it starts with `biased` == 0. (The gate and the owner
// mark are one word: taking the gate costs the one locked add that marking
// ownership cost before.)
//
// Order. Asio runs a strand's functions in the order they were submitted; a
// step that finds the context busy must not let a later one overtake it. So
// a step that cannot enter, or that finds steps already waiting, appends
// itself to the block's queue (FIFO, one per task, whatever executor each
// step came through). One runner at a time serves the queue: posted through
// the head's own executor, it enters the context (by the waiting rule, giving
// way by re-posting itself), runs the head, then every following step
// submitted to an executor equal to the head's, in order, in the same step;
// a head on another executor gets a runner posted through that executor. The
// fast path (queue empty, context free) pays one relaxed load for this.
struct task_block {
  explicit task_block(context_impl* c) noexcept : ctx(c) { c->retain(); }
  ~task_block() { ctx->release(); }  // the queue is empty: each queued step holds a reference
  task_block(const task_block&) = delete;
  task_block& operator=(const task_block&) = delete;

  static constexpr std::int64_t owned = std::int64_t{1} << 48;
  // True if `owned` is set in a value of `shared` (without it `shared` is the
  // true count; with it, at least owned minus the owner's copies).
  static constexpr bool gate_taken(std::int64_t s) noexcept { return s >= owned / 2; }

  std::atomic<std::int64_t> shared{1};
  std::atomic<std::uintptr_t> owner{0};  // this_owner_tag() of the gate's holder, 0 if none
  std::int64_t biased = 0;               // the owner's part; owner only
  // Set by the task's last step, holding the gate, before its completion
  // handler runs; from then on the executor runs functions without entering
  // the context.
  std::atomic<bool> finished{false};
  // The queue of steps waiting their turn (see "Order"): its head, non-null
  // while any step waits (written under queue_lock_, read anywhere).
  std::atomic<pending_step*> pending{nullptr};
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
  // Takes the gate if nobody holds it; the calling thread then owns the block.
  // One locked instruction when the gate is free: mark, and take the mark
  // back if the gate was held (meanwhile `shared` only looks held to others,
  // and cannot reach zero: the caller holds a reference).
  bool try_own() noexcept {
    if (CTXVARS_UNLIKELY(gate_taken(shared.fetch_add(owned, std::memory_order_acquire)))) {
      shared.fetch_sub(owned, std::memory_order_relaxed);
      return false;
    }
    owner.store(this_owner_tag(), std::memory_order_relaxed);
    return true;
  }
  // Gives the gate back, after leaving ctx (if it was entered): flushes the
  // owner's count. Deletes the block if no reference is left.
  static void disown(task_block* b) noexcept {
    const std::int64_t d = b->biased - owned;
    b->biased = 0;
    b->owner.store(0, std::memory_order_relaxed);
    if (b->shared.fetch_add(d, std::memory_order_acq_rel) + d == 0) delete b;
  }

  // ---- the queue (see "Order"); nothing here runs user code under the lock ----

  bool has_pending() const noexcept { return pending.load(std::memory_order_relaxed) != nullptr; }

  // Appends p (adopted) and, if no runner serves the queue, posts one through
  // the head's executor. Throws what that post throws (the queue is dropped).
  static void enqueue(task_block* b, pending_step* p) {
    b->lock_queue();
    if (b->tail_)
      b->tail_->next = p;
    else
      b->pending.store(p, std::memory_order_relaxed);
    b->tail_ = p;
    pending_step* const head = b->runner_scheduled_ ? nullptr : b->pending.load(std::memory_order_relaxed);
    b->runner_scheduled_ = true;
    b->unlock_queue();
    // No runner yet, so nobody else takes the head off the queue meanwhile.
    if (head) head->post_runner(b);
  }
  // The head (the runner's own step), taken off the queue. Runner only.
  pending_step* pop() noexcept {
    lock_queue();
    pending_step* const h = pending.load(std::memory_order_relaxed);
    pending.store(h->next, std::memory_order_relaxed);
    if (!h->next) tail_ = nullptr;
    unlock_queue();
    h->next = nullptr;
    return h;
  }
  // The head, left on the queue; if none, the runner's service ends (the next
  // step to queue posts a new one). Runner only.
  pending_step* head_or_stop() noexcept {
    lock_queue();
    pending_step* const h = pending.load(std::memory_order_relaxed);
    if (!h) runner_scheduled_ = false;
    unlock_queue();
    return h;
  }
  // Destroys every queued step without running it (the runner serving them was
  // destroyed unrun: its executor is shutting down).
  static void drop_pending(task_block* b) noexcept {
    b->lock_queue();
    pending_step* p = b->pending.load(std::memory_order_relaxed);
    b->pending.store(nullptr, std::memory_order_relaxed);
    b->tail_ = nullptr;
    b->runner_scheduled_ = false;
    b->unlock_queue();
    while (p) delete std::exchange(p, p->next);
  }

 private:
  void lock_queue() noexcept {
    while (queue_lock_.exchange(true, std::memory_order_acquire))
      while (queue_lock_.load(std::memory_order_relaxed)) std::this_thread::yield();
  }
  void unlock_queue() noexcept { queue_lock_.store(false, std::memory_order_release); }

  pending_step* tail_ = nullptr;   // under queue_lock_
  bool runner_scheduled_ = false;  // under queue_lock_: a runner is posted or running
  std::atomic<bool> queue_lock_{false};
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

// What step_scope::begin found.
enum class step_entry {
  entered,   // the task's context is current: run the step
  finished,  // the task has finished: run the function where the thread is, entering nothing
  busy,      // the context is busy and this thread must not wait (more): queue the step
};

// Makes a task's context current for one step run by an executor (see the
// waiting rule in adapter.hpp, and "The gate" above).
class step_scope {
 public:
  step_scope() noexcept = default;
  step_scope(const step_scope&) = delete;
  step_scope& operator=(const step_scope&) = delete;
  ~step_scope() { end(); }

  // Makes b's context current, unless the task has finished (checked holding
  // the gate) or the context is busy and this thread must not wait for it: it
  // holds another context, or the context stayed busy through a short wait
  // (gave_way()). Only `entered` changes anything.
  step_entry begin(task_block* b) noexcept {
    context_impl* const c = b->ctx;
    thread_state& st = this_thread_state();
    if (st.current == c) return step_entry::entered;  // already current: a dispatch completing inline
    if (c->entered_by_this_thread()) {
      // Entered further down this thread's stack (a step of another task was
      // dispatched inline inside this one's, or c.run(...) with another context
      // made current inside it): switch back to it for the step. Nobody else is
      // inside c, so no step of this task can finish meanwhile elsewhere.
      mode_ = mode::switched;
    } else {
      step_entry e = try_enter_task(b, c);
      if (e == step_entry::busy) {
        if (holds_a_context(st)) return e;
        e = wait_to_enter(b, c);
        if (e == step_entry::busy) {
          gave_way_ = true;
          return e;
        }
      }
      if (e == step_entry::finished) return e;
      mode_ = mode::entered;
    }
    c_ = c;
    b_ = b;
#if CTXVARS_DEBUG_CHECKS
    if (mode_ == mode::entered) b->debug_entry.running(thread_id(st));
#endif
    r_ = switch_to(st, c);
    prev_ = innermost_step;
    innermost_step = this;
    return step_entry::entered;
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
      c_->leave();  // first leave c (the block holds a reference to it)...
      // ...then give the gate back. Never the last reference: the function
      // object running this step holds one.
      task_block::disown(b_);
    }
    mode_ = mode::none;
  }

  // begin() returned busy after waiting for the context in vain (see wait_to_enter).
  bool gave_way() const noexcept { return gave_way_; }

  // For a step whose context is current: gives the thread back what it had
  // for the duration of f() (which may replace the context's map: an Asio
  // generator's layer rebuilt over its consumer's context), then makes the
  // context current again, keeping it entered throughout. To the lookup cache
  // and to watchers this is a switch out and in, so they see what f changed.
  // Rethrows what f throws, after switching back in.
  template <class F>
  void outside(F&& f) {
    thread_state& st = this_thread_state();
    switch_back(st, c_, r_);
    struct back_in {
      step_scope* s;
      thread_state& st;
      ~back_in() { s->r_ = switch_to(st, s->c_); }
    } in{this, st};
    std::forward<F>(f)();
  }
  // The context this step made current (null if it switched nothing).
  context_impl* context() const noexcept { return mode_ == mode::none ? nullptr : c_; }

  // The task whose step this is (null once ended or if begin() switched nothing).
  task_block* block() const noexcept { return mode_ == mode::none ? nullptr : b_; }

 private:
  enum class mode { none, switched, entered };

  // Gate, then `finished`, then the context: entered leaves this thread
  // holding both; anything else leaves it holding neither.
  static step_entry try_enter_task(task_block* b, context_impl* c) noexcept {
    if (!b->try_own()) return step_entry::busy;
    step_entry e = step_entry::entered;
    if (b->finished.load(std::memory_order_relaxed))  // the gate's acquire ordered it
      e = step_entry::finished;
    else if (!c->try_enter())
      e = step_entry::busy;
    if (e != step_entry::entered) task_block::disown(b);  // never the last reference
    return e;
  }
  // A short wait, for a thread that holds no context. Bounded: the holder may
  // be a thread running the event loop inside c.run(...), which leaves c only
  // when the loop ends, i.e. after this step; busy: give way.
  CTXVARS_NOINLINE static step_entry wait_to_enter(task_block* b, context_impl* c) noexcept {
    for (unsigned spins = 0; spins < 64 + 256; ++spins) {
      if (spins >= 64) std::this_thread::yield();
      if (task_block::gate_taken(b->shared.load(std::memory_order_relaxed))) continue;
      const step_entry e = try_enter_task(b, c);
      if (e != step_entry::busy) return e;
    }
    return step_entry::busy;
  }

  context_impl* c_ = nullptr;
  task_block* b_ = nullptr;  // the step's task; its gate is held by this thread while entered
  switch_record r_{};
  step_scope* prev_ = nullptr;
  mode mode_ = mode::none;
  bool gave_way_ = false;
};

// Called by a task's last step once its body is done: no more task code runs.
// Marks the task finished, under its gate, so that no step that has not yet
// entered the context ever will; then leaves the context now, before Asio runs
// the completion handler. Only a step of this task ends here: a task whose
// context was already current (a child spawned in its parent's own context,
// finishing inline inside the parent's step) leaves that step to the parent,
// whose code goes on in it.
inline void finish_task(task_block* b) noexcept {
  context_impl* const c = b->ctx;
  thread_state& st = this_thread_state();
  if (b->owned_by_this_thread()) {
    b->finished.store(true, std::memory_order_release);  // the gate is ours: published when it opens
  } else if (st.current == c || c->entered_by_this_thread()) {
    // This thread holds c without the gate (a loop run inside c.run(...), a
    // step switched back into c): nobody else is inside c, so the gate is at
    // most taken for a moment by a thread about to find c busy. Take it, so
    // that a thread which read `finished` before does not enter c after.
    while (!b->try_own()) std::this_thread::yield();
    b->finished.store(true, std::memory_order_relaxed);
    task_block::disown(b);  // never the last reference: the caller holds one
  } else {
    // The last step ran outside the task's context (resumed through an
    // executor nothing follows): no gate to take without risking a wait.
    b->finished.store(true, std::memory_order_release);
  }
  step_scope* s = innermost_step;
  if (s && s->block() == b && st.current == c) s->end();
}

// The queue's runner (see "Order"), once its step_scope entered the task's
// context (or found the task finished): runs the head and the steps behind it
// submitted to an equal executor, in order; posts a runner through the next
// head's executor, if any. If a step throws, the queue is handed on first.
inline void run_pending(task_block* b, step_scope& s) {
  pending_step* h = b->pop();
  for (;;) {
    try {
      h->run();
    } catch (...) {
      delete h;
      if (pending_step* n = b->head_or_stop()) n->post_runner(b);
      throw;
    }
    // Finished inside h (its last step): the rest run outside its context.
    if (b->finished.load(std::memory_order_acquire)) s.end();
    pending_step* const n = b->head_or_stop();
    if (!n) {
      delete h;
      return;
    }
    const bool same = n->same_executor(*h);
    delete h;
    if (!same) {
      n->post_runner(b);
      return;
    }
    h = b->pop();  // n
  }
}

}  // namespace ctxvars::detail::asio_adapter
