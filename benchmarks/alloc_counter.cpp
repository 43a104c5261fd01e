#include "alloc_counter.hpp"

#include <malloc.h>

#include <cstdlib>
#include <new>

namespace {
constinit thread_local std::size_t count = 0;
constinit thread_local std::size_t bytes = 0;
constinit thread_local long live = 0;  // bytes held now (malloc_usable_size), this thread's view
}  // namespace

namespace ctxvars_bench {
std::size_t allocations() noexcept { return count; }
std::size_t allocated_bytes() noexcept { return bytes; }
long live_bytes() noexcept { return live; }
}  // namespace ctxvars_bench

void* operator new(std::size_t n) {
  ++count;
  bytes += n;
  if (void* p = std::malloc(n ? n : 1)) {
    live += static_cast<long>(malloc_usable_size(p));
    return p;
  }
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  if (p) live -= static_cast<long>(malloc_usable_size(p));
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }
