// task<T>: a lazy C++20 coroutine that carries a context, for any scheduler
// that resumes coroutine handles; plus spawn, sync_wait and a small thread_pool.
//
// The rule (Python asyncio's):
//  - spawn(sched, t) / sync_wait(t) run t as a new task in a copy of the
//    context current at the call (or in a context given explicitly);
//  - `co_await t` inside a task runs t in the awaiter's context: what t sets is
//    visible to the awaiter afterwards;
//  - whenever a task's code runs, on whichever thread, its context is current;
//    whenever it suspends (on anything that is not a task), the thread gets
//    back the context it had.
//
// How: the promise's await_transform wraps every awaitable that is not a task
// so that await_suspend first leaves the task's context and await_resume
// re-enters it, on whatever thread the resumption happens.
//
// Exceptions thrown by a task propagate to its awaiter, to sync_wait, or to
// spawned<T>::get(). Cancellation is cooperative: spawned<T>::request_stop(),
// and inside the task `co_await this_task::stop_token()`.
#pragma once

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "ctxvars.hpp"

namespace ctxvars {

template <class T = void>
class task;

namespace detail {

// The context a chain of tasks (one spawned task and the tasks it awaits
// directly) runs in, and what the running thread had before entering it.
//
// A chain spawned in a fresh copy of the creator's context owns that context
// alone: no handle to it exists anywhere else, so no other thread can enter
// or read it. Such a `private_` chain switches the thread's current context
// without the atomic enter/leave, and its sets skip the context's lock.
struct chain_state {
  context ctx;
  std::stop_token stop;
  switch_record prev{};
  bool inside = false;
  bool private_ = false;

  chain_state(context c, std::stop_token s, bool priv) noexcept
      : ctx(std::move(c)), stop(std::move(s)), private_(priv) {}
  void enter() {
    if (inside) return;
    context_impl* c = context_access::impl(ctx);
    prev = private_ ? switch_to(this_thread_state(), c) : enter_context(c);
    inside = true;
  }
  void leave() noexcept {
    if (!inside) return;
    inside = false;
    context_impl* c = context_access::impl(ctx);
    if (private_)
      switch_back(this_thread_state(), c, prev);
    else
      leave_context(c, prev);
  }
};

// A copy of the current context that no handle shares (see chain_state).
inline context private_copy_of_current() {
  context_impl* cur = this_thread_state().current;
  return context_access::adopt(new context_impl(false, cur ? cur->map : context_map()));
}

template <class A>
decltype(auto) get_awaiter(A&& a) {
  if constexpr (requires { std::forward<A>(a).operator co_await(); })
    return std::forward<A>(a).operator co_await();
  else if constexpr (requires { operator co_await(std::forward<A>(a)); })
    return operator co_await(std::forward<A>(a));
  else
    return std::forward<A>(a);
}

// Leaves the task's context around a suspension on a foreign awaitable.
template <class Awaiter>
struct switching_awaiter {
  chain_state* chain;
  Awaiter inner;
  bool suspended = false;

  bool await_ready() { return inner.await_ready(); }
  template <class P>
  decltype(auto) await_suspend(std::coroutine_handle<P> h) {
    if (chain) chain->leave();
    suspended = true;
    // After inner.await_suspend the coroutine may already run on another
    // thread: touch nothing of *this once it returned.
    try {
      return inner.await_suspend(h);
    } catch (...) {
      suspended = false;  // resumed here, with the exception
      if (chain) chain->enter();
      throw;
    }
  }
  decltype(auto) await_resume() {
    if (suspended) {
      suspended = false;
      if (chain) chain->enter();
    }
    return inner.await_resume();
  }
};

template <class T>
struct is_task : std::false_type {};
template <class T>
struct is_task<task<T>> : std::true_type {};

struct stop_token_request {};

class promise_base {
 public:
  struct initial_awaiter {
    promise_base& p;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    void await_resume() const {
      if (p.own_) p.own_->enter();  // a spawned task: its context becomes current
    }
  };
  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) const noexcept {
      promise_base& p = h.promise();
      if (p.own_) p.own_->leave();  // give the thread back what it had
      std::coroutine_handle<> next = p.continuation_ ? p.continuation_ : std::noop_coroutine();
      if (p.on_done_) p.on_done_(p, p.on_done_arg_);  // may destroy the frame
      return next;
    }
    void await_resume() const noexcept {}
  };

