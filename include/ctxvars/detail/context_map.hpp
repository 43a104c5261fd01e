// What a context stores: variable ids to value boxes, in a trie under small
// write logs (write_log.hpp), with layers recycled per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

#include "../config.hpp"
#include "hamt/bits.hpp"
#include "thread_state.hpp"
#include "value_box.hpp"
#include "write_log.hpp"

namespace ctxvars::detail {

struct id_hash {
  // Ids are sequential, which already spreads them perfectly over the trie's
  // branches: the identity is the best hash.
  hamt::hash_t operator()(std::uint64_t id) const noexcept { return id; }
};

// Layers come from a short per-thread free list (freed at thread exit), so the
// first set in a fresh copy of a context does not call malloc in the steady state.
struct context_layer_alloc {
  static constexpr unsigned max_free = 32;
  static void* allocate(std::size_t n);
  static void deallocate(void* p, std::size_t n) noexcept;
};

// A log of 8 entries per layer, at most 4 layers above the bottom.
using context_map = layered_map<box_ptr, id_hash, context_layer_alloc, 5, 8, 4>;

// Only full layers (those a write to a copy adds) are pooled.
inline void* context_layer_alloc::allocate(std::size_t n) {
  thread_state& st = this_thread_state();
  if (n == context_map::full_layer_bytes()) {
    if (void* p = st.free_layers) {
      st.free_layers = *static_cast<void**>(p);
      --st.n_free_layers;
      return p;
    }
  }
  return ::operator new(n);
}
inline void context_layer_alloc::deallocate(void* p, std::size_t n) noexcept {
  thread_state& st = this_thread_state();
  if (n == context_map::full_layer_bytes() && st.n_free_layers < max_free && !st.torn_down) {
    if (CTXVARS_UNLIKELY(!st.armed)) arm_thread_exit();
    *static_cast<void**>(p) = st.free_layers;
    st.free_layers = p;
    ++st.n_free_layers;
    return;
  }
  ::operator delete(p);
}

}  // namespace ctxvars::detail
