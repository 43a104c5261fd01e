// Counts this thread's heap allocations (operator new replaced in the
// benchmark binary), so benchmarks can report allocations per operation.
#pragma once

#include <cstddef>

namespace ctxvars_bench {
std::size_t allocations() noexcept;      // this thread's count so far
std::size_t allocated_bytes() noexcept;  // this thread's bytes so far
long live_bytes() noexcept;              // bytes allocated and not yet freed (this thread)
}  // namespace ctxvars_bench
