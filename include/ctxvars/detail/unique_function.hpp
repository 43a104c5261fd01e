// unique_function: a move-only, type-erased `void()` callable — what C++23's
// std::move_only_function<void()> is, for C++20. What thread_pool queues, so
// that a job may own move-only things (a std::unique_ptr, a promise, a
// coroutine handle's owner), which std::function rejects.
//
// Cost: a callable of at most three pointers whose move cannot throw (a
// coroutine handle, a few references) is stored inline, without allocating;
// a larger one is allocated once (std::bad_alloc, or what its move
// constructor throws; then nothing was made). Moving never allocates and
// never throws. Calling an empty one is undefined (thread_pool never does).
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace ctxvars::detail {

class unique_function {
 public:
  unique_function() noexcept = default;

  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, unique_function> &&
             std::is_constructible_v<std::decay_t<F>, F &&> && std::is_invocable_v<std::decay_t<F>&>)
  unique_function(F&& f) {  // NOLINT: implicit, like std::function
    using D = std::decay_t<F>;
    if constexpr (stored_inline<D>) {
      ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
    } else {
      D* p = new D(std::forward<F>(f));
      ::new (static_cast<void*>(buf_)) D*(p);
    }
    ops_ = &ops_for<D>;
  }

  unique_function(unique_function&& o) noexcept : ops_(o.ops_) {
    if (ops_) {
      ops_->move(o.buf_, buf_);
      o.ops_ = nullptr;
    }
  }
  // The callable this held dies last, after this holds o's.
  unique_function& operator=(unique_function&& o) noexcept {
    if (this != &o) {
      unique_function old(std::move(*this));
      if (o.ops_) {
        o.ops_->move(o.buf_, buf_);
        ops_ = std::exchange(o.ops_, nullptr);
      }
    }
    return *this;
  }
  unique_function(const unique_function&) = delete;
  unique_function& operator=(const unique_function&) = delete;
  ~unique_function() {
    if (ops_) ops_->destroy(buf_);
  }

  explicit operator bool() const noexcept { return ops_ != nullptr; }
  // Calls the callable (precondition: not empty). Throws what it throws.
  void operator()() { ops_->call(buf_); }

 private:
  static constexpr std::size_t inline_size = 3 * sizeof(void*);
  template <class D>
  static constexpr bool stored_inline = sizeof(D) <= inline_size && alignof(D) <= alignof(void*) &&
                                        std::is_nothrow_move_constructible_v<D>;

  struct ops {
    void (*call)(void*);
    void (*move)(void* from, void* to) noexcept;  // leaves `from` destroyed
    void (*destroy)(void*) noexcept;
  };
  template <class D>
  static D& target(void* p) noexcept {
    if constexpr (stored_inline<D>)
      return *std::launder(static_cast<D*>(p));
    else
      return **std::launder(static_cast<D**>(p));
  }
  template <class D>
  static void call_of(void* p) {
    target<D>(p)();
  }
  template <class D>
  static void move_of(void* from, void* to) noexcept {
    if constexpr (stored_inline<D>) {
      D& src = target<D>(from);
      ::new (to) D(std::move(src));
      src.~D();
    } else {
      ::new (to) D*(*std::launder(static_cast<D**>(from)));
    }
  }
  template <class D>
  static void destroy_of(void* p) noexcept {
    if constexpr (stored_inline<D>)
      target<D>(p).~D();
    else
      delete &target<D>(p);
  }
  template <class D>
  static constexpr ops ops_for{&call_of<D>, &move_of<D>, &destroy_of<D>};

  alignas(void*) unsigned char buf_[inline_size];
  const ops* ops_ = nullptr;
};

}  // namespace ctxvars::detail
