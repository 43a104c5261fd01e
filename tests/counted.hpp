// A value type that counts its constructions, copies, moves and destructions,
// to prove nothing leaks and nothing is copied needlessly (after cppcoro's).
#pragma once

#include <atomic>

namespace ctxvars_test {

struct counted {
  static inline std::atomic<long> alive{0};
  static inline std::atomic<long> copies{0};
  static inline std::atomic<long> moves{0};
  static void reset_counts() noexcept {
    copies = 0;
    moves = 0;
  }

  int v = 0;
  counted() noexcept { ++alive; }
  explicit counted(int x) noexcept : v(x) { ++alive; }
  counted(const counted& o) noexcept : v(o.v) {
    ++alive;
    ++copies;
  }
  counted(counted&& o) noexcept : v(o.v) {
    ++alive;
    ++moves;
  }
  counted& operator=(const counted& o) noexcept {
    v = o.v;
    ++copies;
    return *this;
  }
  counted& operator=(counted&& o) noexcept {
    v = o.v;
    ++moves;
    return *this;
  }
  ~counted() { --alive; }
  friend bool operator==(const counted& a, const counted& b) noexcept { return a.v == b.v; }
};

}  // namespace ctxvars_test
