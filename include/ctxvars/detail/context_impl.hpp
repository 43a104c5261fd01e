// The shared state behind a `context` handle, and each thread's current-context
// state with its lookup cache.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <utility>

#include "../config.hpp"
#include "context_map.hpp"
#include "thread_state.hpp"
#include "value_box.hpp"
#include "watch_hook.hpp"

namespace ctxvars::detail {

std::uint64_t next_context_id() noexcept;
[[noreturn]] void throw_context_in_use(bool by_this_thread);

class context_impl;

// A context whose writes go through a layer: a generator's (generator.hpp),
// whose reset of a variable it had not set before shows its consumer's
// current value again rather than the one the token saw. context_impl's
// assign and remove hand such a context's writes to `write`; every other
// context pays one predictable branch for the hook.
class context_layer {
 public:
  // Stands in for c.assign(var_id, *box, old, dropped) (box non-null) or
  // c.remove(var_id, old, dropped) (box null), with their contract (strong
  // guarantee; what the write displaced goes to `old`, what it dropped to
  // `dropped`, both released by the caller last); does the plain update with
  // c.assign_direct / c.remove_direct. May install another box than *box
  // (then *box is left as it was): callers that cache what they installed
  // read the map again when c.layer() is set (context_var::reset).
  virtual void write(context_impl& c, std::uint64_t var_id, box_ptr* box, box_ptr& old,
                     context_map::retired& dropped) = 0;

 protected:
  context_layer() noexcept = default;
  context_layer(const context_layer&) noexcept = default;
  context_layer& operator=(const context_layer&) noexcept = default;
  ~context_layer() = default;
};

// Concurrency. `map` is written only by the one thread that has the context
// entered (or, for a thread's base context, by that thread). Other threads read
// it through `snapshot()`, which takes the short `lock_` just long enough to
// retain the root; the writer holds `lock_` while it updates a context that
// others can reach (`shared`), so a reader never retains a root being changed
// in place or freed. A thread's base context is reachable from no handle, so
// its writer skips the lock.
//
// `state` packs the handle count (low 32 bits) and the number of threads
// inside (high bits, 0 or 1). One CAS enters, one fetch_sub leaves: the same
// atomic keeps the context alive while a thread runs in it.
// Cache-line aligned: the writer lock and the state word are written on every
// set and every enter, and must not share a line with another context's
// (two threads, each in its own context, would slow each other down).
class alignas(64) context_impl {
 public:
  static constexpr std::uint64_t one_ref = 1;
  static constexpr std::uint64_t one_entry = std::uint64_t{1} << 32;

  explicit context_impl(bool shared) noexcept : id(next_context_id()), shared_(shared) {}
  // A context holding map `m`, whose policy-bearing keys are (at most) `keys`:
  // a map taken from another context comes with that context's keys
  // (snapshot(), flow_keys()), or a fork would miss their policies.
  context_impl(bool shared, context_map m, flow_keys keys) noexcept
      : id(next_context_id()), map(std::move(m)), shared_(shared), flow_(std::move(keys)) {}

  const std::uint64_t id;
  context_map map;

  // Recycled through a per-thread free list (see thread_state).
  static void* operator new(std::size_t n);
  static void operator delete(void* p) noexcept;

  void retain() noexcept { state_.fetch_add(one_ref, std::memory_order_relaxed); }
  void release() noexcept {
    // The only handle, nobody inside: no one else can make a new reference
    // (they are made from existing ones), so skip the locked decrement.
    if (state_.load(std::memory_order_acquire) == one_ref ||
        state_.fetch_sub(one_ref, std::memory_order_acq_rel) == one_ref)
      delete this;
  }

