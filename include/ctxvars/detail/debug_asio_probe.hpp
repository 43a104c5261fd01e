// Debug checks (CTXVARS_DEBUG_CHECKS) for either Asio: tells the leak check
// whether this thread is inside that Asio's event loop (io_context::run,
// run_one, poll, an asio::thread_pool or system_executor thread), from Asio's
// per-thread call stack, which every scheduler pushes while it runs handlers.
// Included by <ctxvars/asio.hpp> and <ctxvars/boost_asio.hpp> with their
// thread_context type; nothing here without the checks.
#pragma once

#include "debug_checks.hpp"

#if CTXVARS_DEBUG_CHECKS
namespace ctxvars::detail::debug {

// Cost: one thread_local read (Asio's call stack top).
template <class ThreadContext>
bool inside_asio_loop() noexcept {
  return ThreadContext::top_of_thread_call_stack() != nullptr;
}

// Registers the probe once per program, during static initialisation of any
// translation unit that names it.
template <class ThreadContext>
inline const bool asio_probe_registered = register_loop_probe(&inside_asio_loop<ThreadContext>, "Asio handler");

}  // namespace ctxvars::detail::debug
#endif
