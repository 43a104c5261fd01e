// Variable identities and the type-erased value boxes a context stores.
//
// A context maps a variable's id (a 64-bit number never reused, so a variable
// re-created at the same address is never mistaken for the old one) to a box
// holding the value. Each box also keeps the variable's `var_info` alive, so a
// context can still name an entry after its variable is destroyed.
#pragma once

#include "../config.hpp"
#if CTXVARS_DEBUG_CHECKS
#include "source_location.hpp"
#endif

#include <atomic>
#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "../config.hpp"
#include "flow.hpp"
#include "thread_state.hpp"

namespace ctxvars::detail {

std::uint64_t next_var_id() noexcept;
struct var_info;
// The registry of live identities, by id: only error messages read it (to
// name the variable of a foreign token, which may have been destroyed).
// Registering allocates (std::bad_alloc); both take a global mutex, once per
// variable created and destroyed, never on get/set/reset.
void register_var(var_info* info);
void unregister_var(std::uint64_t id) noexcept;

// A variable's identity: name, id and value type. Owned by the variable and
// by every box holding one of its values.
struct var_info {
  std::atomic<std::uint32_t> refs{1};
  std::uint64_t id;
  std::string name;
  const std::type_info* type;
  // Appends a value of this variable as text, or null when none is known. `p`
  // is a `const T*`, or with `p_is_box` the `const box_base*` holding the value.
  // The one observability hook of the core: set by context_var's constructor
  // (detail/text.hpp), changed by ctxvars::set_formatter (format.hpp), read
  // when a context is printed.
  std::atomic<void (*)(const void* p, bool p_is_box, std::string& out)> format{nullptr};
  // The variable's flow policy (flow.hpp), owned; null: inherit. Set by
  // context_var's constructor before any box of the variable exists.
  flow_policy* flow = nullptr;

  var_info(std::string n, const std::type_info& t) : id(next_var_id()), name(std::move(n)), type(&t) {
    register_var(this);
  }
  var_info(const var_info&) = delete;
  var_info& operator=(const var_info&) = delete;
  ~var_info() {
    delete flow;
    unregister_var(id);
  }

  void retain() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs.load(std::memory_order_acquire) == 1 ||
        refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
      delete this;
  }
};

// A box is a shell (refcount, identity, type-specific hooks) around one value.
// When its last reference goes, the value is destroyed and the shell parked in
// the releasing thread's spare slot for that variable, or freed.
struct box_base {
  std::atomic<std::uint32_t> refs{1};
  bool bears_policy = false;  // info->flow != null, read by context_impl::assign (fills padding)
  void (*destroy_value)(box_base*) noexcept;
  void (*free_shell)(box_base*) noexcept;  // also releases the identity
  var_info* info;
#if CTXVARS_DEBUG_CHECKS
  ctxvars::debug::source_location where{};  // the set() that made this value (empty: not made by set)
#endif
};

inline box_base*& spare_slot(thread_state& st, std::uint64_t id) noexcept {
  return st.spare[id & (CTXVARS_SPARE_BOXES - 1)];
}

// Parks an empty shell in this thread's spare slot for its variable (the
// newest shell wins the slot: the variable being set and reset now), or frees
// it during thread teardown. Freeing an evicted shell runs no user code.
inline void park_shell(thread_state& st, box_base* b) noexcept {
  if (CTXVARS_UNLIKELY(st.torn_down)) return b->free_shell(b);
  box_base*& slot = spare_slot(st, b->info->id);
  if (CTXVARS_UNLIKELY(!st.armed)) arm_thread_exit();
  if (box_base* evicted = std::exchange(slot, b)) evicted->free_shell(evicted);
}

// Last reference gone: destroy the value, keep or free the shell. The value's
// destructor is user code and may set variables, dispose of other boxes or
// fill this very slot: the shell is parked only after it returned.
inline void dispose_box(box_base* b) noexcept {
  b->destroy_value(b);
  park_shell(this_thread_state(), b);
}

// What a box holds: T itself, or a std::optional<T> (always engaged) for a T
// whose copy may throw or does not exist (move-only types, std::string,
// containers — std::vector<std::unique_ptr<X>> claims a copy constructor that
// does not compile). A token hands out the old value as the
// `const std::optional<T>&` its interface promises: a copy it keeps for a T
// with a nothrow copy (ints, pointers, small structs), otherwise the old box's
// optional itself, keeping the box alive — so set never copies such a T.
template <class T>
inline constexpr bool boxed_as_optional = !std::is_nothrow_copy_constructible_v<T>;
template <class T>
using boxed_t = std::conditional_t<boxed_as_optional<T>, std::optional<T>, T>;

template <class T>
struct typed_box final : box_base {
  using stored = boxed_t<T>;
  alignas(stored) unsigned char storage[sizeof(stored)];

