#include "ctxvars/format.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>

namespace {

struct money {
  long cents;
};

}  // namespace

template <>
struct fmt::formatter<money> : fmt::formatter<long> {
  auto format(const money& m, fmt::format_context& ctx) const -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(), "{}.{:02}", m.cents / 100, m.cents % 100);
  }
};

namespace {

TEST(FormatFmt, ContextFormatsWithBracesLikeWithOstream) {
  ctxvars::context_var<std::string> request("request_id");
  ctxvars::context_var<int> n("n");
  ctxvars::context c;
  c.run([&] {
    request.set("c1-r2");
    n.set(4);
  });
  EXPECT_EQ(fmt::format("{}", c), "n=4 request_id=c1-r2");
  EXPECT_EQ(fmt::format("[{:>22}]", c), "[  n=4 request_id=c1-r2]");
}

TEST(FormatFmt, EntryFormatsAsOnePair) {
  ctxvars::context_var<int> n("n");
  ctxvars::context c;
  c.run([&] { n.set(4); });
  for (auto e : c) EXPECT_EQ(fmt::format("{}", e), "n=4");
}

TEST(FormatFmt, VariableCanUseItsTypesFmtFormatter) {
  ctxvars::context_var<money> price("price");
  ctxvars::context c;
  c.run([&] { price.set(money{1234}); });
  EXPECT_EQ(fmt::format("{}", c), "price=<?>");
  ctxvars::use_fmt_formatter(price);
  EXPECT_EQ(fmt::format("{}", c), "price=12.34");
}

TEST(FormatFmt, NullCStringFormatsAsNullWithBothWriters) {
  ctxvars::context_var<const char*> s("s");
  ctxvars::context c;
  c.run([&] { s.set(nullptr); });
  EXPECT_EQ(fmt::format("{}", c), "s=(null)");
  ctxvars::use_fmt_formatter(s);  // fmt itself throws format_error for a null C string
  EXPECT_EQ(fmt::format("{}", c), "s=(null)");
  c.run([&] { s.set("x"); });
  EXPECT_EQ(fmt::format("{}", c), "s=x");
}

TEST(FormatFmt, Int128FormatsExactly) {
  __extension__ typedef __int128 i128;
  ctxvars::context_var<i128> v("v");
  ctxvars::context c;
  c.run([&] { v.set(static_cast<i128>(1) << 100); });
  EXPECT_EQ(fmt::format("{}", c), "v=1267650600228229401496703205376");
  ctxvars::use_fmt_formatter(v);
  EXPECT_EQ(fmt::format("{}", c), "v=1267650600228229401496703205376");
}

TEST(FormatFmt, CopyOfCurrentContextFormats) {
  ctxvars::context_var<std::string> tenant("tenant");
  ctxvars::context().run([&] {
    auto s = tenant.scoped_set("acme");
    EXPECT_EQ(fmt::format("{}", ctxvars::copy_context()), "tenant=acme");
  });
}

}  // namespace
