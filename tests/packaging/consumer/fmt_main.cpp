// ctxvars::fmt: fmt::format of a context (CTXVARS_WITH_FMT comes with the target).
#include <ctxvars/ctxvars.hpp>
#include <ctxvars/format.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <string>

#ifndef CTXVARS_WITH_FMT
#error "ctxvars::fmt did not define CTXVARS_WITH_FMT"
#endif

ctxvars::context_var<std::string> request_id("request_id");
ctxvars::context_var<int> attempt("attempt");

int main() {
  const std::string got = ctxvars::context().run([] {
    auto a = request_id.scoped_set("c1-r2");
    auto b = attempt.scoped_set(3);
    return fmt::format("[{}]", ctxvars::copy_context());
  });
  std::printf("consumer_fmt: %s\n", got.c_str());
  return got == "[attempt=3 request_id=c1-r2]" ? 0 : 1;
}
