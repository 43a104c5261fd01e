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
  // This thread's identity for everything that must tell threads apart (the
  // owner of an entered context, the last thread that left one): a number from
  // a process-wide counter, taken the first time it is needed, never reused.
  // Not the address of this struct: glibc gives a new thread the TLS block of
  // a thread that exited, and with it that address. 0: not taken yet.
  std::uint64_t thread_id;
  context_impl* current;  // nullptr: the thread's base context, not yet created (empty)
  context_impl* base;     // owned; created on the first set
  std::uint64_t version;
  std::uint64_t next_version;  // source of fresh versions (never reused)
  bool torn_down;         // the thread's ctxvars state was destroyed at thread exit
  bool armed;             // the thread-exit cleanup is registered
  bool in_watcher;        // a watcher callback runs on this thread (watch.hpp): no nested notifications
  bool watch_cache_gone;  // this thread's cached watcher list was destroyed (thread exit)
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

// The calling thread's state. Everything in ctxvars reaches `tls` through
// this function, never by naming it.
//
// Why: under -fsanitize=undefined (null checks) g++ 12 tests `&tls` for null
// by reusing the flags of the `add tls@gottpoff(%rip), %reg` that computes
// the address; when an executable is linked, GNU ld 2.40 relaxes that add to
// a `lea`, which sets no flags, so the test reads stale flags and reports
// "member access within null pointer of type 'thread_state'" at random. The
// empty asm hides where the pointer came from: the compiler must test the
// register itself. Outside sanitizers it costs at most one instruction (the
// address is formed in a register instead of folded into each %fs access).
CTXVARS_ALWAYS_INLINE thread_state& this_thread_state() noexcept {
#if defined(__GNUC__) && !defined(__clang__)
  thread_state* p = &tls;
  __asm__("" : "+r"(p));
  return *p;
#else
  return tls;
#endif
}


std::uint64_t new_thread_id() noexcept;

// The thread's never-reused identity (see thread_state::thread_id).
inline std::uint64_t thread_id(thread_state& st) noexcept {
  if (CTXVARS_UNLIKELY(st.thread_id == 0)) st.thread_id = new_thread_id();
  return st.thread_id;
}

// A version number never used before on this thread.
inline std::uint64_t fresh_version(thread_state& st) noexcept { return ++st.next_version; }

// Registers this thread's exit cleanup (out of line, once per thread).
void arm_thread_exit() noexcept;

}  // namespace ctxvars::detail
