// ctxvars::http: inject a registered variable into a Beast request, extract it back.
#include <ctxvars/ctxvars.hpp>
#include <ctxvars/http.hpp>

#include <cstdio>
#include <string>

ctxvars::context_var<std::string> tenant("tenant");

int main() {
  ctxvars::registry::global().add(tenant);
  ctxvars::http::request req(ctxvars::http::bhttp::verb::get, "/", 11);
  ctxvars::context().run([&] {
    auto s = tenant.scoped_set("acme");
    ctxvars::http::inject(req);
  });
  const std::string baggage(req["baggage"]);
  const std::string back = ctxvars::http::extract(req, ctxvars::context()).run([] { return tenant.get(""); });
  std::printf("consumer_http: baggage: %s, extracted: %s\n", baggage.c_str(), back.c_str());
  return (baggage == "tenant=acme" && back == "acme") ? 0 : 1;
}
