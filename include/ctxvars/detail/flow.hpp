// The engine of flow policies (<ctxvars/flow.hpp>): the type-erased policy a
// variable's identity owns, and the short list of policy-bearing keys each
// context keeps beside its map.
//
// Why a side list. fork_context() must find the entries whose variable bears a
// policy without walking the whole map (a server context may hold thousands of
// plain entries and a couple of policy-bearing ones). A context keeps the ids
// of the policy-bearing variables it may hold in an immutable, shared array
// (`flow_keys`): copied with the map in O(1) (one reference; none when empty,
// the common case), extended by the first set of such a variable in a context
// (O(k), k = ids in the list), read by a fork in O(k).
//
// The list is a superset: a reset that removes the value, or an isolating
// fork, leaves the id behind (a fork looks each id up and skips the absent
// ones). It is compacted whenever it grows: ids absent from the map are dropped
// then, so it never holds more than (keys present + 1).
//
// Thread safety: a list is immutable once built; handles are copied and
// released from any thread (atomic count, ordered as for value boxes). Which
// list a context holds is written under the same lock as its map
// (context_impl), so a snapshot sees a map and its list together.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <thread>
#include <utility>

#include "../config.hpp"

namespace ctxvars::detail {

struct box_base;
class box_ptr;

// What a variable does when new work forks its context: isolate (the child
// holds no value) or map the value with the user's f (on_fork). Inheriting
// variables have no policy object at all. Owned by the variable's identity
// (var_info), so a context holding a value of a destroyed variable can still
// read the policy.
//
// Lifetime of f: f is called only while its variable is alive. The variable's
// destructor calls retire(): later forks inherit that variable's values as
// they are, and the destructor waits for calls of f in progress on other
// threads (a call on its own thread — f destroying its own variable — is not
// waited for). So f may safely use what it captured by reference from an
// object that owns the variable.
class flow_policy {
 public:
  explicit flow_policy(bool isolates) noexcept : isolates_(isolates) {}
  flow_policy(const flow_policy&) = delete;
  flow_policy& operator=(const flow_policy&) = delete;
  virtual ~flow_policy() = default;

  bool isolates() const noexcept { return isolates_; }

  // on_fork: sets `out` to a new box holding f(value of b) and returns true;
  // returns false (out untouched) if the variable was destroyed. Throws what
  // f, T's constructor or the allocation throw. Called with the parent's
  // context current.
  bool fork(const box_base* b, box_ptr& out) const {
    if (!(calls_.fetch_add(1, std::memory_order_acquire) & alive)) {
      calls_.fetch_sub(1, std::memory_order_release);
      return false;
    }
    call_frame frame{this, frames};
    frames = &frame;
    struct finish {
      const flow_policy* p;
      call_frame* f;
      ~finish() {
        frames = f->prev;
        p->calls_.fetch_sub(1, std::memory_order_release);
      }
    } done{this, &frame};
    make_child(b, out);
    return true;
  }

  // The variable dies: no call of f starts after this returns, and none is in
  // progress on another thread. Memory ordering: the release of each call's
  // decrement pairs with the acquire load here, so what f did happens before
  // the variable's destruction continues.
  void retire() noexcept {
    calls_.fetch_and(~alive, std::memory_order_acq_rel);
    std::uint32_t mine = 0;
    for (const call_frame* f = frames; f; f = f->prev)
      if (f->policy == this) ++mine;
    while ((calls_.load(std::memory_order_acquire) & ~alive) > mine) std::this_thread::yield();
  }

 protected:
  virtual void make_child(const box_base* b, box_ptr& out) const = 0;

 private:
  static constexpr std::uint32_t alive = std::uint32_t{1} << 31;
  struct call_frame {
    const flow_policy* policy;
    call_frame* prev;
  };
  // The calls of f running on this thread, innermost first (f may fork again).
  static inline constinit thread_local call_frame* frames = nullptr;

  const bool isolates_;
  mutable std::atomic<std::uint32_t> calls_{alive};  // alive bit | calls of f in progress
};

// An immutable, shared array of variable ids (see the top of this file). A
// null handle is the empty list.
class flow_keys {
 public:
  flow_keys() noexcept = default;
  flow_keys(const flow_keys& o) noexcept : r_(o.r_) {
    if (r_) r_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  flow_keys(flow_keys&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  flow_keys& operator=(flow_keys o) noexcept {
    swap(o);
    return *this;
  }
  ~flow_keys() { release(r_); }
  void swap(flow_keys& o) noexcept { std::swap(r_, o.r_); }

  explicit operator bool() const noexcept { return r_ != nullptr; }
  std::size_t size() const noexcept { return r_ ? r_->n : 0; }
  const std::uint64_t* begin() const noexcept { return r_ ? r_->ids() : nullptr; }
  const std::uint64_t* end() const noexcept { return r_ ? r_->ids() + r_->n : nullptr; }
  bool contains(std::uint64_t id) const noexcept {
    for (const std::uint64_t k : *this)
      if (k == id) return true;
    return false;
  }

  // A new list: the ids of this one for which present(id) holds, plus `id`.
  // O(size()); allocates (std::bad_alloc: nothing changed).
  template <class Present>
  flow_keys with(std::uint64_t id, Present&& present) const {
    std::uint32_t n = 1;
    for (const std::uint64_t k : *this)
      if (k != id && present(k)) ++n;
    rep* r = static_cast<rep*>(::operator new(sizeof(rep) + n * sizeof(std::uint64_t)));
    ::new (static_cast<void*>(r)) rep;
    std::uint64_t* out = r->ids();
    for (const std::uint64_t k : *this)
      if (k != id && present(k)) *out++ = k;
    *out = id;
    r->n = n;
    flow_keys result;
    result.r_ = r;
    return result;
  }

 private:
  struct rep {
    std::atomic<std::uint32_t> refs{1};
    std::uint32_t n = 0;
    // n ids follow in the same allocation
    std::uint64_t* ids() noexcept { return reinterpret_cast<std::uint64_t*>(this + 1); }
    const std::uint64_t* ids() const noexcept { return reinterpret_cast<const std::uint64_t*>(this + 1); }
  };
  static_assert(sizeof(rep) % alignof(std::uint64_t) == 0);
  static void release(rep* r) noexcept {
    if (r && (r->refs.load(std::memory_order_acquire) == 1 || r->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)) {
      r->~rep();
      ::operator delete(r);
    }
  }
  rep* r_ = nullptr;
};

}  // namespace ctxvars::detail
