// A reference-counted int, and its owning pointer: the value type the tests and
// the fuzzer store in detail::layered_map (write_log.hpp), with a count of
// live boxes to prove nothing leaks or is freed twice.
#pragma once

#include <atomic>
#include <utility>

namespace ctxvars_test {

struct int_box {
  static inline std::atomic<long> alive{0};
  std::atomic<int> refs{1};
  int v;
  explicit int_box(int x) noexcept : v(x) { ++alive; }
  ~int_box() { --alive; }
};

class int_ptr {
 public:
  int_ptr() noexcept = default;
  explicit int_ptr(int v) : p_(new int_box(v)) {}
  int_ptr(const int_ptr& o) noexcept : p_(o.p_) {
    if (p_) p_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  int_ptr(int_ptr&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  int_ptr& operator=(int_ptr o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~int_ptr() {
    if (p_ && p_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete p_;
  }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  const int_box* get() const noexcept { return p_; }
  int value() const noexcept { return p_->v; }
  int refs() const noexcept { return p_->refs.load(); }

 private:
  int_box* p_ = nullptr;
};

}  // namespace ctxvars_test
