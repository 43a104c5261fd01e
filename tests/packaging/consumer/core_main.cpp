#include <ctxvars/ctxvars.hpp>

#include <cstdio>
#include <cstring>

ctxvars::context_var<int> request_id("request_id", 0);

int main() {
  auto t = request_id.set(42);
  const int inside = ctxvars::copy_context().run([] { return request_id.get(); });
  request_id.reset(t);
  std::printf("consumer: %d %d (ctxvars %s)\n", inside, request_id.get(), CTXVARS_VERSION_STRING);
#ifdef CTXVARS_EXPECTED_VERSION
  if (std::strcmp(CTXVARS_VERSION_STRING, CTXVARS_EXPECTED_VERSION) != 0) {
    std::printf("consumer: <ctxvars/version.hpp> says %s, the CMake package %s\n",
                CTXVARS_VERSION_STRING, CTXVARS_EXPECTED_VERSION);
    return 1;
  }
#endif
  return (inside == 42 && request_id.get() == 0) ? 0 : 1;
}
