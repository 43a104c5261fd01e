// Debug checks (CTXVARS_DEBUG_CHECKS, see config.hpp): the machinery behind
// <ctxvars/debug.hpp>. Without the checks only the report's type is declared.
//
// Why: the leaks seen in practice all have one shape — a set() that lands in a
// thread's own base context while the thread runs a job that is not its own
// (an event-loop handler, a pool job, a coroutine resumed outside its task's
// context, a task spawned with plain asio::co_spawn by mistake). The next job
// on that thread then inherits the value. set() asks here whether it is such a
// set, and reports it once per call site.
//
// Structure:
//   - job markers: `job_kind` names the kind of job this thread runs now
//     (ctxvars::thread_pool sets it around each job; job_scope lets any loop
//     do the same); `loop probes` are functions an adapter registers that tell
//     whether the thread is inside its event loop (the Asio faces register
//     one that reads Asio's per-thread call stack).
//   - the leak handler: a replaceable function pointer; the default prints one
//     line to stderr. Call sites already reported are kept in a set.
//   - the task registry: every live task (Asio co_spawn, task<T> spawn) links
//     a task_entry into one list, which dump_tasks() walks.
//
// Costs (checks on only): set() stores its location in the value's box and,
// only when it writes the thread's base context, reads job_kind and calls the
// registered probes (a thread_local read each). Reporting takes a mutex and
// allocates (once per call site; a repeat on the same thread skips the lock).
// A task entry takes a mutex at the task's creation and destruction, and
// makes the task's context a locked one (see task.hpp).
// Thread safety: everything here may be called from any thread.
#pragma once

#include <string_view>

#include "../config.hpp"
#include "source_location.hpp"

namespace ctxvars {
namespace detail {
class context_impl;
}
namespace debug {

// What a leak report says: the variable, where it was set, and inside what.
struct leak_report {
  std::string_view variable;  // the variable's name
  source_location where;      // the set() call
  std::string_view inside;    // "thread_pool job", "Asio handler", ...
};
using leak_handler = void (*)(const leak_report&);

}  // namespace debug

}  // namespace ctxvars

#if CTXVARS_DEBUG_CHECKS

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <tuple>

#include "context_impl.hpp"
#include "thread_state.hpp"

namespace ctxvars {

namespace detail::debug {

// The kind of job this thread runs now (null: none known).
inline constinit thread_local const char* job_kind = nullptr;

// Marks the current thread as running a job of `kind` for its lifetime.
class job_scope {
 public:
  explicit job_scope(const char* kind) noexcept : prev_(job_kind) { job_kind = kind; }
  ~job_scope() { job_kind = prev_; }
  job_scope(const job_scope&) = delete;
  job_scope& operator=(const job_scope&) = delete;

