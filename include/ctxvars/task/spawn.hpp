// ctxvars/task/spawn.hpp — spawn and sync_wait: start a task as the root of a
// chain (the driving frame, drive/deliver/start). Included by
// <ctxvars/task.hpp> (include that one).
#pragma once

#include <coroutine>
#include <memory>
#include <utility>

#include "../context.hpp"
#include "../errors.hpp"
#include "spawn_state.hpp"
#include "spawned.hpp"
#include "task.hpp"

namespace ctxvars {
namespace detail {

template <class T>
struct deliver {
  using is_ctxvars_deliver = void;
  spawn_state<T>* st;
  typename task<T>::awaiter inner;
  bool await_ready() const noexcept { return false; }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
    return inner.await_suspend(parent);
  }
  void await_resume() {
    if constexpr (std::is_void_v<T>) {
      inner.await_resume();
      st->set_value();
    } else {
      st->set_value(inner.await_resume());
    }
  }
};

// The frame that drives a spawned task: hops to the scheduler, enters the
// task's context, awaits the task (so it shares this frame's context), and
// records the outcome; finish() publishes it.
template <class T, class Schedule>
task<void> drive(std::shared_ptr<spawn_state<T>> st, Schedule schedule, task<T> t) {
  try {
    co_await schedule();
    co_await enter_chain{};  // if the hop did not suspend
    co_await deliver<T>{st.get(), std::move(t).operator co_await()};
  } catch (...) {
    st->set_error(std::current_exception());
  }
}

struct inline_schedule {
  std::suspend_never operator()() const noexcept { return {}; }
};

template <class T, class Schedule>
void start(const std::shared_ptr<spawn_state<T>>& st, context c, bool private_context, Schedule schedule,
           task<T> t) {
  if (!private_context) {
    context_impl* ci = context_access::impl(c);
    st->watch_context(ci);
  }
  auto h = drive<T>(st, schedule, std::move(t)).release();
  try {
    chain_state& chain =
        h.promise().make_root(context_access::take(c), st->stop_source().get_token(), private_context);
    if (!private_context) chain.resume = make_resumer(chain, schedule);
  } catch (...) {
    h.destroy();
    throw;
  }
  h.promise().set_on_done(&spawn_state<T>::finish, st.get());  // detached: frees itself
  h.resume();  // hops to the scheduler (or, inline, runs the task)
}
}  // namespace detail

// Starts t as a task on `sched` (anything with schedule() returning an
// awaitable that resumes on the scheduler), in a copy of the current context.
// The task's first step runs on the scheduler, never inline. Allocates the
// copy, the task's state and its driving frame (std::bad_alloc).
template <class Scheduler, class T>
spawned<T> spawn(Scheduler& sched, task<T> t) {
  auto st = std::make_shared<detail::spawn_state<T>>();
  detail::start(st, detail::private_copy_of_current(), true, [&sched] { return sched.schedule(); }, std::move(t));
  return spawned<T>(std::move(st));
}
// The same, in `c` itself. Never fails because another task (or thread) is
// inside `c`: the task's steps wait their turn (see the top of this file).
template <class Scheduler, class T>
spawned<T> spawn(Scheduler& sched, context c, task<T> t) {
  auto st = std::make_shared<detail::spawn_state<T>>();
  detail::start(st, detail::context_access::take(c), false, [&sched] { return sched.schedule(); }, std::move(t));
  return spawned<T>(std::move(st));
}

// Runs t to completion as a task started on this thread (it may hop to other
// threads), in a copy of the current context; returns its value or rethrows.
template <class T>
T sync_wait(task<T> t) {
  auto st = std::make_shared<detail::spawn_state<T>>();
  detail::start(st, detail::private_copy_of_current(), true, detail::inline_schedule{}, std::move(t));
  return spawned<T>(std::move(st)).get();
}
// The same, in `c` itself. If another thread is inside `c`, the task's steps
// wait their turn on this (blocked) thread. Throws context_in_use_error if the
// calling thread is itself inside `c` (it would wait for itself).
template <class T>
T sync_wait(context c, task<T> t) {
  if (detail::context_access::impl(c)->entered_by_this_thread())
    throw context_in_use_error(
        "ctxvars: sync_wait(c, task) from a thread that is inside c: the task could never enter it");
  auto st = std::make_shared<detail::spawn_state<T>>();
  detail::start(st, detail::context_access::take(c), false, typename detail::spawn_state<T>::local_schedule{st.get()},
                std::move(t));
  return spawned<T>(std::move(st)).get();
}

}  // namespace ctxvars
