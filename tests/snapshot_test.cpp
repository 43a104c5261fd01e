#include "ctxvars/snapshot.hpp"

#include <gtest/gtest.h>

#include <string>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/propagation.hpp"

namespace {

using ctxvars::parse_error;

TEST(Snapshot, RegisteredVariablesRoundTripThroughBytes) {
  ctxvars::registry reg;
  ctxvars::context_var<std::string> s("s");
  ctxvars::context_var<double> d("d");
  ctxvars::context_var<bool> b("b");
  reg.add(s);
  reg.add(d);
  reg.add(b);
  reg.add(ctxvars::trace_var());
  ctxvars::context src;
  src.run([&] {
    s.set(std::string("bytes \0 and \xff", 13));
    d.set(0.1);
    b.set(false);
    ctxvars::trace_var().set(
        {ctxvars::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), "a=b"});
  });
  const std::string bytes = ctxvars::save_snapshot(src, reg);
  ctxvars::restored r = ctxvars::restore_snapshot(bytes, ctxvars::context(), reg);
  EXPECT_TRUE(r.unknown.empty());
  EXPECT_EQ(r.ctx.get(s), std::string("bytes \0 and \xff", 13));
  EXPECT_EQ(r.ctx.get(d), 0.1);
  EXPECT_EQ(r.ctx.get(b), false);
  EXPECT_EQ(r.ctx.get(ctxvars::trace_var()), src.get(ctxvars::trace_var()));
  EXPECT_EQ(r.ctx.size(), 4u);
}

TEST(Snapshot, UnknownVariablesAreReportedNotSilentlyDropped) {
  ctxvars::registry writer, reader;
  ctxvars::context_var<int> known("known"), extra("extra");
  writer.add(known);
  writer.add(extra);
  reader.add(known);
  ctxvars::context src;
  src.run([&] {
    known.set(1);
    extra.set(2);
  });
  auto r = ctxvars::restore_snapshot(ctxvars::save_snapshot(src, writer), ctxvars::context(), reader);
  EXPECT_EQ(r.unknown, std::vector<std::string>{"extra"});
  EXPECT_EQ(r.ctx.get(known), 1);
  EXPECT_FALSE(r.ctx.contains(extra));
}

TEST(Snapshot, FormatIsVersionedAndOtherVersionsAreRefusedByName) {
  ctxvars::registry reg;
  std::string bytes = ctxvars::save_snapshot(ctxvars::context(), reg);
  EXPECT_EQ(bytes, std::string("CTXV\x01\x00", 6));
  bytes[4] = 2;
  try {
    ctxvars::restore_snapshot(bytes, ctxvars::context(), reg);
    FAIL();
  } catch (const parse_error& e) {
    EXPECT_NE(std::string(e.what()).find("version 2 is not supported"), std::string::npos) << e.what();
  }
}

TEST(Snapshot, MalformedBytesAreRejectedAndNothingIsApplied) {
  ctxvars::registry reg;
  ctxvars::context_var<int> n("n");
  reg.add(n);
  ctxvars::context base;
  const std::string bad[] = {
      "",
      "CTXV",
      std::string("XTXV\x01\x00", 6),
      std::string("CTXV\x01\x01", 6),                       // one entry, none there
      std::string("CTXV\x01\x01\x01n\x05" "1", 10),          // value truncated
      std::string("CTXV\x01\x00\x00", 7),                   // trailing byte
      std::string("CTXV\x01\x02\x01n\x01" "1\x01n\x01" "2", 14),  // duplicate key
      std::string("CTXV\x01\x01\x01n\x01x", 10),            // codec rejects
      std::string("CTXV\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 16),  // varint overflow
      std::string("CTXV\x01\x81\x80\x04", 8),               // too many entries
  };
  for (const auto& b : bad) EXPECT_THROW(ctxvars::restore_snapshot(b, base, reg), parse_error);
  EXPECT_EQ(base.size(), 0u);
  EXPECT_EQ(ctxvars::restore_snapshot(std::string("CTXV\x01\x01\x01n\x01" "7", 10), base, reg).ctx.get(n), 7);
}

}  // namespace
