// Variable identities and the type-erased value boxes a context stores.
//
// A context maps a variable's id (a 64-bit number never reused, so a variable
// re-created at the same address is never mistaken for the old one) to a box
// holding the value. Each box also keeps the variable's `var_info` alive, so a
// context can still name an entry after its variable is destroyed.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <typeinfo>
#include <utility>

namespace ctxvars::detail {

std::uint64_t next_var_id() noexcept;

// A variable's identity: name, id and value type. Owned by the variable and
// by every box holding one of its values.
struct var_info {
  std::atomic<std::uint32_t> refs{1};
  std::uint64_t id;
  std::string name;
  const std::type_info* type;

  var_info(std::string n, const std::type_info& t) : id(next_var_id()), name(std::move(n)), type(&t) {}

  void retain() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs.load(std::memory_order_acquire) == 1 ||
        refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
      delete this;
  }
};

struct box_base {
  std::atomic<std::uint32_t> refs{1};
  void (*destroy)(box_base*) noexcept;
  var_info* info;
};

template <class T>
struct typed_box final : box_base {
  T value;

  template <class... A>
  explicit typed_box(var_info* i, A&&... a) : box_base{{1}, &destroy_box, i}, value(std::forward<A>(a)...) {}

  static void destroy_box(box_base* b) noexcept {
    auto* t = static_cast<typed_box*>(b);
    var_info* i = t->info;
    delete t;
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
  box_ptr& operator=(box_ptr o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~box_ptr() {
    if (p_ && (p_->refs.load(std::memory_order_acquire) == 1 ||
               p_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1))
      p_->destroy(p_);
  }
  box_base* get() const noexcept { return p_; }
  box_base* operator->() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  box_base* p_ = nullptr;
};

// Allocates a box for `info`'s variable (may throw whatever T's constructor or
// operator new throws; then nothing was retained).
template <class T, class... A>
box_ptr make_box(var_info* info, A&&... a) {
  auto* b = new typed_box<T>(info, std::forward<A>(a)...);
  info->retain();
  return box_ptr(b);
}

template <class T>
const T& box_value(const box_base* b) noexcept {
  return static_cast<const typed_box<T>*>(b)->value;
}

}  // namespace ctxvars::detail