 private:
  const char* prev_;
};

using loop_probe = bool (*)() noexcept;
struct probe_slot {
  std::atomic<loop_probe> probe{nullptr};
  std::atomic<const char*> kind{nullptr};
};
inline constexpr int max_probes = 8;
inline probe_slot probes[max_probes];

// Registers `probe` (idempotent); returns true. Called during static
// initialisation by the adapters' headers.
inline bool register_loop_probe(loop_probe probe, const char* kind) noexcept {
  for (probe_slot& s : probes) {
    loop_probe cur = s.probe.load(std::memory_order_acquire);
    if (cur == probe) return true;
    if (!cur) {
      s.kind.store(kind, std::memory_order_relaxed);
      if (s.probe.compare_exchange_strong(cur, probe, std::memory_order_acq_rel)) return true;
      if (cur == probe) return true;
    }
  }
  return true;  // more than max_probes adapters: the rest go unchecked
}

// The kind of foreign job the thread runs now, or null.
inline const char* running_job() noexcept {
  if (job_kind) return job_kind;
  for (probe_slot& s : probes) {
    loop_probe p = s.probe.load(std::memory_order_acquire);
    if (!p) break;
    if (p()) return s.kind.load(std::memory_order_relaxed);
  }
  return nullptr;
}

inline void default_leak_handler(const ctxvars::debug::leak_report& r) {
  std::fprintf(stderr,
               "ctxvars: set of '%.*s' at %s:%u leaks into this thread's own context inside a %.*s "
               "(every later job on the thread sees it): run the work in its own context "
               "(ctxvars::bind, ctxvars::asio::co_spawn, context::run)\n",
               static_cast<int>(r.variable.size()), r.variable.data(), r.where.file_name(),
               static_cast<unsigned>(r.where.line()), static_cast<int>(r.inside.size()), r.inside.data());
}

inline std::atomic<ctxvars::debug::leak_handler> leak_handler{nullptr};

struct reported_sites {
  std::mutex m;
  std::set<std::tuple<std::string, std::uint_least32_t, std::uint_least32_t>> seen;
};
inline reported_sites& sites() {
  static reported_sites* s = new reported_sites;  // leaked: a set may come during static destruction
  return *s;
}

// Reports a leak once per call site. Never throws (a report that cannot be
// made is dropped).
CTXVARS_NOINLINE inline void report_leak(std::string_view variable, const ctxvars::debug::source_location& where,
                                         const char* inside) noexcept {
  // This thread reported this site last time: skip the lock (a leak in a
  // loop would otherwise take the mutex at every set).
  thread_local const char* last_file = nullptr;
  thread_local std::uint_least32_t last_line = 0, last_column = 0;
  if (last_file == where.file_name() && last_line == where.line() && last_column == where.column()) return;
  last_file = where.file_name();
  last_line = where.line();
  last_column = where.column();
  try {
    {
      reported_sites& s = sites();
      std::lock_guard<std::mutex> lk(s.m);
      if (!s.seen.emplace(where.file_name(), where.line(), where.column()).second) return;
    }
    ctxvars::debug::leak_handler h = leak_handler.load(std::memory_order_acquire);
    (h ? h : &default_leak_handler)({variable, where, inside});
  } catch (...) {
  }
}

// Called by set() with the context it writes and whether that is the thread's
// base context.
inline void check_set(std::string_view variable, bool into_base, const ctxvars::debug::source_location& where) noexcept {
  if (!into_base) return;
  if (const char* kind = running_job()) report_leak(variable, where, kind);
}

// ---- the task registry ------------------------------------------------------------

class task_entry;
struct task_list {
  std::mutex m;
  task_entry* head = nullptr;
  std::uint64_t next_id = 1;
};
inline task_list& tasks() {
  static task_list* l = new task_list;  // leaked: tasks may die during static destruction
  return *l;
}

// One live task, linked into tasks() for its lifetime.
class task_entry {
 public:
  // Keeps its own reference to ctx, dropped after the entry is unlinked.
  task_entry(context_impl* ctx, const char* kind) noexcept : ctx_(ctx), kind_(kind) {
    ctx->retain();
    task_list& l = tasks();
    std::lock_guard<std::mutex> lk(l.m);
    id_ = l.next_id++;
    next_ = l.head;
    if (next_) next_->prev_ = this;
    l.head = this;
  }
  ~task_entry() {
    {
      task_list& l = tasks();
      std::lock_guard<std::mutex> lk(l.m);
      if (prev_)
        prev_->next_ = next_;
      else
        l.head = next_;
      if (next_) next_->prev_ = prev_;
    }
    ctx_->release();  // may destroy values: user code, outside the lock
  }
  task_entry(const task_entry&) = delete;
  task_entry& operator=(const task_entry&) = delete;

  // Called around each step (running on this thread) and at each suspension.
  void running(std::uint64_t thread) noexcept {
    started_.store(true, std::memory_order_relaxed);
    thread_.store(thread, std::memory_order_relaxed);
  }
  void suspended(const char* where) noexcept {
    waits_.store(where, std::memory_order_relaxed);
    thread_.store(0, std::memory_order_relaxed);
  }

 private:
  friend struct task_access;
  context_impl* ctx_;
  const char* kind_;
  std::uint64_t id_ = 0;
  std::atomic<bool> started_{false};          // a step has run
  std::atomic<std::uint64_t> thread_{0};      // the thread running a step, 0 if suspended
  std::atomic<const char*> waits_{nullptr};   // what it waits on, when known
  task_entry* prev_ = nullptr;
  task_entry* next_ = nullptr;
};

struct task_access;

}  // namespace detail::debug
}  // namespace ctxvars

#endif  // CTXVARS_DEBUG_CHECKS
