// The integrations' way to a variable's identity (format.hpp, codec.hpp).
#pragma once

#include "../context_var.hpp"

namespace ctxvars::detail {

struct var_access {
  template <class T>
  static var_info* info(const context_var<T>& v) noexcept {
    return v.info_;
  }
};

}  // namespace ctxvars::detail
