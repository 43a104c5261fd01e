// A test extension for python/tests/test_bridge.py: C++ code with ctxvars variables,
// called from Python under calling_context, the way python.md tells extension authors
// to write it. Two std::string variables are exposed (with request_log's, three).
#include <ctxvars/python.hpp>

#include <memory>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

ctxvars::context_var<std::string> tenant("tenant", "-");
ctxvars::context_var<std::string> region("region", "-");
ctxvars::context_var<int> counter("counter", 0);
// Enough variables that a context's write logs fill and fold (freeing layers and nodes).
std::vector<std::unique_ptr<ctxvars::context_var<std::string>>> many = [] {
  std::vector<std::unique_ptr<ctxvars::context_var<std::string>>> v;
  for (int i = 0; i < 40; ++i)
    v.push_back(std::make_unique<ctxvars::context_var<std::string>>("many" + std::to_string(i), ""));
  return v;
}();

// Sets tenant, calls back into Python, sets it again: what the callback copied
// (copy_context, a new task) must keep the first value.
void set_call_set(const std::string& first, const py::function& callback, const std::string& second) {
  (void)tenant.set(first);
  callback();
  (void)tenant.set(second);
}

// Many writes without the GIL (each a fresh string; the context's layers fold and
// free nodes), while other threads may collect garbage.
void write_many(int n) {
  for (int i = 0; i < n; ++i) {
    (void)counter.set(i);
    (void)many[static_cast<std::size_t>(i) % many.size()]->set(std::to_string(i));
    (void)tenant.set("t" + std::to_string(i));
  }
}

}  // namespace

PYBIND11_MODULE(bridge_ext, m) {
  using ctxvars::python::calling_context;
  m.def("set_call_set", &set_call_set, py::call_guard<calling_context>());
  m.def("set_tenant", [](const std::string& t) { (void)tenant.set(t); }, py::call_guard<calling_context>());
  m.def("tenant", [] { return tenant.get(); }, py::call_guard<calling_context>());
  m.def("write_many", &write_many, py::call_guard<calling_context, py::gil_scoped_release>());
  ctxvars::python::expose(m, "tenant_var", tenant);
  ctxvars::python::expose(m, "region_var", region);  // a second std::string variable
}