  // Throws context_in_use_error if any thread (this one included) is inside.
  void enter() {
    if (!try_enter()) throw_context_in_use(entered_by_this_thread());
  }
  // false if some thread (this one included) is inside.
  bool try_enter() noexcept {
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    do {
      if (s >= one_entry) return false;
    } while (!state_.compare_exchange_weak(s, s + one_entry + one_ref, std::memory_order_acquire,
                                           std::memory_order_relaxed));
    owner_.store(this_thread_tag(), std::memory_order_relaxed);
    return true;
  }
  void leave() noexcept {
    owner_.store(0, std::memory_order_relaxed);
    if (state_.fetch_sub(one_entry + one_ref, std::memory_order_acq_rel) == one_entry + one_ref)
      delete this;
  }
  // True if the calling thread entered this context (and has not left it),
  // whether or not it is the current one right now.
  bool entered_by_this_thread() const noexcept {
    return owner_.load(std::memory_order_relaxed) == this_thread_tag();
  }
  // The calling thread's identity as owner_ records it: never reused, unlike
  // the address of its thread_state (see thread_state::thread_id).
  static std::uint64_t this_thread_tag() noexcept { return thread_id(this_thread_state()); }
  bool entered() const noexcept { return state_.load(std::memory_order_acquire) >= one_entry; }
  // The references that keep this context alive: its handles, plus one per thread
  // inside. For a collector outside the core that counts references itself (the
  // Python module's, python/gc.cpp; see layered_map::walk_references). Acquire.
  std::uint32_t references() const noexcept {
    return static_cast<std::uint32_t>(state_.load(std::memory_order_acquire) & (one_entry - 1));
  }

  // A consistent copy of the map, safe from any thread. O(1).
  context_map snapshot() const noexcept {
    if (!needs_lock()) return map;
    lock();
    context_map copy(map);
    unlock();
    return copy;
  }
  // The same with the ids of its policy-bearing entries (detail/flow.hpp).
  void snapshot(context_map& m, flow_keys& keys) const noexcept {
    const bool locked = needs_lock();
    if (locked) lock();
    m = map;
    keys = flow_;
    if (locked) unlock();
  }

  // Externally serialised contexts (the Python module's). Every thread that reads or
  // writes such a context holds one lock outside the core (Python's GIL) — except C++
  // code to which the context is lent with a write hook installed (before_write,
  // installed and removed under that lock by the thread that writes the context):
  // while no hook is installed its writer and readers skip the writer lock, which
  // then costs two relaxed loads instead of a locked exchange. Marked by its creator
  // before any other thread can reach it. A handle made for C++ code from an entered
  // context (context_access::make: watchers, executors) may travel to threads that
  // hold no such lock, so making one clears the mark for good.
  void set_externally_serialized() noexcept { ext_serialized_.store(true, std::memory_order_relaxed); }
  void clear_externally_serialized() noexcept { ext_serialized_.store(false, std::memory_order_relaxed); }
  // Whether readers and the writer take the writer lock now.
  bool needs_lock() const noexcept {
    // acquire: a hook removed by a writer that left without the outside lock (after
    // its last locked write) makes that write visible here.
    return shared_ &&
           (!ext_serialized_.load(std::memory_order_relaxed) || before_write.load(std::memory_order_acquire) != nullptr);
  }
  // The ids of the policy-bearing variables this context may hold (a
  // superset). Caller: the writer (the thread inside), or use snapshot().
  const flow_keys& policy_keys() const noexcept { return flow_; }

  // Calls f(map) and returns its result while no writer can change the map (the
  // writer lock, for a context that others can reach). For a foreign reader that walks
  // the map in place instead of retaining a snapshot: Python's garbage collector reads
  // reference counts as they are, while C++ may write the context on a thread without
  // the GIL. f must not write this context nor wait for anything its writer holds.
  // Cost: the walk, with this context's writer held off meanwhile.
  template <class F>
  int read_locked(F&& f) const {
    if (!needs_lock()) return f(map);
    lock();
    struct unlock_at_exit {
      const context_impl* c;
      ~unlock_at_exit() { c->unlock(); }
    } u{this};
    return f(map);
  }

