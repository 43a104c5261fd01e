// async_generator<T>: generator<T>'s context layer for a body that also
// co_awaits (tasks, Asio-free awaitables, other async generators), consumed
// from a ctxvars::task (or any coroutine) with `co_await g.next()`.
//
//   ctxvars::async_generator<row> rows(query q) {
//     auto g = stage.scoped_set("fetching");   // seen by this body only
//     while (auto page = co_await fetch(q))     // resumes on any thread: still its layer
//       for (auto& r : *page) co_yield r;
//   }
//   while (auto r = co_await rows(q).next()) ...
//
// The rules are generator<T>'s (generator.hpp, docs/beyond-python.md), with
// "the consumer's current context" taken when the consumer calls next(): the
// body runs in its layer over a snapshot of it for the whole pull, also after
// it suspended on an awaitable and resumed on another thread; nothing it sets
// reaches the consumer. Destroying a suspended async generator (the consumer
// stopped early) runs its cleanup in its layer over the destroying thread's
// current context, as for generator<T>.
//
// Precondition: one next() at a time, and the generator is not destroyed
// while a next() is pending (its body is then suspended on an awaitable that
// will resume it).
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "generator.hpp"
#include "task.hpp"

namespace ctxvars {

template <class T>
class async_generator;

namespace detail {

// The body's promise: a task promise (so that awaiting tasks and foreign
// awaitables inside the body leaves and re-enters its layer, through a chain
// of its own over the layer's context), whose co_yield hands a value to the
// consumer.
template <class T>
class async_generator_promise : public promise_base {
 public:
  async_generator<T> get_return_object() noexcept;

  struct to_consumer {
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<async_generator_promise> h) noexcept {
      async_generator_promise& p = h.promise();
      if (p.chain_ && p.chain_->inside()) p.chain_->leave_private();  // the thread gets back what it had
      return std::exchange(p.consumer_, nullptr);
    }
    void await_resume() const noexcept {}
  };

  // A copy or move of the value, taken by the consumer's next().
  template <class U>
    requires std::is_constructible_v<T, U&&>
  to_consumer yield_value(U&& v) {
    value_.emplace(std::forward<U>(v));
    return {};
  }
  to_consumer final_suspend() noexcept { return {}; }
  void return_void() noexcept {}
  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  // Frames of an over-aligned T (held in the promise) get T's alignment:
  // clang 14 allocates coroutine frames 16-aligned otherwise.
  static constexpr std::size_t frame_align =
      alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__ ? alignof(T) : __STDCPP_DEFAULT_NEW_ALIGNMENT__;
  static void* operator new(std::size_t n) {
    if constexpr (frame_align > __STDCPP_DEFAULT_NEW_ALIGNMENT__)
      return ::operator new(n, std::align_val_t{frame_align});
    else
      return ::operator new(n);
  }
  static void operator delete(void* p, std::size_t) noexcept {
    if constexpr (frame_align > __STDCPP_DEFAULT_NEW_ALIGNMENT__)
      ::operator delete(p, std::align_val_t{frame_align});
    else
      ::operator delete(p);
  }

 private:
  friend class async_generator<T>;
  std::optional<T> value_;
  std::exception_ptr error_;
  std::coroutine_handle<> consumer_;
  generator_layer layer_;
  std::optional<chain_state> chain_;
};

}  // namespace detail

// See the top of this file. Move-only.
// Cost per next(): an O(1) snapshot of the consumer's context, the layer's
// rebuild if it changed since the last pull (as generator<T>), two context
// switches per resume of the body; one optional<T> move out.
// Thread safety: one thread at a time; the body may resume on any thread.
template <class T>
class [[nodiscard]] async_generator {
 public:
  using promise_type = detail::async_generator_promise<T>;
  using handle_type = std::coroutine_handle<promise_type>;
  using value_type = T;

  async_generator(async_generator&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  async_generator& operator=(async_generator&& o) noexcept {
    if (this != &o) {
      async_generator old(std::move(*this));
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  async_generator(const async_generator&) = delete;
  async_generator& operator=(const async_generator&) = delete;
  // A started, unfinished generator runs its cleanup in its layer over the
  // calling thread's current context (see generator<T>).
  ~async_generator() { destroy(); }

  class next_awaiter {
   public:
    bool await_ready() const noexcept { return !h_ || h_.done(); }
    // Builds the layer over the snapshot and runs the body on this thread
    // until it yields, finishes or suspends. Throws std::bad_alloc (nothing
    // ran).
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> consumer) {
      promise_type& p = h_.promise();
      detail::context_map retired, retired_base;
      p.layer_.prune();
      p.layer_.build_over(std::move(snapshot_), retired, retired_base);
      if (!p.chain_) {
        p.chain_.emplace(detail::context_access::make(p.layer_.context()), std::stop_token{}, true);
        p.set_chain(&*p.chain_);
      }
      p.consumer_ = consumer;
      p.chain_->enter_private();
      return h_;
    }
    // The next value, or nullopt once the body finished; rethrows what the
    // body threw (once: the generator is then finished).
    std::optional<T> await_resume() {
      if (!h_) return std::nullopt;
      promise_type& p = h_.promise();
      if (p.error_) std::rethrow_exception(std::exchange(p.error_, nullptr));
      if (h_.done()) return std::nullopt;
      std::optional<T> v(std::move(p.value_));
      p.value_.reset();
      return v;
    }

   private:
    friend class async_generator;
    next_awaiter(handle_type h, detail::context_map snap) noexcept : h_(h), snapshot_(std::move(snap)) {}
    handle_type h_;
    detail::context_map snapshot_;
  };

  // Awaitable: the next value (std::optional<T>, nullopt at the end). The
  // body sees the context current HERE, when next() is called.
  next_awaiter next() {
    detail::context_impl* cur = detail::this_thread_state().current;
    return next_awaiter(h_, cur ? cur->map : detail::context_map());
  }

 private:
  friend promise_type;
  explicit async_generator(handle_type h) noexcept : h_(h) {}

  void destroy() noexcept {
    if (!h_) return;
    const handle_type h = std::exchange(h_, {});
    detail::context_impl* const ctx = h.promise().layer_.context();
    if (ctx && h.done()) {  // nothing of the body is left to run
      h.destroy();
      ctx->release();
      return;
    }
    detail::generator_layer::last_resume(h.promise().layer_, [h] { h.destroy(); });
  }

  handle_type h_{};
};

namespace detail {
template <class T>
async_generator<T> async_generator_promise<T>::get_return_object() noexcept {
  return async_generator<T>(std::coroutine_handle<async_generator_promise>::from_promise(*this));
}
}  // namespace detail

}  // namespace ctxvars
