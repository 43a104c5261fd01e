// Trace and span ids: taking part in a W3C trace (https://www.w3.org/TR/trace-context-2/).
//
//   auto t = ctxvars::trace::start_trace();   // a new trace in the current context
//   auto s = ctxvars::trace::start_span();    // a child span of the current one (or a new trace)
//   ctxvars::trace::current();                // the trace context the current context holds
//
// Ids and propagation only, not a tracing SDK: nothing is recorded or
// exported. The value lives in trace_var() (a context_var<trace_context>), so
// it follows the work like any variable: threads, pools, tasks, coroutines.
// propagation.hpp writes it into `traceparent`/`tracestate` headers, and
// ctxvars::http / ctxvars::grpc send a child span (same trace-id, a new
// parent-id) with every outgoing request.
//
// How ids are made: a per-thread std::mt19937_64 seeded from std::random_device
// (256 bits of seed), reseeded in a child process after fork() so that the
// parent and the child never repeat each other's ids. Every id is drawn whole
// from it, so a new trace-id is random in all 16 bytes: a trace this process
// starts carries the Level 2 random flag (0x02). An all-zero id (invalid) is
// never returned. Not a cryptographic generator: ids are unpredictable enough
// for tracing, not for secrets.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <type_traits>

#include "context.hpp"
#include "context_var.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace ctxvars {

namespace detail {
inline constexpr char hex_digits[] = "0123456789abcdef";
}

// A `traceparent`: version, trace id, parent (span) id and flags.
struct trace_parent {
  std::uint8_t version = 0;
  std::array<std::uint8_t, 16> trace_id{};
  std::array<std::uint8_t, 8> parent_id{};
  std::uint8_t flags = 0;

  bool sampled() const noexcept { return flags & 1; }
  // Level 2: the trace-id's right-most 7 bytes (at least) are random.
  bool random() const noexcept { return flags & 2; }
  std::string trace_id_hex() const { return hex(trace_id.data(), trace_id.size()); }
  std::string parent_id_hex() const { return hex(parent_id.data(), parent_id.size()); }
  friend bool operator==(const trace_parent&, const trace_parent&) = default;

  static std::string hex(const std::uint8_t* p, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
      s += detail::hex_digits[p[i] >> 4];
      s += detail::hex_digits[p[i] & 15];
    }
    return s;
  }
};

// A trace context as carried by the two headers: the parent and the
// validated `tracestate` in canonical form ("k=v,k2=v2", empty when absent).
// The value trace_var() holds is the context as this process forwards it:
// version 00 (the version we speak) and only the flags this version knows, so
// inject/extract and save/restore give back an equal value.
struct trace_context {
  trace_parent parent;
  std::string tracestate;
  friend bool operator==(const trace_context&, const trace_context&) = default;
};

// The variable holding the current trace context (name "traceparent"). No
// default: outside a trace, try_get() is nullopt.
inline context_var<trace_context>& trace_var() {
  static context_var<trace_context> v("traceparent");
  return v;
}

namespace trace {

inline constexpr std::uint8_t sampled_flag = 0x01;
inline constexpr std::uint8_t random_flag = 0x02;
// The trace-flags this version knows (Level 2); others are sent as zero.
inline constexpr std::uint8_t known_flags = sampled_flag | random_flag;

using trace_id = std::array<std::uint8_t, 16>;
using span_id = std::array<std::uint8_t, 8>;

namespace detail {
// Bumped in the child after fork(): a thread's generator reseeds when it sees
// a new value (the child's only thread inherits the parent's state).
inline std::atomic<std::uint64_t>& fork_generation() {
  static std::atomic<std::uint64_t> g{0};
  return g;
}
inline void note_fork() noexcept { fork_generation().fetch_add(1, std::memory_order_relaxed); }
inline bool register_fork_handler() noexcept {
#if defined(__unix__) || defined(__APPLE__)
  ::pthread_atfork(nullptr, nullptr, &note_fork);
#endif
  return true;
}

struct thread_rng {
  std::mt19937_64 engine;
  std::uint64_t generation = ~std::uint64_t{0};
  void reseed() {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    engine.seed(seq);
  }
};
static_assert(std::is_trivially_destructible_v<thread_rng>);

// This thread's generator. Trivially destructible, so a thread_local
// destructor of the user that makes an id at thread exit is safe.
inline thread_rng& local_rng() {
  static const bool registered = register_fork_handler();
  (void)registered;
  thread_local thread_rng rng;
  const std::uint64_t g = fork_generation().load(std::memory_order_relaxed);
  if (rng.generation != g) {
    rng.reseed();
    rng.generation = g;
  }
  return rng;
}

// Fills `out` with random bytes, never all zero. Cost: a thread_local access
// and one engine step per 8 bytes; the first call on a thread (and the first
// after a fork) reads std::random_device.
template <std::size_t N>
void fill_random(std::array<std::uint8_t, N>& out) {
  thread_rng& rng = local_rng();
  for (;;) {
    std::uint64_t any = 0;
    for (std::size_t i = 0; i < N; i += 8) {
      std::uint64_t w = rng.engine();
      any |= w;
      for (std::size_t k = 0; k < 8 && i + k < N; ++k) out[i + k] = static_cast<std::uint8_t>(w >> (8 * k));
    }
    if (any) return;  // all-zero ids are invalid: draw again (probability 2^-64 per word)
  }
}
}  // namespace detail

// A new random trace-id / span-id (never all zero). Thread-safe, no lock.
inline trace_id new_trace_id() {
  trace_id id;
  detail::fill_random(id);
  return id;
}
inline span_id new_span_id() {
  span_id id;
  detail::fill_random(id);
  return id;
}

// A new trace (value only): random trace-id and span-id, version 00, flags
// random (0x02) plus sampled (0x01) unless `sampled` is false. No tracestate.
inline trace_context new_trace(bool sampled = true) {
  trace_context t;
  t.parent.trace_id = new_trace_id();
  t.parent.parent_id = new_span_id();
  t.parent.flags = random_flag | (sampled ? sampled_flag : 0);
  return t;
}

// A child span of `parent` (value only): the same trace-id, tracestate and
// known flags (the sampling decision and the random flag travel with the
// trace), a new span-id, version 00.
inline trace_context child_of(const trace_context& parent) {
  trace_context t;
  t.parent.trace_id = parent.parent.trace_id;
  t.parent.parent_id = new_span_id();
  t.parent.flags = parent.parent.flags & known_flags;
  t.tracestate = parent.tracestate;
  return t;
}

// The current context's trace context, if any.
inline std::optional<trace_context> current() { return trace_var().try_get(); }

// Sets trace_var() in the current context to a new trace; the token undoes it.
// Allocates (a value box); throws std::bad_alloc (nothing changed).
inline token<trace_context> start_trace(bool sampled = true) { return trace_var().set(new_trace(sampled)); }

// Sets trace_var() in the current context to a child span of the current
// trace context, or to a new trace when there is none; the token undoes it.
inline token<trace_context> start_span() {
  auto cur = current();
  return trace_var().set(cur ? child_of(*cur) : new_trace());
}

}  // namespace trace
}  // namespace ctxvars
