// Debug checks (docs/beyond-python.md, "Debug checks"): compiled in with the
// CMake option CTXVARS_DEBUG_CHECKS (the macro of the same name, config.hpp);
// without it every function here is an inexpensive no-op, so code that calls
// them builds either way.
//
//   - Leaks: a set() into a thread's own base context from inside a
//     ctxvars::thread_pool job or an Asio handler (io_context::run, an Asio
//     thread_pool...) is reported once per call site with the variable's name
//     and file:line — the shape of a task spawned with plain asio::co_spawn by
//     mistake. set_leak_handler() replaces the report (default: one line on
//     stderr). job_scope marks a job of your own event loop.
//   - Provenance: the context printers (<ctxvars/format.hpp>) follow each value
//     with `name.set_at=file:line`.
//   - Suspended tasks: dump_tasks(os) writes every live task (ctxvars::asio /
//     boost_asio co_spawn; see the registry in detail/debug_checks.hpp) with
//     its id, what it is doing and its context, for a hung server.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "config.hpp"
#include "detail/debug_checks.hpp"
#include "format.hpp"

namespace ctxvars::debug {

// Whether the checks are compiled in.
inline constexpr bool enabled = CTXVARS_DEBUG_CHECKS != 0;

#if CTXVARS_DEBUG_CHECKS

// Replaces the leak handler (null: the default stderr line); returns the
// previous one (null for the default). Thread-safe. The handler runs on the
// thread that set, inside set(), at most once per call site; it must not throw
// (what it throws is dropped) and may not set variables of its own.
inline leak_handler set_leak_handler(leak_handler h) noexcept {
  return ctxvars::detail::debug::leak_handler.exchange(h, std::memory_order_acq_rel);
}

// Marks the calling thread as running a job of your own loop (`kind`, a string
// literal, names it in reports) for the scope's lifetime.
using job_scope = ctxvars::detail::debug::job_scope;

}  // namespace ctxvars::debug

namespace ctxvars::detail::debug {
struct task_access {
  struct row {
    std::uint64_t id;
    const char* kind;
    bool started;
    std::uint64_t thread;
    const char* waits;
    context_map values;
  };
  static std::vector<row> rows() {
    std::vector<row> out;
    task_list& l = tasks();
    std::lock_guard<std::mutex> lk(l.m);
    for (task_entry* e = l.head; e; e = e->next_)
      out.push_back({e->id_, e->kind_, e->started_.load(std::memory_order_relaxed),
                     e->thread_.load(std::memory_order_relaxed),
                     e->waits_.load(std::memory_order_relaxed), e->ctx_->snapshot()});
    return out;
  }
};
}  // namespace ctxvars::detail::debug

namespace ctxvars::debug {

// Writes one line per live task, oldest first:
//   task 3 (Asio co_spawn) suspended: request_id=r7 request_id.set_at=/src/server.cpp:42
// "not started", "suspended" or "running on thread N" (ctxvars' thread
// number; a step dispatched inline inside another task's step is not
// counted), then the
// task's context as the context printers write it. Safe to call from any
// thread while the tasks run (each context is read as a snapshot); the
// values are formatted after the registry's lock is released, so a
// formatter may spawn tasks. Allocates; throws what a formatter throws.
inline void dump_tasks(std::ostream& os) {
  std::vector<ctxvars::detail::debug::task_access::row> rows = ctxvars::detail::debug::task_access::rows();
  std::string line;
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
    line = "task ";
    line += std::to_string(it->id);
    line += " (";
    line += it->kind;
    line += ") ";
    if (!it->started) {
      line += "not started";
    } else if (it->thread) {
      line += "running on thread ";
      line += std::to_string(it->thread);
    } else {
      line += "suspended";
      if (it->waits) {
        line += " at ";
        line += it->waits;
      }
    }
    line += ':';
    if (it->values.size()) line += ' ';
    ctxvars::detail::append_map(line, it->values, false);
    line += '\n';
    os << line;
  }
}

#else  // checks off: the same names, doing nothing

inline leak_handler set_leak_handler(leak_handler) noexcept { return nullptr; }
class job_scope {
 public:
  explicit job_scope(const char*) noexcept {}
  job_scope(const job_scope&) = delete;
  job_scope& operator=(const job_scope&) = delete;
};
inline void dump_tasks(std::ostream& os) {
  os << "ctxvars: no task registry (built without CTXVARS_DEBUG_CHECKS)\n";
}

#endif

}  // namespace ctxvars::debug
