// Hash slicing for the trie: which bits of a 64-bit hash select a branch at a level.
#pragma once

#include <bit>
#include <cstdint>

#include "../../config.hpp"

namespace ctxvars::detail::hamt {

using hash_t = std::uint64_t;
using bitmap_t = std::uint32_t;

// B bits of hash per level: 2^B branches. B = 5 (32-way) in production; tests
// also compile B = 2 to exercise deep tries with few entries.
template <unsigned B>
struct bits {
  static_assert(B >= 1 && B <= 5, "branching factor must fit a 32-bit bitmap");
  static constexpr unsigned branching = 1u << B;
  static constexpr hash_t mask = branching - 1;
  static constexpr unsigned hash_width = 64;
  // Inner levels use shifts 0, B, 2B, ... < 64; entries whose full hashes are
  // equal meet in a collision node at depth `max_depth`.
  static constexpr unsigned max_depth = (hash_width + B - 1) / B;

  static constexpr unsigned shift_of(unsigned depth) noexcept { return depth * B; }
  static constexpr bitmap_t bit(hash_t h, unsigned depth) noexcept {
    return bitmap_t{1} << ((h >> shift_of(depth)) & mask);
  }
};

// Population count. Without a POPCNT target std::popcount becomes a libgcc
// call; a 32-bit SWAR count inlines to a dozen instructions.
CTXVARS_ALWAYS_INLINE constexpr unsigned popcount32(bitmap_t x) noexcept {
#if defined(__POPCNT__)
  return static_cast<unsigned>(std::popcount(x));
#else
  x = x - ((x >> 1) & 0x55555555u);
  x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
  x = (x + (x >> 4)) & 0x0F0F0F0Fu;
  return (x * 0x01010101u) >> 24;
#endif
}

// Position of `bit` among the set bits of `map` (the dense index of a slot).
constexpr unsigned index_of(bitmap_t map, bitmap_t bit) noexcept { return popcount32(map & (bit - 1)); }

}  // namespace ctxvars::detail::hamt
