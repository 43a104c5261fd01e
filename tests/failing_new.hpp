// Allocation failure for a test binary: replaces the global operator new so that
// the Nth allocation from now throws std::bad_alloc, and sweeps an operation over
// N until it succeeds (alloc_failure_test, generator_alloc_failure_test).
//
// Include it in exactly one source file of the binary: it defines the replacement
// functions, which may not be inline. ThreadSanitizer's runtime owns operator new,
// so these binaries are not built under TSan (tests/CMakeLists.txt).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <new>

#include "ctxvars/context.hpp"

namespace ctxvars_test {
inline constinit thread_local long fail_countdown = -1;  // -1: never fail
inline constinit thread_local long allocations = 0;      // every operator new on this thread
inline long swept_points = 0;                            // failure points over the whole binary
}  // namespace ctxvars_test

void* operator new(std::size_t n) {
  ++ctxvars_test::allocations;
  if (ctxvars_test::fail_countdown >= 0 && ctxvars_test::fail_countdown-- == 0) throw std::bad_alloc();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace ctxvars_test {

// Runs op with the Nth allocation failing, for N = 0, 1, ... until op succeeds;
// calls check() after every failure. Returns the number of failure points (or -1,
// with a test failure, if op never succeeded within 1000).
template <class Op, class Check>
int sweep(Op op, Check check) {
  for (int n = 0; n < 1000; ++n) {
    fail_countdown = n;
    try {
      op();
      fail_countdown = -1;
      swept_points += n;
      return n;
    } catch (const std::bad_alloc&) {
      fail_countdown = -1;
      check();
    }
  }
  fail_countdown = -1;
  ADD_FAILURE() << "operation never succeeded";
  return -1;
}

// Write-log layers come from a per-thread free list: empty it so that the
// operation under test must call operator new for them.
inline void drain_layer_cache() {
  auto& st = ctxvars::detail::this_thread_state();
  while (void* p = st.free_layers) {
    st.free_layers = *static_cast<void**>(p);
    ::operator delete(p);
  }
  st.n_free_layers = 0;
}

}  // namespace ctxvars_test
