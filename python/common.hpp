// What every file of the Python module shares: an owned PyObject reference that may
// be released on any thread, the entry a context holds for a Python variable, access
// to pybind11 instances, and the C++-exception-to-Python-error boundary.
#pragma once

#include <pybind11/pybind11.h>

#include <ctxvars/ctxvars.hpp>

#include <pthread.h>

#include <cstdio>
#include <string>
#include <utility>

namespace ctxvars_python {

namespace py = pybind11;

// True if the calling thread holds the GIL: the thread state holding it is the one
// CPython keeps for this thread (PyGILState's, thread-specific storage). Compares
// pointers only. Without the GIL the holder's thread state is another thread's, which
// that thread may free at any moment (at its exit): reading a field of it here (the
// thread id, as this function did before) was the data race TSan reported beside C++
// writes without the GIL (issue 18, bug 2).
// That storage's key (CPython's _PyRuntime.gilstate.autoTSSkey), found at import
// (gc_state.cpp): one pthread_getspecific instead of PyGILState_GetThisThreadState's
// two further calls. Null before import, or if it did not check out.
inline const Py_tss_t* gil_tss_key = nullptr;
inline bool this_thread_holds_gil() noexcept {
  PyThreadState* holder = _PyThreadState_UncheckedGet();
  if (!holder) return false;
  const void* mine = CTXVARS_LIKELY(gil_tss_key != nullptr) ? pthread_getspecific(gil_tss_key->_key)
                                                           : PyGILState_GetThisThreadState();
  return holder == mine;
}

// An owned PyObject reference. Copies and destruction may happen where the
// C++ core copies or drops values: copies always under the GIL (inside calls
// from Python); a destruction at thread exit takes the GIL if the interpreter
// is still alive, and otherwise leaks the reference (nothing left to free it).
class pyref {
 public:
  pyref() noexcept = default;
  static pyref borrow(PyObject* o) noexcept {
    Py_XINCREF(o);
    return pyref(o);
  }
  static pyref borrow(const py::handle& h) noexcept { return borrow(h.ptr()); }
  static pyref steal(PyObject* o) noexcept { return pyref(o); }
  pyref(const pyref& o) noexcept : p_(o.p_) { Py_XINCREF(p_); }
  pyref(pyref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  pyref& operator=(pyref o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~pyref() { drop(p_); }
  PyObject* get() const noexcept { return p_; }
  py::object object() const { return py::reinterpret_borrow<py::object>(p_); }
  // Gives up the reference (the caller releases it).
  PyObject* release() noexcept { return std::exchange(p_, nullptr); }
  // Drops two references with one check of the GIL (a value box's entry).
  static void drop_pair(PyObject* a, PyObject* b) noexcept {
    if (!a && !b) return;  // a moved-from entry
    if (CTXVARS_LIKELY(this_thread_holds_gil())) {
      Py_XDECREF(a);
      Py_XDECREF(b);
      return;
    }
    drop(a);
    drop(b);
  }

 private:
  explicit pyref(PyObject* o) noexcept : p_(o) {}
  // The common case (this thread holds the GIL) inline; the rest out of line.
  static void drop(PyObject* o) noexcept {
    if (!o) return;
    if (CTXVARS_LIKELY(this_thread_holds_gil())) {
      Py_DECREF(o);
      return;
    }
    drop_without_gil(o);
  }
  [[gnu::noinline]] static void drop_without_gil(PyObject* o) noexcept {
    // After finalisation (a thread-exit or static destructor) there is no
    // interpreter to give the reference back to.
    if (!Py_IsInitialized()) return;
    if (PyGILState_Check()) {
      Py_DECREF(o);
    } else if (Py_IsInitialized() && !_Py_IsFinalizing()) {
      PyGILState_STATE s = PyGILState_Ensure();
      Py_DECREF(o);
      PyGILState_Release(s);
    }
  }
  PyObject* p_ = nullptr;
};

// A new reference from the C API, or the Python error as an exception.
inline pyref checked(PyObject* new_ref) {
  if (!new_ref) throw py::error_already_set();
  return pyref::steal(new_ref);
}

// What a context holds for a Python variable: the ContextVar object (the key
// Python code iterates over) and the value.
struct py_entry {
  pyref var;
  pyref value;
  py_entry(pyref v, pyref x) noexcept : var(std::move(v)), value(std::move(x)) {}
  py_entry(const py_entry&) noexcept = default;
  py_entry(py_entry&&) noexcept = default;
  py_entry& operator=(const py_entry&) noexcept = default;
  py_entry& operator=(py_entry&&) noexcept = default;
  // One check of the GIL for both references.
  ~py_entry() { pyref::drop_pair(var.release(), value.release()); }
};

// Marks a context the module made (before any other thread can reach it) as
// serialised by the GIL: Python code reads and writes it holding the GIL, and C++ code
// lent it by calling_context runs with the write hook installed (bridge.cpp), so its
// writer skips the core's writer lock otherwise (context_impl::needs_lock).
inline ctxvars::context& gil_serialized(ctxvars::context& c) noexcept {
  ctxvars::detail::context_access::impl(c)->set_externally_serialized();
  return c;
}

// Token.MISSING; deliberately never released (it must outlive every token,
// including those destroyed after the interpreter finalised).
inline PyObject* missing_sentinel = nullptr;

inline std::string repr_of(PyObject* o) {
  return py::str(py::repr(py::handle(o))).cast<std::string>();
}
inline std::string address_of(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

// ---- Access to pybind11 instances ---------------------------------------------------

// The C++ object inside a pybind11 instance of a simple (single, non-polymorphic) type,
// or nullptr if it was never built: the garbage collector may visit an instance whose
// __init__ never ran (Context.__new__(Context), or __init__ raised).
template <class T>
T* built(PyObject* self) noexcept {
  auto* inst = reinterpret_cast<py::detail::instance*>(self);
  if (!inst->simple_layout || !inst->simple_holder_constructed) return nullptr;
  return static_cast<T*>(inst->simple_value_holder[0]);
}


// No automatic collection (and so no finalizer) for the scope: for windows between
// reading state and publishing what was built from it, when the publishing allocates.
struct gc_paused {
  int was_enabled = PyGC_Disable();
  gc_paused() = default;
  gc_paused(const gc_paused&) = delete;
  gc_paused& operator=(const gc_paused&) = delete;
  ~gc_paused() {
    if (was_enabled) PyGC_Enable();
  }
};

// Runs f() and turns C++ exceptions into a Python error (returns nullptr).
template <class F>
PyObject* guarded(F&& f) noexcept {
  try {
    return f();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

}  // namespace ctxvars_python
