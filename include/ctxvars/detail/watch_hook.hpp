// The core's side of watchers (<ctxvars/watch.hpp>): one process-wide word
// telling which kinds of watcher exist, tested on the hot paths, and the
// out-of-line notifications called when it is not zero.
//
// Cost with no watcher: one load of a word that only watch()/unwatch() write
// (it stays in every core's cache, shared) and a never-taken branch, in
// switch_to/switch_back and in set/reset. benchmarks/watch_bench.cpp measures
// it against the same switch without the test, in the same run.
#pragma once

#include <atomic>
#include <cstdint>

#include "../config.hpp"

namespace ctxvars::detail {

class context_impl;
struct box_base;

inline constexpr unsigned watching_switches = 1;  // on_context_switch() watchers exist
inline constexpr unsigned watching_values = 2;    // watch(var, f) watchers exist

extern std::atomic<unsigned> watch_flags;

CTXVARS_ALWAYS_INLINE unsigned watching() noexcept { return watch_flags.load(std::memory_order_relaxed); }

// The calling thread's current context changed from `from` to `to` (nullptr:
// the thread's base context before its first set, empty). Called after the
// switch, on that thread.
void notify_switch(context_impl* from, context_impl* to) noexcept;
// A set or reset on the calling thread changed variable `var_id` in its
// current context from `before` to `after` (nullptr: no value).
void notify_value(std::uint64_t var_id, box_base* before, box_base* after) noexcept;

}  // namespace ctxvars::detail