  // Writer-side updates (caller: the thread running in this context).
  // Strong guarantee: on throw nothing changed and `box` was not consumed.
  // The displaced box goes to `old`; what the update dropped (trie nodes, and
  // after a fold the old layers with the values they alone kept) goes to
  // `dropped`. Both are the caller's: releasing them may run value
  // destructors (user code, which may get/set/reset anything), so the caller
  // destroys them only after its own state — the lookup cache, the token, the
  // watchers' notification — is final ("own first, publish, user code last").
  // A layered context (see context_layer) hands the write to its layer.
  void assign(std::uint64_t var_id, box_ptr&& box, box_ptr& old, context_map::retired& dropped) {
    run_write_hook();
    if (CTXVARS_UNLIKELY(layer_ != nullptr)) return layer_->write(*this, var_id, &box, old, dropped);
    assign_direct(var_id, std::move(box), old, dropped);
  }
  void remove(std::uint64_t var_id, box_ptr& old, context_map::retired& dropped) {
    run_write_hook();
    if (CTXVARS_UNLIKELY(layer_ != nullptr)) return layer_->write(*this, var_id, nullptr, old, dropped);
    remove_direct(var_id, old, dropped);
  }
  // The same, past the layer.
  void assign_direct(std::uint64_t var_id, box_ptr&& box, box_ptr& old, context_map::retired& dropped) {
    if (CTXVARS_UNLIKELY(box->bears_policy) && !flow_.contains(var_id))
      return assign_first_policy_value(var_id, std::move(box), old, dropped);
    writer_lock g(*this);
    map.assign(var_id, var_id, std::move(box), old, dropped);
    ++mods_;
  }
  void remove_direct(std::uint64_t var_id, box_ptr& old, context_map::retired& dropped) {
    writer_lock g(*this);
    if (map.remove(var_id, var_id, old, dropped)) ++mods_;
  }

  // A function run at the start of every set and reset of this context, before
  // anything changes, while one is installed (nullptr: none, the normal case; the cost
  // is one load and a never-taken branch). The Python module installs one for the
  // duration of a C++ call under calling_context: Python code the call runs may copy
  // the task's context, and the next C++ write must first give those copies a
  // snapshot. Installed and removed only by the thread that writes this context; the
  // hook may throw (the write then does not happen).
  using write_hook = void (*)(context_impl*);
  std::atomic<write_hook> before_write{nullptr};

  // Layers (generator.hpp). The layer must outlive its attachment.
  context_layer* layer() const noexcept { return layer_; }
  void set_layer(context_layer* l) noexcept { layer_ = l; }
  // Replaces the whole map (a generator's layer rebuilt over its consumer's
  // context); `m` gets the old one, for the caller to release later (its
  // values' destructors are user code). Counts as a modification, so no
  // thread reuses a lookup-cache version of the old map.
  // `keys` (if given) becomes the list of policy-bearing keys (see flow_).
  void replace_map(context_map& m, flow_keys* keys = nullptr) noexcept {
    writer_lock g(*this);
    std::swap(map, m);
    if (keys) flow_.swap(*keys);
    ++mods_;
  }
  // Sets and resets so far (with replace_map): with `id`, names a state of
  // this context's map. Read by the thread running in it.
  std::uint64_t modifications() const noexcept { return mods_; }

  // Lookup-cache bookkeeping (see thread_state): the version a thread used
  // while inside this context can be used again when it comes back, if no set
  // or reset happened here in between. Written and read only by the thread
  // inside, ordered by entering and leaving. The thread is named by its
  // never-reused id: a new thread at a dead one's TLS address restarts its
  // version counter, and must not be handed the dead thread's version.
  std::uint64_t version_for(const thread_state& st) const noexcept {
    return (cache_thread_ == st.thread_id && mods_ == mods_at_leave_) ? cache_version_ : 0;
  }
  void note_leaving(thread_state& st) noexcept {
    cache_thread_ = thread_id(st);
    cache_version_ = st.version;
    mods_at_leave_ = mods_;
  }

 private:
  CTXVARS_ALWAYS_INLINE void run_write_hook() {
    if (CTXVARS_UNLIKELY(before_write.load(std::memory_order_relaxed) != nullptr))
      before_write.load(std::memory_order_relaxed)(this);
  }
  void lock() const noexcept {
    while (lock_.exchange(true, std::memory_order_acquire))
      while (lock_.load(std::memory_order_relaxed)) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
  }
  void unlock() const noexcept { lock_.store(false, std::memory_order_release); }

  // The first value of a policy-bearing variable here: its id joins the
  // list (built before anything changes; O(k) with k ids), then the map.
  CTXVARS_NOINLINE void assign_first_policy_value(std::uint64_t var_id, box_ptr&& box, box_ptr& old,
                                                  context_map::retired& dropped) {
    flow_keys keys = flow_.with(var_id, [this](std::uint64_t k) { return map.find(k, k) != nullptr; });
    writer_lock g(*this);
    map.assign(var_id, var_id, std::move(box), old, dropped);
    flow_.swap(keys);  // the old list is released after the lock
    ++mods_;
  }

