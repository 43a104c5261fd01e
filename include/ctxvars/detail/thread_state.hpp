// Per-thread state of ctxvars: the current context, the lookup cache, and
// recycled value boxes.
#pragma once

#include <cstdint>

#include "../config.hpp"

namespace ctxvars::detail {

class context_impl;
struct box_base;

// ---------------------------------------------------------------------------
// Per-thread state. Constant-initialised and trivially destructible, so every
// access is a plain %fs-relative load (no guard, no wrapper call), and it stays
// readable during thread exit and static destruction.
//
// The cache maps a variable id to the address of its value in the current
// context (or nullptr: "not set here"). A slot is valid while its `version`
// equals the thread's: the version changes whenever `current` changes (run,
// exit, coroutine switch, thread teardown). `set` and `reset` rewrite only the
// slot of the variable they change — other variables' boxes are untouched.
// Ids are never reused, so a variable destroyed and re-created at the same
// address misses.
struct cache_slot {
  std::uint64_t id;
  std::uint64_t version;
  const void* value;
};

struct thread_state {
  context_impl* current;  // nullptr: the thread's base context, not yet created (empty)
  context_impl* base;     // owned; created on the first set
  std::uint64_t version;
  std::uint64_t next_version;  // source of fresh versions (never reused)
  bool torn_down;         // the thread's ctxvars state was destroyed at thread exit
  bool armed;             // the thread-exit cleanup is registered
  std::uint64_t next_context_id, end_context_id;  // a block of ids reserved by this thread
  cache_slot cache[CTXVARS_CACHE_SIZE];
  // One spare box shell per slot (no value inside, still owning a reference to
  // its variable's identity): the next set of that variable on this thread
  // reuses it, so a set+reset pair neither allocates nor touches the shared
  // reference count of the variable's identity.
  box_base* spare[CTXVARS_SPARE_BOXES];
  // Freed context_impl blocks kept for reuse (a singly linked list through
  // their first bytes), so copy_context/destroy pairs skip malloc.
  void* free_contexts;
  unsigned n_free_contexts;
  // Freed write-log layers kept for reuse (context_map.hpp), likewise.
  void* free_layers;
  unsigned n_free_layers;
};

extern constinit thread_local thread_state tls;


// A version number never used before on this thread.
inline std::uint64_t fresh_version(thread_state& st) noexcept { return ++st.next_version; }

// Registers this thread's exit cleanup (out of line, once per thread).
void arm_thread_exit() noexcept;

}  // namespace ctxvars::detail
