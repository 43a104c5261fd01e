// The layouts of CPython 3.11's context objects and HAMT (Include/internal/
// pycore_context.h, Python/hamt.c), which the carrier reads to learn whether a stdlib
// context shares its mapping with another (carrier.cpp, `exclusive`).
#pragma once

#include <Python.h>

#include <cstdint>
#include <cstring>

namespace ctxvars_python {

// The layout of CPython 3.11's Context object (Include/internal/pycore_context.h): the
// module reads `ctx_vars` to learn whether another stdlib context shares this one's
// mapping (a copy was taken since).
struct stdlib_context_layout {
  PyObject_HEAD
  PyObject* ctx_prev;
  PyObject* ctx_vars;
  PyObject* ctx_weakreflist;
  int ctx_entered;
};
static_assert(PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000,
              "stdlib_context_layout mirrors CPython 3.11");
inline PyObject* vars_of(PyObject* stdlib_ctx) noexcept {
  return reinterpret_cast<stdlib_context_layout*>(stdlib_ctx)->ctx_vars;
}

struct hamt_layout {
  PyObject_HEAD
  PyObject* h_root;
  PyObject* h_weakreflist;
  Py_ssize_t h_count;
};
struct hamt_bitmap_layout {
  PyObject_VAR_HEAD
  uint32_t b_bitmap;
  PyObject* b_array[1];
};
struct hamt_array_layout {
  PyObject_HEAD
  PyObject* a_array[32];
  Py_ssize_t a_count;
};
struct hamt_collision_layout {
  PyObject_VAR_HEAD
  int32_t c_hash;
  PyObject* c_array[1];
};
struct contextvar_layout {  // Include/internal/pycore_context.h
  PyObject_HEAD
  PyObject* var_name;
  PyObject* var_default;
  PyObject* var_cached;
  uint64_t var_cached_tsid;
  uint64_t var_cached_tsver;
  Py_hash_t var_hash;
};

enum class node_kind { bitmap, array, collision, unknown };
inline node_kind kind_of(PyObject* node) noexcept {
  static PyTypeObject *bitmap = nullptr, *array = nullptr, *collision = nullptr;
  PyTypeObject* t = Py_TYPE(node);
  if (t == bitmap) return node_kind::bitmap;
  if (t == array) return node_kind::array;
  if (t == collision) return node_kind::collision;
  if (!std::strcmp(t->tp_name, "hamt_bitmap_node")) return bitmap = t, node_kind::bitmap;
  if (!std::strcmp(t->tp_name, "hamt_array_node")) return array = t, node_kind::array;
  if (!std::strcmp(t->tp_name, "hamt_collision_node")) return collision = t, node_kind::collision;
  return node_kind::unknown;
}

}  // namespace ctxvars_python
