// What the benchmark binaries share: the baseline every one measures in its
// own run — a raw thread_local pointer-chase read (tl_ptr->field),
// constant-initialised so that no guard or wrapper call is involved — and
// the set of variables contexts are filled with.
#pragma once

#include <benchmark/benchmark.h>

#include <ctxvars/ctxvars.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace ctxvars_bench {

struct tl_data {
  int field = 1;
};
inline constinit thread_local tl_data* tl_ptr = nullptr;

inline void BM_ThreadLocal_Read(benchmark::State& state) {
  tl_data d;
  tl_ptr = &d;
  for (auto _ : state) benchmark::DoNotOptimize(tl_ptr->field);
}

constexpr int max_vars = 100000;

// max_vars variables (with default -1), created once.
inline std::vector<std::unique_ptr<ctxvars::context_var<int>>>& vars() {
  static auto* v = [] {
    auto* p = new std::vector<std::unique_ptr<ctxvars::context_var<int>>>;
    for (int i = 0; i < max_vars; ++i)
      p->push_back(std::make_unique<ctxvars::context_var<int>>("v" + std::to_string(i), -1));
    return p;
  }();
  return *v;
}

// Runs `body` inside a fresh context holding the first n variables.
template <class F>
void with_vars(int n, F body) {
  ctxvars::context c;
  c.run([&] {
    for (int i = 0; i < n; ++i) (void)vars()[static_cast<std::size_t>(i)]->set(i);
    body();
  });
}

}  // namespace ctxvars_bench
