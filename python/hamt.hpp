// hamt(): the project's trie over Python objects (CPython's _testcapi.hamt interface).
#pragma once

#include "common.hpp"

namespace ctxvars_python {

// Adds hamt and its iterator type to the module.
void add_hamt(py::module_& m);

}  // namespace ctxvars_python