  struct writer_lock {
    const context_impl& c;
    const bool locked;
    explicit writer_lock(const context_impl& ci) noexcept : c(ci), locked(ci.needs_lock()) {
      if (locked) c.lock();
    }
    ~writer_lock() {
      if (locked) c.unlock();
    }
  };

  context_layer* layer_ = nullptr;  // see context_layer; null for every context but a generator's
  std::atomic<std::uint64_t> state_{one_ref};
  std::uint64_t cache_thread_ = 0;  // id of the last thread that left (0: none; see version_for)
  std::uint64_t cache_version_ = 0;
  std::uint64_t mods_ = 0;  // sets and resets so far
  std::uint64_t mods_at_leave_ = 0;
  std::atomic<std::uint64_t> owner_{0};  // thread_id of the thread inside, 0 if none
  mutable std::atomic<bool> lock_{false};
  const bool shared_;
  std::atomic<bool> ext_serialized_{false};  // see set_externally_serialized
  flow_keys flow_;  // written by the writer under lock_ (see policy_keys)
};

// A new context holding the variables of `c` (null: none), a plain snapshot.
// Caller: the thread that writes `c` (it is current there), so no lock. O(1).
inline context_impl* plain_copy_of(const context_impl* c, bool shared) {
  return c ? new context_impl(shared, c->map, c->policy_keys()) : new context_impl(shared);
}

// The context `set` writes to: the current one, creating the base context on
// first use. Throws std::bad_alloc, or std::logic_error during thread teardown
// once the base context was destroyed twice.
context_impl* writable_context();

inline cache_slot& slot_for(thread_state& st, std::uint64_t id) noexcept {
  return st.cache[id & (CTXVARS_CACHE_SIZE - 1)];
}

// What a switch of the current context replaced, to switch back.
struct switch_record {
  context_impl* prev;
  std::uint64_t prev_version;
};

// The watchers' side of switch_to, out of line so that the fast path keeps
// no values alive across a call (a tail call when watchers exist).
CTXVARS_NOINLINE inline switch_record notify_switched(switch_record r, context_impl* c) noexcept {
  notify_switch(r.prev, c);
  return r;
}

// Makes `c` current (the caller made sure this thread may be inside it).
// Watchers (watch.hpp) are told after the switch, on this thread.
// Cache: a version this thread used in `c` before is reused if `c` did not
// change since; otherwise a fresh one makes every slot miss.
CTXVARS_ALWAYS_INLINE switch_record switch_to(thread_state& st, context_impl* c) noexcept {
  switch_record r{st.current, st.version};
  st.current = c;
  const std::uint64_t v = c->version_for(st);
  st.version = v ? v : fresh_version(st);
  if (CTXVARS_UNLIKELY(watching())) return notify_switched(r, c);
  return r;
}
// Undoes switch_to. The previous context cannot have changed meanwhile: it is
// entered by this thread (or is its own base context), and sets only go to the
// current one — a set made by a nested switch back into it rewrote its own slot
// under another version. So the previous version is valid again.
CTXVARS_ALWAYS_INLINE void switch_back(thread_state& st, context_impl* c, const switch_record& r) noexcept {
  c->note_leaving(st);
  st.current = r.prev;
  st.version = r.prev_version;
  if (CTXVARS_UNLIKELY(watching())) return notify_switch(c, r.prev);
}

// Enters `c` (atomically: throws context_in_use_error, then nothing changed)
// and makes it the calling thread's current context.
CTXVARS_ALWAYS_INLINE switch_record enter_context(context_impl* c) {
  c->enter();
  return switch_to(this_thread_state(), c);
}
// Undoes enter_context(c) on the calling thread.
CTXVARS_ALWAYS_INLINE void leave_context(context_impl* c, const switch_record& r) noexcept {
  switch_back(this_thread_state(), c, r);
  c->leave();
}

// Makes `c` current for the lifetime of the scope. Throws context_in_use_error.
class enter_scope {
 public:
  CTXVARS_ALWAYS_INLINE explicit enter_scope(context_impl* c) : c_(c), r_(enter_context(c)) {}
  enter_scope(const enter_scope&) = delete;
  enter_scope& operator=(const enter_scope&) = delete;
  CTXVARS_ALWAYS_INLINE ~enter_scope() { leave_context(c_, r_); }

 private:
  context_impl* c_;
  switch_record r_;
};

}  // namespace ctxvars::detail
