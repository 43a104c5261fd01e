// The integrations' way to a variable's identity (format.hpp, codec.hpp).
#pragma once

#include "../context_var.hpp"

namespace ctxvars::detail {

struct var_access {
  template <class T>
  static var_info* info(const context_var<T>& v) noexcept {
    return v.info_;
  }
  // set and reset in `c`, a context this thread writes that need not be current (the
  // Python module: the running task's context, without switching the thread's
  // current context for every write). `st` is this_thread_state().
  template <class T>
  static token<T> set_in(context_var<T>& v, thread_state& st, context_impl* c, T value) {
    return v.set_in(st, c, std::move(value));
  }
  template <class T>
  static void reset_in(context_var<T>& v, thread_state& st, context_impl* c, token<T>& t) {
    v.reset_in(st, c, t);
  }
};

}  // namespace ctxvars::detail