  stored* held() noexcept { return std::launder(reinterpret_cast<stored*>(storage)); }
  const stored* held() const noexcept { return std::launder(reinterpret_cast<const stored*>(storage)); }
  T* value() noexcept {
    if constexpr (boxed_as_optional<T>)
      return &**held();
    else
      return held();
  }
  const T* value() const noexcept {
    if constexpr (boxed_as_optional<T>)
      return &**held();
    else
      return held();
  }
  template <class... A>
  void construct(A&&... a) {
    if constexpr (boxed_as_optional<T>)
      ::new (static_cast<void*>(storage)) stored(std::in_place, std::forward<A>(a)...);
    else
      ::new (static_cast<void*>(storage)) stored(std::forward<A>(a)...);
  }

  // Over-aligned T (alignas(64) and up): the aligned forms of operator new and
  // delete; plain `::operator new(size)` only guarantees 16 bytes.
  static constexpr bool over_aligned = alignof(typed_box) > __STDCPP_DEFAULT_NEW_ALIGNMENT__;
  static void* allocate() {
    if constexpr (over_aligned)
      return ::operator new(sizeof(typed_box), std::align_val_t{alignof(typed_box)});
    else
      return ::operator new(sizeof(typed_box));
  }
  static void deallocate(void* p) noexcept {
    if constexpr (over_aligned)
      ::operator delete(p, std::align_val_t{alignof(typed_box)});
    else
      ::operator delete(p);
  }

  static void destroy_value_of(box_base* b) noexcept { static_cast<typed_box*>(b)->held()->~stored(); }
  static void free_shell_of(box_base* b) noexcept {
    var_info* i = b->info;
    typed_box* self = static_cast<typed_box*>(b);
    self->~typed_box();
    deallocate(self);
    i->release();
  }
};

// Intrusive, nothrow-copyable handle to a box (what the trie stores).
class box_ptr {
 public:
  box_ptr() noexcept = default;
  explicit box_ptr(box_base* p) noexcept : p_(p) {}  // adopts one reference
  box_ptr(const box_ptr& o) noexcept : p_(o.p_) {
    if (p_) p_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  box_ptr(box_ptr&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  box_ptr& operator=(box_ptr&& o) noexcept {
    box_base* prev = std::exchange(p_, std::exchange(o.p_, nullptr));
    if (prev) release(prev);
    return *this;
  }
  box_ptr& operator=(const box_ptr& o) noexcept {
    if (o.p_) o.p_->refs.fetch_add(1, std::memory_order_relaxed);
    box_base* prev = std::exchange(p_, o.p_);
    if (prev) release(prev);
    return *this;
  }
  ~box_ptr() {
    if (p_) release(p_);
  }
  box_base* get() const noexcept { return p_; }
  box_base* operator->() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  static void release(box_base* b) noexcept {
    if (b->refs.load(std::memory_order_acquire) == 1 || b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
      dispose_box(b);
  }
  box_base* p_ = nullptr;
};

// A box holding T(a...) for `info`'s variable: this thread's spare shell for
// it if there is one, else a new allocation. Throws what operator new or T's
// constructor throws; then nothing changed.
//
// T's constructor is user code: it may set variables or dispose of boxes,
// which parks shells in (and evicts them from) the spare slots. So a parked
// shell is taken out of its slot before the constructor runs; if the
// constructor throws, the shell is parked again like any other.
template <class T, class... A>
box_ptr make_box(var_info* info, A&&... a) {
  using box = typed_box<T>;
  thread_state& st = this_thread_state();
  box_base*& slot = spare_slot(st, info->id);
  box* b;
  if (slot && slot->info == info) {
    b = static_cast<box*>(std::exchange(slot, nullptr));
    try {
      b->construct(std::forward<A>(a)...);
    } catch (...) {
      park_shell(st, b);
      throw;
    }
    b->refs.store(1, std::memory_order_relaxed);
#if CTXVARS_DEBUG_CHECKS
    b->where = {};  // the shell's last value was set elsewhere
#endif
  } else {
    void* mem = box::allocate();
    b = ::new (mem) box;
    try {
      b->construct(std::forward<A>(a)...);
    } catch (...) {
      b->~box();
      box::deallocate(mem);
      throw;
    }
    b->destroy_value = &box::destroy_value_of;
    b->free_shell = &box::free_shell_of;
    b->info = info;
    b->bears_policy = info->flow != nullptr;
    info->retain();
  }
  return box_ptr(b);
}

template <class T>
const T& box_value(const box_base* b) noexcept {
  return *static_cast<const typed_box<T>*>(b)->value();
}
// What such a T's token returns when there was no old value.
template <class T>
inline constinit const std::optional<T> no_old_value{};
// The engaged optional a box of a T without a copy constructor holds.
template <class T>
  requires boxed_as_optional<T>
const std::optional<T>& box_optional(const box_base* b) noexcept {
  return *static_cast<const typed_box<T>*>(b)->held();
}

// Frees this thread's spare shell of variable `info`, if parked (called when
// the variable dies, so its identity need not wait for thread exit).
inline void drop_spare(var_info* info) noexcept {
  thread_state& st = this_thread_state();
  box_base*& slot = spare_slot(st, info->id);
  if (slot && slot->info == info) {
    box_base* b = slot;
    slot = nullptr;
    b->free_shell(b);
  }
}

}  // namespace ctxvars::detail
