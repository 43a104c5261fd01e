// CPython 3.11's contextvars C API in the same binary as ctxvars, at the same
// sizes, so docs/benchmarks.md can put them side by side.
#include <Python.h>
#include <benchmark/benchmark.h>

#include "baseline.hpp"

#include <ctxvars/ctxvars.hpp>

#include <memory>
#include <string>
#include <vector>

namespace {

using ctxvars_bench::BM_ThreadLocal_Read;
BENCHMARK(BM_ThreadLocal_Read);

struct python {
  python() { Py_InitializeEx(0); }
};
void ensure_python() { static python p; }

using ctxvars_bench::max_vars;
std::vector<PyObject*>& pyvars() {
  static auto* v = [] {
    ensure_python();
    auto* p = new std::vector<PyObject*>;
    PyObject* dflt = PyLong_FromLong(-1);
    for (int i = 0; i < max_vars; ++i) p->push_back(PyContextVar_New(("v" + std::to_string(i)).c_str(), dflt));
    return p;
  }();
  return *v;
}

// Enters a fresh context with n variables set, runs body, exits.
template <class F>
void with_py_vars(int n, F body) {
  ensure_python();
  auto& vs = pyvars();
  PyObject* ctx = PyContext_New();
  PyContext_Enter(ctx);
  for (int i = 0; i < n; ++i) {
    PyObject* val = PyLong_FromLong(i);
    PyObject* tok = PyContextVar_Set(vs[static_cast<std::size_t>(i)], val);
    Py_DECREF(tok);
    Py_DECREF(val);
  }
  body();
  PyContext_Exit(ctx);
  Py_DECREF(ctx);
}

void BM_CPython_GetCached(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_py_vars(n, [&] {
    PyObject* v = pyvars()[static_cast<std::size_t>(n - 1)];
    for (auto _ : state) {
      PyObject* out = nullptr;
      PyContextVar_Get(v, nullptr, &out);
      benchmark::DoNotOptimize(out);
      Py_XDECREF(out);
    }
  });
}
BENCHMARK(BM_CPython_GetCached)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);

// Uncached: the set+reset of another variable before each get invalidates
// CPython's per-variable cache; BM_CPython_SetReset is measured too, so the
// uncached get is the difference.
void BM_CPython_GetAfterSet(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_py_vars(n, [&] {
    PyObject* v = pyvars()[static_cast<std::size_t>(n - 1)];
    PyObject* w = pyvars()[static_cast<std::size_t>(max_vars - 2)];
    PyObject* one = PyLong_FromLong(1);
    for (auto _ : state) {
      PyObject* tok = PyContextVar_Set(w, one);
      PyContextVar_Reset(w, tok);
      Py_DECREF(tok);
      PyObject* out = nullptr;
      PyContextVar_Get(v, nullptr, &out);
      benchmark::DoNotOptimize(out);
      Py_XDECREF(out);
    }
    Py_DECREF(one);
  });
}
BENCHMARK(BM_CPython_GetAfterSet)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);

void BM_CPython_GetDefault(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_py_vars(n, [&] {
    PyObject* v = pyvars()[static_cast<std::size_t>(max_vars - 1)];
    for (auto _ : state) {
      PyObject* out = nullptr;
      PyContextVar_Get(v, nullptr, &out);
      benchmark::DoNotOptimize(out);
      Py_XDECREF(out);
    }
  });
}
BENCHMARK(BM_CPython_GetDefault)->Arg(8)->Arg(1000);

void BM_CPython_SetReset(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_py_vars(n, [&] {
    PyObject* v = pyvars()[static_cast<std::size_t>(n - 1)];
    PyObject* seven = PyLong_FromLong(7);
    for (auto _ : state) {
      PyObject* tok = PyContextVar_Set(v, seven);
      PyContextVar_Reset(v, tok);
      Py_DECREF(tok);
    }
    Py_DECREF(seven);
  });
}
BENCHMARK(BM_CPython_SetReset)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);

void BM_CPython_CopyCurrent(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_py_vars(n, [&] {
    for (auto _ : state) {
      PyObject* c = PyContext_CopyCurrent();
      benchmark::DoNotOptimize(c);
      Py_DECREF(c);
    }
  });
}
BENCHMARK(BM_CPython_CopyCurrent)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);

void BM_CPython_EnterExit(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  PyObject* c = nullptr;
  with_py_vars(n, [&] { c = PyContext_CopyCurrent(); });
  for (auto _ : state) {
    PyContext_Enter(c);
    PyContext_Exit(c);
  }
  Py_DECREF(c);
}
BENCHMARK(BM_CPython_EnterExit)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);

