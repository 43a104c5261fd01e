// The C API for C++ extensions (<ctxvars/python.hpp>), published as the capsule
// `ctxvars._api_v2`.
#pragma once

#include <ctxvars/python.hpp>

namespace ctxvars_python {

extern const ctxvars::python::detail::api_v1 the_api;

}  // namespace ctxvars_python
