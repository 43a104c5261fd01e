// Variable identities and the type-erased value boxes a context stores.
//
// A context maps a variable's id (a 64-bit number never reused, so a variable
// re-created at the same address is never mistaken for the old one) to a box
// holding the value. Each box also keeps the variable's `var_info` alive, so a
// context can still name an entry after its variable is destroyed.
#pragma once

#include <atomic>
#include <cstdint>
#include <new>
#include <string>
#include <typeinfo>
#include <utility>

#include "../config.hpp"
#include "thread_state.hpp"

namespace ctxvars::detail {

std::uint64_t next_var_id() noexcept;

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

  var_info(std::string n, const std::type_info& t) : id(next_var_id()), name(std::move(n)), type(&t) {}

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
  void (*destroy_value)(box_base*) noexcept;
  void (*free_shell)(box_base*) noexcept;  // also releases the identity
  var_info* info;
};

inline box_base*& spare_slot(thread_state& st, std::uint64_t id) noexcept {
  return st.spare[id & (CTXVARS_SPARE_BOXES - 1)];
}

// Last reference gone: destroy the value, keep or free the shell.
inline void dispose_box(box_base* b) noexcept {
  b->destroy_value(b);
  thread_state& st = tls;
  if (CTXVARS_UNLIKELY(st.torn_down)) return b->free_shell(b);
  box_base*& slot = spare_slot(st, b->info->id);
  if (CTXVARS_UNLIKELY(!st.armed)) arm_thread_exit();
  // The newest shell wins the slot: the variable being set and reset now.
  if (box_base* evicted = std::exchange(slot, b)) evicted->free_shell(evicted);
}

template <class T>
struct typed_box final : box_base {
  alignas(T) unsigned char storage[sizeof(T)];

  T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  const T* value() const noexcept { return std::launder(reinterpret_cast<const T*>(storage)); }

  static void destroy_value_of(box_base* b) noexcept { static_cast<typed_box*>(b)->value()->~T(); }
  static void free_shell_of(box_base* b) noexcept {
    var_info* i = b->info;
    ::operator delete(static_cast<void*>(static_cast<typed_box*>(b)));
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
template <class T, class... A>
box_ptr make_box(var_info* info, A&&... a) {
  using box = typed_box<T>;
  thread_state& st = tls;
  box_base*& slot = spare_slot(st, info->id);
  box* b;
  if (slot && slot->info == info) {
    b = static_cast<box*>(slot);
    ::new (static_cast<void*>(b->storage)) T(std::forward<A>(a)...);  // on throw the shell stays parked
    slot = nullptr;
    b->refs.store(1, std::memory_order_relaxed);
  } else {
    void* mem = ::operator new(sizeof(box));
    b = ::new (mem) box;
    try {
      ::new (static_cast<void*>(b->storage)) T(std::forward<A>(a)...);
    } catch (...) {
      ::operator delete(mem);
      throw;
    }
    b->destroy_value = &box::destroy_value_of;
    b->free_shell = &box::free_shell_of;
    b->info = info;
    info->retain();
  }
  return box_ptr(b);
}

template <class T>
const T& box_value(const box_base* b) noexcept {
  return *static_cast<const typed_box<T>*>(b)->value();
}

// Frees this thread's spare shell of variable `info`, if parked (called when
// the variable dies, so its identity need not wait for thread exit).
inline void drop_spare(var_info* info) noexcept {
  thread_state& st = tls;
  box_base*& slot = spare_slot(st, info->id);
  if (slot && slot->info == info) {
    box_base* b = slot;
    slot = nullptr;
    b->free_shell(b);
  }
}

}  // namespace ctxvars::detail
