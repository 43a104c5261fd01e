#include "alloc_counter.hpp"

#include <cstdlib>
#include <new>

namespace {
constinit thread_local std::size_t count = 0;
constinit thread_local std::size_t bytes = 0;
}  // namespace

namespace ctxvars_bench {
std::size_t allocations() noexcept { return count; }
std::size_t allocated_bytes() noexcept { return bytes; }
}  // namespace ctxvars_bench

void* operator new(std::size_t n) {
  ++count;
  bytes += n;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