  initial_awaiter initial_suspend() noexcept { return {*this}; }
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  template <class A>
  decltype(auto) await_transform(A&& a) {
    if constexpr (is_task<std::remove_cvref_t<A>>::value) {
      return std::forward<A>(a).operator co_await();  // direct await: same context
    } else if constexpr (std::is_same_v<std::remove_cvref_t<A>, stop_token_request>) {
      struct ready {
        std::stop_token t;
        bool await_ready() const noexcept { return true; }
        void await_suspend(std::coroutine_handle<>) const noexcept {}
        std::stop_token await_resume() const noexcept { return t; }
      };
      return ready{chain_ ? chain_->stop : std::stop_token{}};
    } else {
      using aw = decltype(get_awaiter(std::forward<A>(a)));
      return switching_awaiter<aw>{chain_, get_awaiter(std::forward<A>(a))};
    }
  }

  // Makes this task the root of a chain running in `c`.
  void make_root(context c, std::stop_token s, bool private_context) {
    own_.emplace(std::move(c), std::move(s), private_context);
    chain_ = &*own_;
  }
  void set_chain(chain_state* c) noexcept { chain_ = c; }
  chain_state* chain() const noexcept { return chain_; }
  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }
  using on_done_fn = void (*)(promise_base&, void*) noexcept;
  // Called after the final leave; it may destroy the frame.
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

template <class T>
class task_promise : public promise_base {
 public:
  task<T> get_return_object() noexcept;
  template <class U>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) {
    value_.emplace(std::forward<U>(v));
  }
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

namespace this_task {
// co_await this_task::stop_token() inside a task: the stop token of the
// spawned task it belongs to (never stopped for sync_wait).
inline detail::stop_token_request stop_token() noexcept { return {}; }
}  // namespace this_task

// A lazy coroutine: nothing runs until it is awaited or spawned. Move-only;
// destroying a task that never ran destroys its frame.
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using value_type = T;

  task(task&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  task& operator=(task o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  ~task() {
    if (h_) h_.destroy();
  }

  struct awaiter {
    std::coroutine_handle<promise_type> h;
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
      h.promise().set_continuation(parent);
      if constexpr (std::is_base_of_v<detail::promise_base, P>) h.promise().set_chain(parent.promise().chain());
      return h;  // run the child now, on this thread, in the same context
    }
    T await_resume() { return h.promise().take(); }
  };
  // Awaiting a task runs it in the awaiter's context (Python: `await coro`).
  awaiter operator co_await() && noexcept { return awaiter{h_}; }

  std::coroutine_handle<promise_type> release() noexcept { return std::exchange(h_, nullptr); }

 private:
  friend promise_type;
  explicit task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}

// The shared state between a spawned task and its join handle.
template <class T>
class spawn_state : public std::enable_shared_from_this<spawn_state<T>> {
 public:
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

  // The task's outcome, recorded by its last step (not yet visible).
  void set_result(std::optional<stored> v, std::exception_ptr e) noexcept {
    std::lock_guard lk(m_);
    value_ = std::move(v);
    error_ = e;
  }
  // Runs after the task left its context: frees the driving frame (and with
  // it the task's context and values), then publishes the outcome and resumes
  // an awaiting coroutine, if any. So when get() returns, the task is gone.
  static void finish(promise_base& p, void* self) noexcept {
    auto keep = static_cast<spawn_state*>(self)->shared_from_this();
    const std::exception_ptr frame_error = p.error();
    std::coroutine_handle<task_promise<void>>::from_promise(static_cast<task_promise<void>&>(p)).destroy();
    std::coroutine_handle<> cont;
    {
      std::lock_guard lk(keep->m_);
      if (!keep->value_ && !keep->error_)
        keep->error_ = frame_error ? frame_error
                                   : std::make_exception_ptr(std::logic_error("ctxvars: task ended without a result"));
      keep->done_ = true;
      cont = std::exchange(keep->waiter_, nullptr);
    }
    keep->cv_.notify_all();
    if (cont) cont.resume();
  }
  bool done() const {
    std::lock_guard lk(m_);
    return done_;
  }
  void wait() const {
    std::unique_lock lk(m_);
    cv_.wait(lk, [&] { return done_; });
  }
  // false: already done, do not suspend.
  bool set_waiter(std::coroutine_handle<> h) {
    std::lock_guard lk(m_);
    if (done_) return false;
    waiter_ = h;
    return true;
  }
  T take() {
    std::lock_guard lk(m_);
    if (error_) std::rethrow_exception(error_);
    if constexpr (!std::is_void_v<T>) return std::move(*value_);
  }
  std::stop_source& stop_source() noexcept { return stop_; }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  bool done_ = false;
  std::optional<stored> value_;
  std::exception_ptr error_;
  std::coroutine_handle<> waiter_;
  std::stop_source stop_;
};

