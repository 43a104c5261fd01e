// Where CPython 3.11 keeps its cycle collector's state (struct _gc_runtime_state in
// Include/internal/pycore_gc.h), as far as gc.cpp reads it: to tell one collection
// from the next, and the reachability pass from the others. gc_state.cpp is the only
// file of the module built against CPython's internal headers.
#pragma once

#include <Python.h>

#include <cstdint>

namespace ctxvars_python {

struct collector_view {
  const int* collecting = nullptr;            // true while a collection runs
  const Py_ssize_t* collections[3] = {};      // per generation, incremented as each collection ends
  const void* generation_heads[3] = {};       // the lists move_unreachable() passes as `arg`
  // Collections finished so far: constant from a collection's start to its end.
  std::uint64_t finished() const noexcept {
    return static_cast<std::uint64_t>(*collections[0]) + static_cast<std::uint64_t>(*collections[1]) +
           static_cast<std::uint64_t>(*collections[2]);
  }
};

// The collector of the calling thread's interpreter (needs the GIL). `ok` is false
// unless what the internal header describes matches what the gc module shows
// (gc.callbacks, gc.garbage, gc.get_threshold()); then nothing else may be used.
struct found_collector {
  collector_view view;
  bool ok = false;
};
found_collector find_collector() noexcept;

// The key of the thread-specific storage where CPython keeps each thread's own thread
// state (PyGILState's), if it checks out on the calling thread (which holds the GIL);
// else null.
const Py_tss_t* find_gil_tss_key() noexcept;

}  // namespace ctxvars_python
