// The baseline every benchmark binary measures in its own run: a raw
// thread_local pointer-chase read (tl_ptr->field), constant-initialised so
// that no guard or wrapper call is involved.
#pragma once

#include <benchmark/benchmark.h>

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

}  // namespace ctxvars_bench
