#include "ctxvars/propagation.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "ctxvars/ctxvars.hpp"

namespace {

using ctxvars::parse_error;

// A registry of its own per test, so tests do not see each other's variables.
struct Vars {
  ctxvars::registry reg;
  ctxvars::context_var<std::string> tenant{"tenant"};
  ctxvars::context_var<std::string> request{"request_id"};
  ctxvars::context_var<int> retries{"retries"};
  Vars() {
    reg.add(tenant);
    reg.add(request);
    reg.add(retries);
  }
};

TEST(Baggage, ParsesKeysValuesPropertiesAndWhitespace) {
  auto ms = ctxvars::parse_baggage(" a = 1 ;p1; p2 = x ,b=hello%20world%2C%25 ,c=");
  ASSERT_EQ(ms.size(), 3u);
  EXPECT_EQ(ms[0].key, "a");
  EXPECT_EQ(ms[0].value, "1");
  EXPECT_EQ(ms[0].properties, (std::vector<std::string>{"p1", "p2=x"}));
  EXPECT_EQ(ms[1].value, "hello world,%");
  EXPECT_EQ(ms[2].value, "");
}

TEST(Baggage, EmptyHeaderIsAnEmptyList) {
  EXPECT_TRUE(ctxvars::parse_baggage("").empty());
  EXPECT_TRUE(ctxvars::parse_baggage(" \t ").empty());
}

TEST(Baggage, MalformedHeadersAreRejectedWithTheirFault) {
  const char* bad[] = {",",      "a",        "a=1,",      "a=1,,b=2", "=1",         "a b=1",     "a=1 2",
                       "a=\"x\"", "a=%",      "a=%4",      "a=%zz",    "a=1;",       "a=1;=x",    "a=x\\y",
                       "k\x01=v",  "a=1;p=\"q\"", "a=1;p=%g0"};
  for (const char* h : bad) EXPECT_THROW(ctxvars::parse_baggage(h), parse_error) << h;
  try {
    ctxvars::parse_baggage("a=1,b=%zz");
    FAIL();
  } catch (const parse_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad percent-escape in the value of 'b'"), std::string::npos) << e.what();
  }
}

TEST(Baggage, DuplicateKeysAreAcceptedInOrderAsTheSpecDoesNotMakeThemUnique) {
  auto ms = ctxvars::parse_baggage("a=1,b=2,a=3");
  ASSERT_EQ(ms.size(), 3u);
  EXPECT_EQ(ms[2].key, "a");
  EXPECT_EQ(ms[2].value, "3");
  EXPECT_EQ(ctxvars::format_baggage(ms), "a=1,b=2,a=3");
}

TEST(Baggage, PercentEncodedOctetsThatAreNotUtf8BecomeTheReplacementCharacter) {
  // Baggage: "percent-encoded octet sequences that do not match the UTF-8
  // encoding scheme MUST be replaced with the replacement code point".
  EXPECT_EQ(ctxvars::parse_baggage("a=%FF")[0].value, "\xEF\xBF\xBD");
  EXPECT_EQ(ctxvars::parse_baggage("a=x%C0%80y")[0].value, "x\xEF\xBF\xBD\xEF\xBF\xBDy");
  EXPECT_EQ(ctxvars::parse_baggage("a=%ED%A0%80")[0].value, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(ctxvars::parse_baggage("a=%C3%A9%E2")[0].value, "\xC3\xA9\xEF\xBF\xBD");
}

TEST(Baggage, LimitsOf180MembersAnd8192BytesAreEnforcedBothWays) {
  std::string h;
  for (int i = 0; i < 180; ++i) h += (i ? ",k" : "k") + std::to_string(i) + "=v";
  EXPECT_EQ(ctxvars::parse_baggage(h).size(), 180u);
  EXPECT_THROW(ctxvars::parse_baggage(h + ",k180=v"), parse_error);
  std::string big = "a=" + std::string(8190, 'x');
  EXPECT_EQ(ctxvars::parse_baggage(big).size(), 1u);
  EXPECT_THROW(ctxvars::parse_baggage(big + "x"), parse_error);
  std::vector<ctxvars::baggage_member> ms{{"a", std::string(8191, 'x'), {}}};
  EXPECT_THROW(ctxvars::format_baggage(ms), parse_error);
  std::vector<ctxvars::baggage_member> many;
  for (int i = 0; i < 181; ++i) many.push_back({"k" + std::to_string(i), "v", {}});
  EXPECT_THROW(ctxvars::format_baggage(many), parse_error);
}

TEST(Baggage, FormatPercentEncodesAndRoundTrips) {
  std::vector<ctxvars::baggage_member> ms{{"user", "Zoë, \"admin\"; 100%", {"p", "q=1"}}, {"b", "", {}}};
  const std::string h = ctxvars::format_baggage(ms);
  EXPECT_EQ(h, "user=Zo%C3%AB%2C%20%22admin%22%3B%20100%25;p;q=1,b=");
  EXPECT_EQ(ctxvars::parse_baggage(h), ms);
}

TEST(Baggage, FormatRejectsBadKeysAndNonUtf8Values) {
  EXPECT_THROW(ctxvars::format_baggage({{"bad key", "v", {}}}), parse_error);
  EXPECT_THROW(ctxvars::format_baggage({{"k", "\xff", {}}}), parse_error);
  EXPECT_THROW(ctxvars::format_baggage({{"k", "v", {"bad prop"}}}), parse_error);
  EXPECT_THROW(ctxvars::format_baggage({{"k", "v", {"p=%zz"}}}), parse_error);
}

TEST(Registry, RefusesNamesThatAreNotKeysAndNamesTakenByAnotherVariable) {
  ctxvars::registry reg;
  ctxvars::context_var<int> spaced("has space");
  EXPECT_THROW(reg.add(spaced), ctxvars::registry_error);
  ctxvars::context_var<int> a("same"), b("same");
  reg.add(a);
  EXPECT_THROW(reg.add(b), ctxvars::registry_error);
  reg.add(a);  // again: replaces its codec
  EXPECT_EQ(reg.size(), 1u);
  EXPECT_TRUE(reg.remove(a));
  EXPECT_FALSE(reg.remove(a));
  reg.add(b);
  EXPECT_TRUE(reg.contains(b));
}

TEST(Propagation, RegisteredVariablesRoundTripThroughBaggage) {
  Vars v;
  ctxvars::context_var<std::string> local("local");  // not registered: stays home
  ctxvars::context src;
  src.run([&] {
    v.tenant.set("acme corp");
    v.request.set("c22-r0");
    v.retries.set(2);
    local.set("secret");
  });
  const std::string h = ctxvars::to_baggage(src, v.reg);
  EXPECT_EQ(h, "request_id=c22-r0,retries=2,tenant=acme%20corp");
  ctxvars::context dst = ctxvars::extract({.baggage = h}, ctxvars::context(), v.reg);
  EXPECT_EQ(dst.get(v.tenant), "acme corp");
  EXPECT_EQ(dst.get(v.request), "c22-r0");
  EXPECT_EQ(dst.get(v.retries), 2);
  EXPECT_FALSE(dst.contains(local));
  EXPECT_EQ(dst.size(), 3u);
}

TEST(Propagation, ExtractKeepsTheBaseAndNeverChangesIt) {
  Vars v;
  ctxvars::context base;
  base.run([&] {
    v.tenant.set("old");
    v.request.set("keep");
  });
  ctxvars::context dst = ctxvars::extract({.baggage = "tenant=new"}, base, v.reg);
  EXPECT_EQ(dst.get(v.tenant), "new");
  EXPECT_EQ(dst.get(v.request), "keep");
  EXPECT_EQ(base.get(v.tenant), "old");
}

TEST(Propagation, UnknownKeysAreReportedNotApplied) {
  Vars v;
  std::vector<ctxvars::baggage_member> unknown;
  ctxvars::context dst = ctxvars::extract({.baggage = "tenant=a,other=x;p"}, ctxvars::context(), v.reg, &unknown);
  EXPECT_EQ(dst.size(), 1u);
  ASSERT_EQ(unknown.size(), 1u);
  EXPECT_EQ(unknown[0].key, "other");
  EXPECT_EQ(unknown[0].properties, std::vector<std::string>{"p"});
}

// Records what extract() reports as malformed, for one test.
struct Reports {
  std::vector<std::string> seen;  // "header: problem"
  ctxvars::malformed_header_handler prev;
  Reports() {
    prev = ctxvars::on_malformed_header([this](const ctxvars::malformed_header& m) {
      seen.push_back(std::string(m.header) + ": " + std::string(m.problem));
    });
  }
  ~Reports() { ctxvars::on_malformed_header(std::move(prev)); }
  bool any(std::string_view part) const {
    for (auto& s : seen)
      if (s.find(part) != std::string::npos) return true;
    return false;
  }
};

TEST(Propagation, AValueItsCodecRejectsIsDroppedAndReportedAndTheOthersApplied) {
  Vars v;
  Reports rep;
  ctxvars::context base;
  std::vector<ctxvars::baggage_member> unknown;
  auto c = ctxvars::extract({.baggage = "tenant=a,other=b,retries=two"}, base, v.reg, &unknown);
  EXPECT_EQ(c.get(v.tenant), "a");
  EXPECT_FALSE(c.contains(v.retries));
  ASSERT_EQ(unknown.size(), 1u);
  EXPECT_TRUE(rep.any("baggage: value of 'retries' rejected by its codec")) << rep.seen.size();
  EXPECT_EQ(base.size(), 0u);
  EXPECT_FALSE(ctxvars::extract({.baggage = "retries=99999999999999999999"}, base, v.reg).contains(v.retries));
  EXPECT_FALSE(ctxvars::extract({.baggage = "retries=1x"}, base, v.reg).contains(v.retries));
  EXPECT_EQ(rep.seen.size(), 3u);
}

TEST(Propagation, AMalformedTraceparentIsIgnoredAndTheBaggageBesideItKept) {
  Vars v;
  Reports rep;
  ctxvars::context base;
  auto c = ctxvars::extract({.traceparent = "00-zz", .tracestate = "a=1", .baggage = "tenant=a"}, base, v.reg);
  EXPECT_FALSE(c.contains(ctxvars::trace_var()));
  EXPECT_EQ(c.get(v.tenant), "a");
  EXPECT_EQ(base.size(), 0u);
  EXPECT_TRUE(rep.any("traceparent: ctxvars: invalid traceparent header: shorter than 55"));
}

TEST(Propagation, AnAllZeroTraceIdIgnoresTheTraceparentAndKeepsTheValidBaggage) {
  Vars v;
  Reports rep;
  auto c = ctxvars::extract(
      {.traceparent = "00-00000000000000000000000000000000-00f067aa0ba902b7-01", .baggage = "tenant=a"},
      ctxvars::context(), v.reg);
  EXPECT_FALSE(c.contains(ctxvars::trace_var()));
  EXPECT_EQ(c.get(v.tenant), "a");
  EXPECT_TRUE(rep.any("trace-id is all zeros"));
  // Served, it runs in a new trace.
  auto s = ctxvars::with_trace(c);
  ASSERT_TRUE(s.get(ctxvars::trace_var()));
  EXPECT_NE(s.get(ctxvars::trace_var())->parent.trace_id_hex(), std::string(32, '0'));
  EXPECT_TRUE(s.get(ctxvars::trace_var())->parent.random());
  EXPECT_EQ(s.get(v.tenant), "a");
}

TEST(Propagation, AValidTraceparentWithAnInvalidTracestateKeepsTheTraceparent) {
  Reports rep;
  ctxvars::registry reg;
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  for (const char* ts : {"foo=bar=baz", "FOO=1", "foo=,bar=3", "@x=1,bar=2", "a"}) {
    auto c = ctxvars::extract({.traceparent = tp, .tracestate = ts}, ctxvars::context(), reg);
    ASSERT_TRUE(c.get(ctxvars::trace_var())) << ts;
    EXPECT_EQ(ctxvars::format_traceparent(c.get(ctxvars::trace_var())->parent), tp) << ts;
    EXPECT_EQ(c.get(ctxvars::trace_var())->tracestate, "") << ts;
  }
  EXPECT_EQ(rep.seen.size(), 5u);
}

TEST(Propagation, TwoTracestateHeadersJoinedAreCombinedInOrder) {
  ctxvars::registry reg;
  auto c = ctxvars::extract({.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                             .tracestate = "foo=1, bar=2,rojo=1,congo=2,,baz=3"},
                            ctxvars::context(), reg);
  EXPECT_EQ(c.get(ctxvars::trace_var())->tracestate, "foo=1,bar=2,rojo=1,congo=2,baz=3");
}

TEST(Propagation, TracestateReceiverRulesDuplicatesLimitsAndTruncation) {
  ctxvars::registry reg;
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
  auto ts = [&](const std::string& s) {
    return ctxvars::extract({.traceparent = tp, .tracestate = s}, ctxvars::context(), reg)
        .get(ctxvars::trace_var())
        ->tracestate;
  };
  EXPECT_EQ(ts("foo=1,foo=2"), "foo=1");  // a repeated key keeps its first member
  EXPECT_EQ(ts("foo@=1,foo@@bar=2,1a=3,t@" + std::string(15, 'v') + "=4"),
            "foo@=1,foo@@bar=2,1a=3,t@" + std::string(15, 'v') + "=4");  // Level 2 keys
  std::string m32, m33;
  for (int i = 0; i < 33; ++i) (i < 32 ? m32 : m33) += "k" + std::to_string(i) + "=v,";
  m33 = m32 + m33;
  EXPECT_EQ(ts(m32), m32.substr(0, m32.size() - 1));
  EXPECT_EQ(ts(m33), "");  // more than 32 members: dropped whole
  EXPECT_EQ(ts(std::string(257, 'z') + "=1,foo=1"), "");
  // Over 512 bytes: whole members go, those over 128 characters first, then from the end.
  const std::string big = "big=" + std::string(200, 'x');
  std::string small;
  for (int i = 0; i < 30; ++i) small += ",s" + std::to_string(i) + "=" + std::string(10, 'y');
  const std::string out = ts("a=1," + big + small);
  EXPECT_LE(out.size(), 512u);
  EXPECT_EQ(out.find("big="), std::string::npos);
  EXPECT_EQ(out.rfind("a=1,s0=", 0), 0u);
  EXPECT_NE(out.find(",s29="), std::string::npos);
  std::string many;
  for (int i = 0; i < 30; ++i) many += (i ? ",k" : "k") + std::to_string(i) + "=" + std::string(20, 'y');
  const std::string cut = ts(many);
  EXPECT_LE(cut.size(), 512u);
  EXPECT_EQ(cut.rfind("k0=", 0), 0u);
  EXPECT_EQ(cut.find(",k29="), std::string::npos);
}

TEST(Propagation, TwoBaggageHeadersJoinedAndDuplicateKeysAreAcceptedTheLastWins) {
  Vars v;
  auto c = ctxvars::extract({.baggage = "tenant=a,request_id=r1,tenant=b"}, ctxvars::context(), v.reg);
  EXPECT_EQ(c.get(v.tenant), "b");
  EXPECT_EQ(c.get(v.request), "r1");
}

TEST(Propagation, MalformedBaggageMembersAreDroppedOneByOneAndReported) {
  Vars v;
  Reports rep;
  auto c = ctxvars::extract({.baggage = "tenant=%zz,request_id=ok,,bad key=1,retries=3"}, ctxvars::context(), v.reg);
  EXPECT_FALSE(c.contains(v.tenant));
  EXPECT_EQ(c.get(v.request), "ok");
  EXPECT_EQ(c.get(v.retries), 3);
  EXPECT_EQ(rep.seen.size(), 3u);
  // Past 180 members, whole members are dropped.
  std::string h = "request_id=first";
  for (int i = 0; i < 200; ++i) h += ",k" + std::to_string(i) + "=v";
  h += ",tenant=late";
  std::vector<ctxvars::baggage_member> unknown;
  auto d = ctxvars::extract({.baggage = h}, ctxvars::context(), v.reg, &unknown);
  EXPECT_EQ(d.get(v.request), "first");
  EXPECT_FALSE(d.contains(v.tenant));
  EXPECT_EQ(unknown.size(), 179u);
}

TEST(Propagation, TraceContextComesOnlyFromItsOwnHeadersNeverFromBaggage) {
  // With trace_var() registered (for snapshots), a baggage member named
  // "traceparent" became the request's trace context and went downstream.
  Vars v;
  v.reg.add(ctxvars::trace_var());
  std::vector<ctxvars::baggage_member> unknown;
  auto c = ctxvars::extract({.baggage = "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01,tenant=t"},
                            ctxvars::context(), v.reg, &unknown);
  EXPECT_FALSE(c.contains(ctxvars::trace_var()));
  EXPECT_EQ(c.get(v.tenant), "t");
  ASSERT_EQ(unknown.size(), 1u);
  EXPECT_EQ(unknown[0].key, "traceparent");
  for (auto& [k, val] : ctxvars::inject(c, v.reg)) EXPECT_NE(k, "traceparent") << val;
  // Beside a real traceparent, the real one wins.
  const std::string tp = "00-11111111111111111111111111111111-2222222222222222-01";
  auto d = ctxvars::extract(
      {.traceparent = tp, .baggage = "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
      ctxvars::context(), v.reg);
  EXPECT_EQ(ctxvars::format_traceparent(d.get(ctxvars::trace_var())->parent), tp);
}

TEST(Propagation, AForwardedTraceparentCarriesOnlyTheFlagsThisVersionKnows) {
  ctxvars::registry reg;
  for (auto [in, out] : std::vector<std::pair<std::string, std::string>>{
           {"ff", "03"}, {"fd", "01"}, {"02", "02"}, {"04", "00"}, {"01", "01"}}) {
    auto c = ctxvars::extract({.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-" + in},
                              ctxvars::context(), reg);
    auto hs = ctxvars::inject(c, reg);
    ASSERT_EQ(hs.size(), 1u);
    EXPECT_EQ(hs[0].second, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-" + out) << in;
    EXPECT_EQ(ctxvars::inject_child(c, reg)[0].second.substr(53), out) << in;
  }
  ctxvars::trace_parent p = ctxvars::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff");
  EXPECT_EQ(ctxvars::format_traceparent(p).substr(53), "03");  // never emitted, whatever the value holds
}

TEST(Propagation, AHigherVersionWithExtraFieldsIsReadByItsFirstFour) {
  ctxvars::registry reg;
  const std::string tail(600, 'x');  // no length limit on what a later version adds
  auto c = ctxvars::extract({.traceparent = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + tail},
                            ctxvars::context(), reg);
  ASSERT_TRUE(c.get(ctxvars::trace_var()));
  EXPECT_EQ(ctxvars::inject(c, reg)[0].second, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  auto d = ctxvars::extract({.traceparent = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.x"},
                            ctxvars::context(), reg);
  EXPECT_FALSE(d.contains(ctxvars::trace_var()));
}

TEST(Propagation, WhitespaceAroundATraceparentIsNotPartOfIt) {
  ctxvars::registry reg;
  auto c = ctxvars::extract({.traceparent = "\t 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \t"},
                            ctxvars::context(), reg);
  EXPECT_TRUE(c.contains(ctxvars::trace_var()));
}

TEST(Propagation, AReportingHandlerThatThrowsDoesNotRefuseTheRequest) {
  Vars v;
  auto prev = ctxvars::on_malformed_header([](const ctxvars::malformed_header&) { throw std::runtime_error("x"); });
  auto c = ctxvars::extract({.traceparent = "bad", .baggage = "tenant=ok,=bad"}, ctxvars::context(), v.reg);
  EXPECT_EQ(c.get(v.tenant), "ok");
  ctxvars::on_malformed_header(std::move(prev));
}

TEST(Propagation, ATraceContextWithAnAllZeroIdIsNeverSent) {
  ctxvars::registry reg;
  ctxvars::context c;
  c.run([] { ctxvars::trace_var().set(ctxvars::trace_context{}); });
  EXPECT_TRUE(ctxvars::inject(c, reg).empty());
  EXPECT_TRUE(ctxvars::inject_child(c, reg).empty());
}

TEST(Propagation, TheReportingHandlerMayBeSwappedWhileThreadsExtract) {
  ctxvars::registry reg;
  std::atomic<int> a{0}, b{0};
  std::atomic<bool> stop{false};
  auto prev = ctxvars::on_malformed_header([&](const ctxvars::malformed_header&) { ++a; });
  {
    std::vector<std::jthread> ts;
    for (int i = 0; i < 3; ++i)
      ts.emplace_back([&] {
        while (!stop) (void)ctxvars::extract({.traceparent = "bad", .baggage = "=x"}, ctxvars::context(), reg);
      });
    for (int i = 0; i < 40; ++i) {
      ctxvars::on_malformed_header([&a, &b, i](const ctxvars::malformed_header&) { ++(i % 2 ? a : b); });
      std::this_thread::yield();
    }
    // On a loaded machine the threads may not have run yet: keep swapping until they
    // have reported (bounded), so the swap really happens while they extract.
    for (int i = 0; a.load() + b.load() < 100 && i < 200000; ++i) {
      ctxvars::on_malformed_header([&a, &b, i](const ctxvars::malformed_header&) { ++(i % 2 ? a : b); });
      std::this_thread::yield();
    }
    stop = true;
  }
  ctxvars::on_malformed_header(std::move(prev));
  EXPECT_GT(a.load() + b.load(), 0);
}

TEST(Propagation, InjectChildSendsANewSpanOfTheSameTraceEachTime) {
  ctxvars::registry reg;
  ctxvars::context c;
  c.run([] {
    ctxvars::trace_var().set(
        {ctxvars::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"), "k=v"});
  });
  auto a = ctxvars::inject_child(c, reg), b = ctxvars::inject_child(c, reg);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].second.substr(0, 36), "00-4bf92f3577b34da6a3ce929d0e0e4736-");
  EXPECT_EQ(a[0].second.substr(52), "-03");
  EXPECT_NE(a[0].second.substr(36, 16), "00f067aa0ba902b7");
  EXPECT_NE(a[0].second, b[0].second);
  EXPECT_EQ(a[1], (std::pair<std::string, std::string>{"tracestate", "k=v"}));
  EXPECT_EQ(ctxvars::format_traceparent(c.get(ctxvars::trace_var())->parent),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03");  // c unchanged
}

TEST(Propagation, ExtractWithTheCurrentContextAsBaseLeavesTheCurrentOneAlone) {
  Vars v;
  ctxvars::context().run([&] {
    auto s = v.request.scoped_set("outer");
    ctxvars::context c = ctxvars::extract({.baggage = "request_id=inner"}, ctxvars::copy_context(), v.reg);
    EXPECT_EQ(v.request.get(), "outer");
    c.run([&] { EXPECT_EQ(v.request.get(), "inner"); });
  });
}

TEST(Propagation, ACustomCodecIsUsedBothWays) {
  struct upper_codec {
    std::string encode(const std::string& s) const { return "U" + s; }
    std::string decode(std::string_view s) const {
      if (s.empty() || s[0] != 'U') throw std::invalid_argument("no U");
      return std::string(s.substr(1));
    }
  };
  ctxvars::registry reg;
  ctxvars::context_var<std::string> x("x");
  reg.add(x, upper_codec{});
  ctxvars::context c;
  c.run([&] { x.set("v"); });
  EXPECT_EQ(ctxvars::to_baggage(c, reg), "x=Uv");
  EXPECT_EQ(ctxvars::extract({.baggage = "x=Uw"}, ctxvars::context(), reg).get(x), "w");
  EXPECT_FALSE(ctxvars::extract({.baggage = "x=w"}, ctxvars::context(), reg).contains(x));
}

TEST(Propagation, ARegisteredVariableMayBeDestroyedFirst) {
  ctxvars::registry reg;
  ctxvars::context c;
  {
    ctxvars::context_var<int> gone("gone");
    reg.add(gone);
    c.run([&] { gone.set(1); });
  }
  EXPECT_EQ(ctxvars::to_baggage(c, reg), "gone=1");
  EXPECT_EQ(ctxvars::extract({.baggage = "gone=2"}, ctxvars::context(), reg).size(), 1u);
}

TEST(TraceContext, TraceparentParsesAndFormats) {
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto p = ctxvars::parse_traceparent(tp);
  EXPECT_EQ(p.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(p.parent_id_hex(), "00f067aa0ba902b7");
  EXPECT_TRUE(p.sampled());
  EXPECT_EQ(ctxvars::format_traceparent(p), tp);
}

TEST(TraceContext, MalformedTraceparentsAreRejected) {
  const char* bad[] = {
      "",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
  };
  for (const char* s : bad) EXPECT_THROW(ctxvars::parse_traceparent(s), parse_error) << s;
  // A later version may carry more fields after a '-'.
  EXPECT_EQ(ctxvars::parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").version, 1);
}

TEST(TraceContext, TracestateParsesValidatesAndRejects) {
  auto m = ctxvars::parse_tracestate("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,,t@sys=v");
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[1].second, "t61rcWkgMzE");
  EXPECT_EQ(m[2].first, "t@sys");
  EXPECT_EQ(ctxvars::format_tracestate(m), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,t@sys=v");
  const char* bad[] = {"Rojo=1", "a", "a=", "a=1,a=2", "a=b=c", "a=x\x7f", "_a=1", "@b=1", "a b=1"};
  // Level 2 keys: a digit may lead, '@' may appear anywhere after the first character.
  EXPECT_EQ(ctxvars::parse_tracestate("1a=1,a@=2,a@@b=3").size(), 3u);
  for (const char* s : bad) EXPECT_THROW(ctxvars::parse_tracestate(s), parse_error) << s;
  std::string many;
  for (int i = 0; i < 33; ++i) many += "k" + std::to_string(i) + "=v,";
  EXPECT_THROW(ctxvars::parse_tracestate(many), parse_error);
  EXPECT_THROW(ctxvars::parse_tracestate("a=" + std::string(600, 'x')), parse_error);
}

TEST(TraceContext, InjectAndExtractRoundTripTheTraceVariableAndBaggage) {
  Vars v;
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  ctxvars::context src;
  src.run([&] {
    ctxvars::trace_var().set({ctxvars::parse_traceparent(tp), "rojo=1"});
    v.tenant.set("t1");
  });
  auto hs = ctxvars::inject(src, v.reg);
  ASSERT_EQ(hs.size(), 3u);
  EXPECT_EQ(hs[0], (std::pair<std::string, std::string>{"traceparent", tp}));
  EXPECT_EQ(hs[1], (std::pair<std::string, std::string>{"tracestate", "rojo=1"}));
  EXPECT_EQ(hs[2], (std::pair<std::string, std::string>{"baggage", "tenant=t1"}));
  ctxvars::context dst = ctxvars::extract({hs[0].second, hs[1].second, hs[2].second}, ctxvars::context(), v.reg);
  EXPECT_EQ(dst.get(ctxvars::trace_var()), src.get(ctxvars::trace_var()));
  EXPECT_EQ(dst.get(v.tenant), "t1");
  EXPECT_TRUE(ctxvars::inject(ctxvars::context(), v.reg).empty());
}

TEST(TraceContext, ALaterVersionIsHeldAndForwardedAsVersion00SoEveryRoundTripIsExact) {
  // Found by the propagation fuzzer: extract() kept version 0x55, inject()
  // wrote 00, and the value extracted again compared unequal.
  ctxvars::registry reg;
  reg.add(ctxvars::trace_var());
  const std::string later = "55-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b5-01-more";
  const std::string as00 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b5-01";
  EXPECT_EQ(ctxvars::parse_traceparent(later).version, 0x55);  // the parser still reports it
  ctxvars::context c = ctxvars::extract({later, "rother=1", ""}, ctxvars::context(), reg);
  ASSERT_TRUE(c.get(ctxvars::trace_var()));
  EXPECT_EQ(c.get(ctxvars::trace_var())->parent.version, 0);
  auto hs = ctxvars::inject(c, reg);
  ASSERT_EQ(hs.size(), 2u);
  EXPECT_EQ(hs[0].second, as00);
  ctxvars::context d = ctxvars::extract({hs[0].second, hs[1].second, ""}, ctxvars::context(), reg);
  EXPECT_EQ(d.get(ctxvars::trace_var()), c.get(ctxvars::trace_var()));
  // The snapshot codec: decode(encode(x)) == x, and a later version decodes as 00.
  using codec = ctxvars::codec<ctxvars::trace_context>;
  const ctxvars::trace_context t = *c.get(ctxvars::trace_var());
  EXPECT_EQ(codec::decode(codec::encode(t)), t);
  EXPECT_EQ(codec::decode(later + " rother=1"), t);
}

TEST(TraceContext, TracestateWithoutTraceparentIsIgnored) {
  ctxvars::registry reg;
  auto c = ctxvars::extract({.tracestate = "a=1"}, ctxvars::context(), reg);
  EXPECT_EQ(c.size(), 0u);
}

}  // namespace
