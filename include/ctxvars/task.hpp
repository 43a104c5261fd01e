// task<T>: a lazy C++20 coroutine that carries a context, for any scheduler
// that resumes coroutine handles; plus spawn, spawned<T> and sync_wait.
// (thread_pool, a small scheduler, lives in thread_pool.hpp, included here.)
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
// so that await_suspend first leaves the task's context and the resumption
// re-enters it, on whatever thread it happens.
//
// Tasks sharing one explicit context (spawn(sched, c, t) twice, or a task
// spawning into its own context): a context is entered by one thread at a
// time, so such tasks take turns. A resumption that finds the context busy is
// never run outside it and never fails: it is queued again on the task's
// scheduler (the one given to spawn; sync_wait's own thread for sync_wait) and
// retried there, holding no context while it waits. Nothing waits for a
// context while holding another.
//
// Exceptions thrown by a task propagate to its awaiter, to sync_wait, or to
// spawned<T>::get(). Cancellation is cooperative: spawned<T>::request_stop(),
// and inside the task `co_await this_task::stop_token()`.
//
// Where things live (one idea per file, all included here):
//   task/chain.hpp              the context a chain of tasks runs in; the resumer
//   task/switching_awaiter.hpp  leaving and re-entering around foreign awaits
//   task/promise.hpp            task<T>'s promise (await_transform, frames)
//   task/task.hpp               task<T>, this_task::stop_token
//   task/spawn_state.hpp        the state a spawned task shares with its handle
//   task/spawned.hpp            spawned<T>, the join handle
//   task/spawn.hpp              spawn, sync_wait
#pragma once

#include "ctxvars.hpp"
#include "task/chain.hpp"
#include "task/promise.hpp"
#include "task/spawn.hpp"
#include "task/spawn_state.hpp"
#include "task/spawned.hpp"
#include "task/switching_awaiter.hpp"
#include "task/task.hpp"
#include "thread_pool.hpp"
