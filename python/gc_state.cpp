// The collector's state (gc_state.hpp), read through CPython 3.11's internal headers.
#define Py_BUILD_CORE 1
#include <Python.h>
// pycore_atomic.h includes C11's <stdatomic.h> (not C++) when the interpreter was built
// with it; its GCC-builtin variant declares the same fields as plain integers (same
// size and alignment), and compiles as C++. Only offsets are taken here.
#undef HAVE_STD_ATOMIC
#include <internal/pycore_interp.h>
#include <internal/pycore_runtime.h>

#include "gc_state.hpp"

#include <pthread.h>

static_assert(PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000,
              "gc_state.cpp reads CPython 3.11's collector state");
static_assert(NUM_GENERATIONS == 3, "three generations");

namespace ctxvars_python {

found_collector find_collector() noexcept {
  found_collector f;
  PyInterpreterState* interp = PyInterpreterState_Get();
  _gc_runtime_state* g = &interp->gc;
  f.view.collecting = &g->collecting;
  for (int i = 0; i < 3; ++i) {
    f.view.collections[i] = &g->generation_stats[i].collections;
    f.view.generation_heads[i] = &g->generations[i].head;
  }
  // Check the layout against what the gc module shows.
  PyObject* gc = PyImport_ImportModule("gc");
  if (!gc) {
    PyErr_Clear();
    return f;
  }
  PyObject* callbacks = PyObject_GetAttrString(gc, "callbacks");
  PyObject* garbage = PyObject_GetAttrString(gc, "garbage");
  PyObject* threshold = PyObject_CallMethod(gc, "get_threshold", nullptr);
  bool ok = callbacks && garbage && threshold && callbacks == g->callbacks && garbage == g->garbage &&
            g->generation0 == &g->generations[0].head && PyTuple_Check(threshold) && PyTuple_GET_SIZE(threshold) == 3;
  for (int i = 0; ok && i < 3; ++i) {
    const long t = PyLong_AsLong(PyTuple_GET_ITEM(threshold, i));
    ok = t == g->generations[i].threshold;
  }
  if (PyErr_Occurred()) {
    PyErr_Clear();
    ok = false;
  }
  Py_XDECREF(callbacks);
  Py_XDECREF(garbage);
  Py_XDECREF(threshold);
  Py_DECREF(gc);
  f.ok = ok;
  return f;
}

const Py_tss_t* find_gil_tss_key() noexcept {
  const Py_tss_t* key = &_PyRuntime.gilstate.autoTSSkey;
  if (!PyThread_tss_is_created(const_cast<Py_tss_t*>(key))) return nullptr;
  PyThreadState* mine = PyGILState_GetThisThreadState();
  if (!mine || pthread_getspecific(key->_key) != mine || _PyThreadState_UncheckedGet() != mine) return nullptr;
  return key;
}

}  // namespace ctxvars_python
