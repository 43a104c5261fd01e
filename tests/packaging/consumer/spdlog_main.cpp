// ctxvars::spdlog: a log line with the context flag %&.
#include <ctxvars/ctxvars.hpp>
#include <ctxvars/spdlog.hpp>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <sstream>
#include <string>

ctxvars::context_var<std::string> request_id("request_id");
ctxvars::context_var<std::string> tenant("tenant");

int main() {
  std::ostringstream os;
  auto log = std::make_shared<spdlog::logger>("consumer", std::make_shared<spdlog::sinks::ostream_sink_st>(os));
  log->set_formatter(ctxvars::spdlog::formatter("%v |%&|"));
  ctxvars::context().run([&] {
    auto a = request_id.scoped_set("c1-r2");
    auto b = tenant.scoped_set("acme corp");
    log->info("charged");
  });
  log->info("outside");
  const std::string got = os.str();
  std::printf("consumer_spdlog:\n%s", got.c_str());
  return got == "charged |request_id=c1-r2 tenant=\"acme corp\"|\noutside ||\n" ? 0 : 1;
}
