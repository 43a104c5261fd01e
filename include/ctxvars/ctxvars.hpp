// ctxvars — Python's contextvars (PEP 567) for C++20.
//
// The core: context_var<T>, token<T>, scoped_set, context, copy_context,
// fork_context and the flow policies (flow.hpp), bind,
// and the error types. Coroutine support lives in <ctxvars/task.hpp> and
// <ctxvars/asio.hpp>.
#pragma once

#include "bind.hpp"
#include "config.hpp"
#include "context.hpp"
#include "context_var.hpp"
#include "errors.hpp"
#include "flow.hpp"
#include "version.hpp"
