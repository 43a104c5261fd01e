// ctxvars/config.hpp — every configuration macro of the library, in one place.
//
//   CTXVARS_CACHE_SIZE      Entries in each thread's direct-mapped cache of
//                           variable lookups (power of two; default 128). Larger
//                           caches keep more variables hot at ~24 bytes each per
//                           thread.
//   CTXVARS_SPARE_BOXES     Recycled value-box shells kept per thread (power of
//                           two; default 64), one per variable slot.
//   CTXVARS_DEBUG_CHECKS    0 (default) or 1: debug checks (CMake option of the same
//                           name; docs/beyond-python.md). With 1: set() takes a
//                           defaulted ctxvars::debug::source_location
//                           (std::source_location; an equivalent on clang 14,
//                           whose libstdc++ lacks it), so &context_var<T>::set
//                           has another type, each value remembers where it was
//                           set and the context printers show it
//                           (`name.set_at=file:line`), a set() into a thread's own
//                           base context from inside a thread_pool job or an
//                           Asio handler is reported once per call site
//                           (ctxvars::debug::set_leak_handler), and live tasks
//                           are listed by ctxvars::debug::dump_tasks. With 0
//                           (the default) none of this is compiled: set() and get()
//                           are unchanged. Must be the same in every translation
//                           unit of a program and in the library build (it
//                           changes a value box's layout): the CMake option sets
//                           it for ctxvars::ctxvars and its users.
//   CTXVARS_LIKELY / CTXVARS_UNLIKELY / CTXVARS_NOINLINE / CTXVARS_ALWAYS_INLINE
//                           Portable spellings of compiler hints (internal).
#pragma once

// The first thing every ctxvars header checks (each includes this file before
// anything else that could fail): the language level. (MSVC reports its
// level in _MSVC_LANG; __cplusplus stays 199711L without /Zc:__cplusplus.)
#if !((defined(_MSVC_LANG) && _MSVC_LANG >= 202002L) || __cplusplus >= 202002L)
#error "ctxvars needs C++20: compile with -std=c++20 or later (in CMake, linking ctxvars::ctxvars asks for it)"
// Compilers go on after #error; a missing header stops them, so the message
// above is not buried under a hundred errors from C++20 code that follows.
#include <ctxvars_needs_cxx20_see_the_error_above>
#endif

#ifndef CTXVARS_CACHE_SIZE
#define CTXVARS_CACHE_SIZE 128
#endif

#ifndef CTXVARS_SPARE_BOXES
#define CTXVARS_SPARE_BOXES 64
#endif

#ifndef CTXVARS_DEBUG_CHECKS
#define CTXVARS_DEBUG_CHECKS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CTXVARS_LIKELY(x) __builtin_expect(!!(x), 1)
#define CTXVARS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CTXVARS_NOINLINE __attribute__((noinline))
#define CTXVARS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define CTXVARS_LIKELY(x) (x)
#define CTXVARS_UNLIKELY(x) (x)
#define CTXVARS_NOINLINE
#define CTXVARS_ALWAYS_INLINE inline
#endif

static_assert((CTXVARS_SPARE_BOXES & (CTXVARS_SPARE_BOXES - 1)) == 0,
              "CTXVARS_SPARE_BOXES must be a power of two");
static_assert((CTXVARS_CACHE_SIZE & (CTXVARS_CACHE_SIZE - 1)) == 0,
              "CTXVARS_CACHE_SIZE must be a power of two");
