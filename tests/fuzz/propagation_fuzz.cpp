// libFuzzer target for the header and snapshot parsers (propagation.hpp,
// snapshot.hpp). The first byte picks the parser, the rest is its input.
// Checks: every input either parses or throws ctxvars::parse_error (anything
// else aborts); extract() never throws it; what parses formats back to text
// that parses to the same thing; extract/restore leave their base unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/propagation.hpp"
#include "ctxvars/snapshot.hpp"

namespace {

#define CHECK(x)                                                    \
  do {                                                              \
    if (!(x)) {                                                     \
      __builtin_fprintf(stderr, "check failed: %s (line %d)\n", #x, __LINE__); \
      std::abort();                                                 \
    }                                                               \
  } while (0)

struct world {
  ctxvars::registry reg;
  ctxvars::context_var<std::string> s{"s"};
  ctxvars::context_var<long> n{"n"};
  ctxvars::context_var<bool> b{"b"};
  ctxvars::context base;
  world() {
    reg.add(s);
    reg.add(n);
    reg.add(b);
    reg.add(ctxvars::trace_var());
    base.run([&] { s.set("base"); });
  }
};

void baggage(std::string_view in) {
  auto ms = ctxvars::parse_baggage(in);
  std::string out;
  try {
    out = ctxvars::format_baggage(ms);
  } catch (const ctxvars::parse_error&) {
    return;  // percent-encoding grew it past 8192 bytes
  }
  CHECK(ctxvars::parse_baggage(out) == ms);
}

void traceparent(std::string_view in) {
  auto p = ctxvars::parse_traceparent(in);
  const std::string out = ctxvars::format_traceparent(p);
  // Only the flags this version knows are written.
  if (p.version == 0 && (p.flags & ~ctxvars::trace::known_flags) == 0) CHECK(out == in);
  auto q = ctxvars::parse_traceparent(out);
  q.version = p.version;
  CHECK(q.flags == (p.flags & ctxvars::trace::known_flags));
  q.flags = p.flags;
  CHECK(q == p);
}

void tracestate(std::string_view in) {
  auto ms = ctxvars::parse_tracestate(in);
  CHECK(ctxvars::parse_tracestate(ctxvars::format_tracestate(ms)) == ms);
}

void extract(world& w, std::string_view in) {
  // "traceparent\ntracestate\nbaggage"
  std::string_view parts[3];
  for (int i = 0; i < 3; ++i) {
    const std::size_t nl = in.find('\n');
    parts[i] = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  }
  // The receiver rules: extract() drops what is malformed, it never throws it.
  ctxvars::context c;
  try {
    c = ctxvars::extract({parts[0], parts[1], parts[2]}, w.base, w.reg);
  } catch (const ctxvars::parse_error&) {
    const bool extract_threw_parse_error = true;
    CHECK(!extract_threw_parse_error);
  }
  try {
    // Round trip: what we would send parses to the same values (inject may
    // refuse a value whose encoding grows past the baggage limit).
    auto hs = ctxvars::inject(c, w.reg);
    ctxvars::incoming_headers h;
    for (auto& [k, v] : hs) (k == "traceparent" ? h.traceparent : k == "tracestate" ? h.tracestate : h.baggage) = v;
    ctxvars::context d = ctxvars::extract(h, ctxvars::context(), w.reg);
    CHECK(d.get(w.s) == c.get(w.s));
    CHECK(d.get(w.n) == c.get(w.n));
    CHECK(d.get(w.b) == c.get(w.b));
    CHECK(d.get(ctxvars::trace_var()) == c.get(ctxvars::trace_var()));
  } catch (const ctxvars::parse_error&) {
  }
  CHECK(w.base.size() == 1 && w.base.get(w.s) == "base");
}

void snapshot(world& w, std::string_view in) {
  try {
    auto r = ctxvars::restore_snapshot(in, w.base, w.reg);
    auto again = ctxvars::restore_snapshot(ctxvars::save_snapshot(r.ctx, w.reg), ctxvars::context(), w.reg);
    CHECK(again.unknown.empty());
    CHECK(again.ctx.get(w.s) == r.ctx.get(w.s));
    CHECK(again.ctx.get(w.n) == r.ctx.get(w.n));
    CHECK(again.ctx.get(w.b) == r.ctx.get(w.b));
  } catch (const ctxvars::parse_error&) {
  }
  CHECK(w.base.size() == 1 && w.base.get(w.s) == "base");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static world w;
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 5) {
      case 0: baggage(in); break;
      case 1: traceparent(in); break;
      case 2: tracestate(in); break;
      case 3: extract(w, in); break;
      case 4: snapshot(w, in); break;
    }
  } catch (const ctxvars::parse_error&) {
  }
  return 0;
}
