// ctxvars/task/promise.hpp — the promise of task<T>: what a task awaits
// (await_transform), where its chain lives, how its frame is allocated.
// Internal to <ctxvars/task.hpp>.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <new>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "chain.hpp"
#include "switching_awaiter.hpp"

namespace ctxvars {
template <class T = void>
class task;

namespace detail {

template <class T>
struct is_task : std::false_type {};
template <class T>
struct is_task<task<T>> : std::true_type {};

struct stop_token_request {};

// Awaited by the driving frame of a spawned task: enters the chain's context
// if the first hop to the scheduler did not (it did not suspend).
struct enter_chain {};

template <class T>
class spawn_state;

// Awaited by the driving frame: runs the spawned task in this chain and hands
// its outcome to the spawn state. The value passes through await_resume's own
// stack frame, never through the coroutine frame.
template <class T>
struct deliver;

class promise_base {
 public:
  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) const noexcept {
      promise_base& p = h.promise();
      if (p.own_) {
        p.own_->leave();  // give the thread back what it had
        if (p.on_done_) return p.on_done_(p, p.on_done_arg_);  // destroys the frame
      }
      // Symmetric transfer: chains of any depth unwind without the stack.
      return p.continuation_ ? p.continuation_ : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() noexcept { return {}; }
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  template <class A>
  decltype(auto) await_transform(A&& a) {
    using plain = std::remove_cvref_t<A>;
    if constexpr (is_task<plain>::value) {
      return std::forward<A>(a).operator co_await();  // direct await: same context
    } else if constexpr (std::is_same_v<plain, stop_token_request>) {
      struct ready {
        std::stop_token t;
        bool await_ready() const noexcept { return true; }
        void await_suspend(std::coroutine_handle<>) const noexcept {}
        std::stop_token await_resume() const noexcept { return t; }
      };
      return ready{chain_ ? chain_->stop : std::stop_token{}};
    } else if constexpr (std::is_same_v<plain, enter_chain>) {
      struct enter {
        chain_state* c;
        bool await_ready() const noexcept { return c->inside() || c->try_enter(); }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) const noexcept {
          c->parked = h;
          return c->resume.handle();
        }
        void await_resume() const noexcept {}
      };
      return enter{chain_};
    } else if constexpr (requires { typename plain::is_ctxvars_deliver; }) {
      return std::forward<A>(a);
    } else {
      using aw = decltype(get_awaiter(std::forward<A>(a)));
      return switching_awaiter<aw>{chain_, get_awaiter(std::forward<A>(a))};
    }
  }

  // Makes this task the root of a chain running in `c`.
  chain_state& make_root(context c, std::stop_token s, bool private_context) {
    own_.emplace(context_access::take(c), std::move(s), private_context);
    chain_ = &*own_;
    return *own_;
  }
  void set_chain(chain_state* c) noexcept { chain_ = c; }
  chain_state* chain() const noexcept { return chain_; }
  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }
  // Called by the root's final suspend, after the final leave. It may destroy
  // the frame; it returns the coroutine to transfer to.
  using on_done_fn = std::coroutine_handle<> (*)(promise_base&, void*) noexcept;
  void set_on_done(on_done_fn f, void* arg) noexcept {
    on_done_ = f;
    on_done_arg_ = arg;
  }
  void rethrow_if_error() const {
    if (error_) std::rethrow_exception(error_);
  }
  std::exception_ptr error() const noexcept { return error_; }

 private:
  std::optional<chain_state> own_;
  chain_state* chain_ = nullptr;
  std::coroutine_handle<> continuation_;
  std::exception_ptr error_;
  on_done_fn on_done_ = nullptr;
  void* on_done_arg_ = nullptr;
};

// Coroutine frames come from operator new(size_t), which C++20 does not ask
// for more than the default alignment; a promise holding an over-aligned T
// gets a frame allocated with alignof(T) instead.
template <class T, bool over_aligned = (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__)>
struct frame_allocation {};
template <class T>
struct frame_allocation<T, true> {
  static void* operator new(std::size_t n) { return ::operator new(n, std::align_val_t(alignof(T))); }
  static void operator delete(void* p, std::size_t n) noexcept {
    (void)n;
    ::operator delete(p, std::align_val_t(alignof(T)));
  }
};

template <class T>
class task_promise : public promise_base, public frame_allocation<T> {
 public:
  task<T> get_return_object() noexcept;
  template <class U>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) {
    value_.emplace(std::forward<U>(v));
  }
  // The result, moved out (a throwing move propagates to the awaiter).
  T take() {
    rethrow_if_error();
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class task_promise<void> : public promise_base {
 public:
  task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() { rethrow_if_error(); }
};

}  // namespace detail
}  // namespace ctxvars
