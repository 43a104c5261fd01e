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

}  // namespace ctxvars::detail::asio_adapter