// A server's per-request path (issue 11): the server's context holds n
// variables; each request copies it, enters the copy, sets 3 variables the
// server never set (request id, tenant, deadline), reads them 20 times and
// leaves; the copy dies with the request. And the smallest request: copy,
// enter, 1 set, leave.
constexpr int request_sets = 3, request_gets = 20;
void BM_CPython_Request(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_py_vars(n, [&] {
    PyObject* rv[request_sets];
    PyObject* vals[request_sets];
    for (int i = 0; i < request_sets; ++i) {
      rv[i] = pyvars()[static_cast<std::size_t>(max_vars - 10 + i)];
      vals[i] = PyLong_FromLong(100 + i);
    }
    for (auto _ : state) {
      PyObject* c = PyContext_CopyCurrent();
      PyContext_Enter(c);
      for (int i = 0; i < request_sets; ++i) Py_DECREF(PyContextVar_Set(rv[i], vals[i]));
      for (int i = 0; i < request_gets; ++i) {
        PyObject* out = nullptr;
        PyContextVar_Get(rv[i % request_sets], nullptr, &out);
        benchmark::DoNotOptimize(out);
        Py_XDECREF(out);
      }
      PyContext_Exit(c);
      Py_DECREF(c);
    }
    for (PyObject* v : vals) Py_DECREF(v);
  });
}
BENCHMARK(BM_CPython_Request)->Arg(8)->Arg(1000)->Arg(100000);

void BM_CPython_SetAfterCopy(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_py_vars(n, [&] {
    PyObject* v = pyvars()[static_cast<std::size_t>(max_vars - 10)];
    PyObject* val = PyLong_FromLong(100);
    for (auto _ : state) {
      PyObject* c = PyContext_CopyCurrent();
      PyContext_Enter(c);
      Py_DECREF(PyContextVar_Set(v, val));
      PyContext_Exit(c);
      Py_DECREF(c);
    }
    Py_DECREF(val);
  });
}
BENCHMARK(BM_CPython_SetAfterCopy)->Arg(8)->Arg(1000)->Arg(100000);

// ctxvars at the same sizes, in the same process.
using ctxvars_bench::vars;
using ctxvars_bench::with_vars;
void BM_Ctxvars_Get(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_vars(n, [&] {
    auto& v = *vars()[static_cast<std::size_t>(n - 1)];
    for (auto _ : state) benchmark::DoNotOptimize(v.get());
  });
}
BENCHMARK(BM_Ctxvars_Get)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);
// The same sequence as BM_CPython_GetAfterSet: set+reset of another
// variable, then get (ctxvars' set leaves other variables' cache slots valid).
void BM_Ctxvars_GetAfterSet(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_vars(n, [&] {
    auto& v = *vars()[static_cast<std::size_t>(n - 1)];
    auto& w = *vars()[static_cast<std::size_t>(max_vars - 2)];
    for (auto _ : state) {
      auto t = w.set(1);
      w.reset(t);
      benchmark::DoNotOptimize(v.get());
    }
  });
}
BENCHMARK(BM_Ctxvars_GetAfterSet)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);

void BM_Ctxvars_SetReset(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_vars(n, [&] {
    auto& v = *vars()[static_cast<std::size_t>(n - 1)];
    for (auto _ : state) {
      auto t = v.set(7);
      v.reset(t);
    }
  });
}
BENCHMARK(BM_Ctxvars_SetReset)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);
void BM_Ctxvars_CopyContext(benchmark::State& state) {
  with_vars(static_cast<int>(state.range(0)), [&] {
    for (auto _ : state) benchmark::DoNotOptimize(ctxvars::copy_context());
  });
}
BENCHMARK(BM_Ctxvars_CopyContext)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);
void BM_Ctxvars_Run(benchmark::State& state) {
  ctxvars::context c;
  with_vars(static_cast<int>(state.range(0)), [&] { c = ctxvars::copy_context(); });
  for (auto _ : state) c.run([] { benchmark::ClobberMemory(); });
}
BENCHMARK(BM_Ctxvars_Run)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);

// The same request paths in ctxvars.
void BM_Ctxvars_Request(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_vars(n, [&] {
    ctxvars::context_var<int>* rv[request_sets];
    for (int i = 0; i < request_sets; ++i) rv[i] = vars()[static_cast<std::size_t>(max_vars - 10 + i)].get();
    for (auto _ : state) {
      ctxvars::copy_context().run([&] {
        for (int i = 0; i < request_sets; ++i) (void)rv[i]->set(100 + i);
        for (int i = 0; i < request_gets; ++i) benchmark::DoNotOptimize(rv[i % request_sets]->get());
      });
    }
  });
}
BENCHMARK(BM_Ctxvars_Request)->Arg(8)->Arg(1000)->Arg(100000);

void BM_Ctxvars_SetAfterCopy(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_vars(n, [&] {
    auto& v = *vars()[static_cast<std::size_t>(max_vars - 10)];
    for (auto _ : state) ctxvars::copy_context().run([&] { (void)v.set(100); });
  });
}
BENCHMARK(BM_Ctxvars_SetAfterCopy)->Arg(8)->Arg(1000)->Arg(100000);

}  // namespace

BENCHMARK_MAIN();
