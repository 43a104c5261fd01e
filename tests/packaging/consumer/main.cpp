#include <ctxvars/ctxvars.hpp>

#include <cstdio>

ctxvars::context_var<int> request_id("request_id", 0);

int main() {
  auto t = request_id.set(42);
  const int inside = ctxvars::copy_context().run([] { return request_id.get(); });
  request_id.reset(t);
  std::printf("consumer: %d %d\n", inside, request_id.get());
  return (inside == 42 && request_id.get() == 0) ? 0 : 1;
}
