// The one implementation of the Asio adapter, templated on a traits type that
// names the Asio it serves: `ctxvars::asio::traits` (standalone Asio, in
// <ctxvars/asio.hpp>) or `ctxvars::boost_asio::traits` (Boost.Asio, in
// <ctxvars/boost_asio.hpp>). Those headers only name their Asio and export
// the objects below under the public names (co_spawn, context_executor,
// gather); everything that decides behaviour is here.
//
// A Traits type provides:
//   awaitable<T, E = any_io_executor>, any_io_executor, io_executor (of
//   io_context), thread_pool_executor, system_executor, strand<E>,
//   execution_context, default_completion_token_t<E>, is_awaitable<A>;
//   is_executor<E>, can_query<E, P>, can_require<E, P>, can_prefer<E, P>,
//   is_nothrow_query<E, P>; execute, query, require, prefer, co_spawn,
//   make_parallel_group (static functions); blocking_never, blocking,
//   blocking_always, this_coro_executor,
//   deferred, use_awaitable, wait_for_all (static constexpr values or functions).
//
// How a task keeps its context. Asio has no suspend/resume hook, but every
// step of an awaitable (its start and every resumption after an asynchronous
// operation) runs through the coroutine's executor. co_spawn gives the
// coroutine a context_executor, which wraps the real executor and runs each
// function it is given inside the task's context (a step_scope). A coroutine
// that is co_awaited directly runs in the same step, so it shares its
// awaiter's context (Python's rule). When the task suspends, the step returns
// and the thread gets back the context it had.
//
// The waiting rule (no livelock). A context is entered by one thread at a
// time, so a step may find its context busy: Asio posts the next step of a
// task before the current step has returned, and tasks may share one context
// explicitly. A step whose thread holds no context (only its own base
// context) waits a little for the other thread to leave, and gives way (is
// queued, below) if it does not: the holder may itself be waiting for this
// step (a thread running the event loop inside c.run(...) leaves c only when
// the loop ends). A step whose thread already holds a context (a step
// dispatched inline from inside another task's step: co_spawn's first step, a
// dispatch completing inline) NEVER waits: it is queued at once and runs
// later. So no thread ever waits while holding a context, and no wait is
// unbounded: no cycle of waiting threads can form. "Is the holder me?" comes
// first: a step whose context is already current on its thread (a loop run
// inside c.run(...), a dispatch completing inline) or entered further down
// its stack runs at once, without waiting.
//
// Order (issue 17 §3.4). A step that could not run must not be overtaken: a
// strand runs its functions in the order they were submitted. Each task has a
// FIFO of waiting steps; a step that finds the context busy, or finds steps
// already waiting (even if the context is free, or current on its thread),
// joins the end of it. One runner at a time, posted through the head's own
// executor (blocking.never), enters the context by the rule above (giving way
// by re-posting itself) and runs the head and, in the same step, the steps
// behind it submitted to an executor equal to the head's; a head on another
// executor gets a runner posted through its own. The queue allocates only on
// this slow path; the fast path pays one relaxed load. If the runner's
// executor shuts down before it runs, the queued steps are destroyed unrun.
//
// A finished task leaves nothing behind. The task's body is wrapped (run_task)
// so that once it has returned or thrown, the step leaves the task's context
// before Asio invokes the completion handler, and the task's executor stops
// entering the context. The handler (a plain coroutine awaiting the task, a
// callback, a future) runs in the context the thread had outside the task.
// No window (issue 17 §3.2): steps enter the context only through the task's
// gate (task_block.hpp), taken before the context and given back after it;
// the last step marks the task finished while holding the gate, so a step
// that was waiting for the context meanwhile finds the task finished and runs
// its function where its thread is: c.run(...) right after the handler finds
// c free.
#pragma once

#include "task_block.hpp"
#include "context_executor.hpp"
#include "co_spawn.hpp"
#include "gather.hpp"