// The frame that drives a spawned task: hops to the scheduler, awaits the task
// (so it shares this frame's context), and reports the outcome.
template <class T, class Schedule>
task<void> drive(std::shared_ptr<spawn_state<T>> st, Schedule schedule, task<T> t) {
  std::exception_ptr err;
  std::optional<typename spawn_state<T>::stored> v;
  try {
    co_await schedule();
    if constexpr (std::is_void_v<T>) {
      co_await std::move(t);
      v.emplace();
    } else {
      v.emplace(co_await std::move(t));
    }
  } catch (...) {
    err = std::current_exception();
  }
  st->set_result(std::move(v), err);
}

struct inline_schedule {
  std::suspend_never operator()() const noexcept { return {}; }
};

template <class T, class Schedule>
std::shared_ptr<spawn_state<T>> start(context c, bool private_context, Schedule schedule, task<T> t) {
  auto st = std::make_shared<spawn_state<T>>();
  auto h = drive<T>(st, std::move(schedule), std::move(t)).release();
  h.promise().make_root(std::move(c), st->stop_source().get_token(), private_context);
  h.promise().set_on_done(&spawn_state<T>::finish, st.get());  // detached: frees itself
  h.resume();  // enters the task's context, then (usually) hops to the scheduler
  return st;
}
}  // namespace detail

// A handle to a spawned task: await it from a task, or block on get().
template <class T>
class spawned {
 public:
  explicit spawned(std::shared_ptr<detail::spawn_state<T>> s) noexcept : st_(std::move(s)) {}
  bool done() const { return st_->done(); }
  // Blocks until the task finished; returns its value or rethrows its exception.
  T get() {
    st_->wait();
    return st_->take();
  }
  void request_stop() noexcept { st_->stop_source().request_stop(); }

  struct awaiter {
    std::shared_ptr<detail::spawn_state<T>> st;
    bool await_ready() const { return st->done(); }
    bool await_suspend(std::coroutine_handle<> h) { return st->set_waiter(h); }
    T await_resume() { return st->take(); }
  };
  awaiter operator co_await() const noexcept { return awaiter{st_}; }

 private:
  std::shared_ptr<detail::spawn_state<T>> st_;
};

// Starts t as a task on `sched` (anything with schedule() returning an
// awaitable that resumes on the scheduler), in a copy of the current context.
template <class Scheduler, class T>
spawned<T> spawn(Scheduler& sched, task<T> t) {
  return spawned<T>(detail::start(detail::private_copy_of_current(), true, [&sched] { return sched.schedule(); },
                                  std::move(t)));
}
// The same, in `c` itself.
template <class Scheduler, class T>
spawned<T> spawn(Scheduler& sched, context c, task<T> t) {
  return spawned<T>(detail::start(std::move(c), false, [&sched] { return sched.schedule(); }, std::move(t)));
}

// Runs t to completion as a task started on this thread (it may hop to other
// threads), in a copy of the current context; returns its value or rethrows.
template <class T>
T sync_wait(task<T> t) {
  return spawned<T>(detail::start(detail::private_copy_of_current(), true, detail::inline_schedule{}, std::move(t))).get();
}
template <class T>
T sync_wait(context c, task<T> t) {
  return spawned<T>(detail::start(std::move(c), false, detail::inline_schedule{}, std::move(t))).get();
}

// A fixed set of threads resuming coroutines and running functions, FIFO.
// The destructor finishes the queued work, then joins.
class thread_pool {
 public:
  explicit thread_pool(unsigned threads = std::thread::hardware_concurrency()) {
    if (threads == 0) threads = 1;
    for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() {
    {
      std::lock_guard lk(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  // Runs f on a pool thread, in whatever context that thread has (use
  // ctxvars::bind(f) to carry the caller's).
  void post(std::function<void()> f) {
    // Notify under the lock: once the work is queued, the pool may finish it
    // and be destroyed; the destructor takes the lock, so it waits for this.
    std::lock_guard lk(m_);
    q_.push_back(std::move(f));
    cv_.notify_one();
  }
  // co_await pool.schedule(): continue on a pool thread.
  auto schedule() {
    struct awaiter {
      thread_pool* p;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) { p->post([h] { h.resume(); }); }
      void await_resume() const noexcept {}
    };
    return awaiter{this};
  }
  std::size_t size() const noexcept { return workers_.size(); }

 private:
  void work() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock lk(m_);
        cv_.wait(lk, [&] { return stopping_ || !q_.empty(); });
        if (q_.empty()) return;
        f = std::move(q_.front());
        q_.pop_front();
      }
      f();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace ctxvars
