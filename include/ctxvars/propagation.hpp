// Carrying a context to another process: W3C Baggage and W3C Trace Context.
//
//   // client side: headers for the current context
//   for (auto& [name, value] : ctxvars::inject()) request.set(name, value);
//   // server side: a new context built from the request's headers
//   ctxvars::context ctx = ctxvars::extract({.traceparent = tp, .tracestate = ts, .baggage = bg});
//   ctx.run(handler);
//
// `baggage` carries the registered variables (codec.hpp) as percent-encoded
// key=value pairs (https://www.w3.org/TR/baggage/); `traceparent`/`tracestate`
// (https://www.w3.org/TR/trace-context/) carry the value of trace_var().
//
// Parsing is strict and total: every input either parses completely or throws
// parse_error naming the header and the fault (syntax, a limit, a duplicate
// key, a value its codec rejects); nothing is applied in that case.
// Limits: a baggage header of at most 8192 bytes and 180 members; traceparent
// version 00 exactly 55 characters (later versions: 55 followed by "-..." as
// the spec asks); tracestate at most 32 members and 512 bytes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codec.hpp"
#include "context.hpp"
#include "context_var.hpp"

namespace ctxvars {

inline constexpr std::size_t max_baggage_members = 180;
inline constexpr std::size_t max_baggage_bytes = 8192;
inline constexpr std::size_t max_tracestate_members = 32;
inline constexpr std::size_t max_tracestate_bytes = 512;

// One baggage list-member: key, value (percent-decoded, UTF-8) and its
// properties as written (`name` or `name=value`, whitespace trimmed).
struct baggage_member {
  std::string key;
  std::string value;
  std::vector<std::string> properties;
  friend bool operator==(const baggage_member&, const baggage_member&) = default;
};

namespace detail {

[[noreturn]] inline void fail(std::string_view header, std::string_view what) {
  throw parse_error("ctxvars: invalid " + std::string(header) + " header: " + std::string(what));
}
constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }
// W3C baggage-octet: printable US-ASCII except space, '"', ',', ';' and '\'.
constexpr bool is_baggage_octet(unsigned char c) noexcept {
  return c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) || (c >= 0x3C && c <= 0x5B) ||
         (c >= 0x5D && c <= 0x7E);
}
constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
constexpr int lower_hex_value(char c) noexcept { return (c >= 'A' && c <= 'F') ? -1 : hex_value(c); }
inline constexpr char hex_digits[] = "0123456789abcdef";

inline bool valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // No overlong forms, no surrogates, nothing above U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

// Percent-decodes a baggage value (its octets already checked).
inline std::string percent_decode(std::string_view v, std::string_view key) {
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      out += v[i];
      continue;
    }
    if (i + 2 >= v.size()) fail("baggage", "truncated percent-escape in the value of '" + std::string(key) + "'");
    const int h = hex_value(v[i + 1]), l = hex_value(v[i + 2]);
    if (h < 0 || l < 0) fail("baggage", "bad percent-escape in the value of '" + std::string(key) + "'");
    out += static_cast<char>(h * 16 + l);
    i += 2;
  }
  if (!valid_utf8(out)) fail("baggage", "the value of '" + std::string(key) + "' is not UTF-8 once decoded");
  return out;
}
// Percent-encodes every byte that is not a baggage-octet, and '%' itself.
inline void percent_encode(std::string& out, std::string_view v) {
  for (unsigned char c : v) {
    if (is_baggage_octet(c) && c != '%') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += "0123456789ABCDEF"[c >> 4];
      out += "0123456789ABCDEF"[c & 15];
    }
  }
}

// A cursor over one header.
struct scanner {
  std::string_view s;
  std::size_t i = 0;
  bool done() const noexcept { return i == s.size(); }
  char peek() const noexcept { return s[i]; }
  void skip_ows() noexcept {
    while (i < s.size() && is_ows(s[i])) ++i;
  }
  std::string_view take_while(bool (*pred)(unsigned char)) noexcept {
    const std::size_t b = i;
    while (i < s.size() && pred(static_cast<unsigned char>(s[i]))) ++i;
    return s.substr(b, i - b);
  }
};
inline bool tchar_pred(unsigned char c) { return is_tchar(c); }
inline bool octet_pred(unsigned char c) { return is_baggage_octet(c); }

}  // namespace detail

// Parses a `baggage` header value. An empty (or all-whitespace) header is an
// empty list. Throws parse_error on any syntax error, a header over 8192
// bytes, more than 180 members, a duplicate key, a bad percent-escape or a
// value that is not UTF-8 once decoded.
inline std::vector<baggage_member> parse_baggage(std::string_view header) {
  using namespace detail;
  if (header.size() > max_baggage_bytes)
    fail("baggage", "longer than " + std::to_string(max_baggage_bytes) + " bytes");
  std::vector<baggage_member> out;
  scanner sc{header};
  sc.skip_ows();
  if (sc.done()) return out;
  for (;;) {
    if (out.size() == max_baggage_members)
      fail("baggage", "more than " + std::to_string(max_baggage_members) + " members");
    baggage_member m;
    const std::string_view key = sc.take_while(tchar_pred);
    if (key.empty()) fail("baggage", "expected a key at offset " + std::to_string(sc.i));
    sc.skip_ows();
    if (sc.done() || sc.peek() != '=') fail("baggage", "expected '=' after key '" + std::string(key) + "'");
    ++sc.i;
    sc.skip_ows();
    const std::string_view raw = sc.take_while(octet_pred);
    m.key = std::string(key);
    m.value = percent_decode(raw, key);
    sc.skip_ows();
    while (!sc.done() && sc.peek() == ';') {
      ++sc.i;
      sc.skip_ows();
      const std::string_view pk = sc.take_while(tchar_pred);
      if (pk.empty()) fail("baggage", "expected a property key in member '" + m.key + "'");
      std::string prop(pk);
      sc.skip_ows();
      if (!sc.done() && sc.peek() == '=') {
        ++sc.i;
        sc.skip_ows();
        const std::string_view pv = sc.take_while(octet_pred);
        percent_decode(pv, m.key);  // validates escapes; properties are kept as written
        prop += '=';
        prop += pv;
        sc.skip_ows();
      }
      m.properties.push_back(std::move(prop));
    }
    for (const auto& o : out)
      if (o.key == m.key) fail("baggage", "duplicate key '" + m.key + "'");
    out.push_back(std::move(m));
    if (sc.done()) return out;
    if (sc.peek() != ',') fail("baggage", "unexpected character at offset " + std::to_string(sc.i));
    ++sc.i;
    sc.skip_ows();
  }
}

// Writes members as a `baggage` header value (values percent-encoded).
// Throws parse_error if a key or property is invalid, keys repeat, or the
// result breaks a limit (the receiver would reject it).
inline std::string format_baggage(const std::vector<baggage_member>& members) {
  using namespace detail;
  if (members.size() > max_baggage_members)
    fail("baggage", "more than " + std::to_string(max_baggage_members) + " members");
  std::string out;
  for (std::size_t i = 0; i < members.size(); ++i) {
    const baggage_member& m = members[i];
    if (!is_token(m.key)) fail("baggage", "key '" + m.key + "' is not a token");
    if (!valid_utf8(m.value)) fail("baggage", "the value of '" + m.key + "' is not UTF-8");
    for (std::size_t k = 0; k < i; ++k)
      if (members[k].key == m.key) fail("baggage", "duplicate key '" + m.key + "'");
    if (i) out += ',';
    out += m.key;
    out += '=';
    percent_encode(out, m.value);
    for (const std::string& p : m.properties) {
      const std::size_t eq = p.find('=');
      const std::string_view pk = std::string_view(p).substr(0, eq);
      if (!is_token(pk)) fail("baggage", "bad property '" + p + "' in member '" + m.key + "'");
      if (eq != std::string::npos)
        for (unsigned char c : std::string_view(p).substr(eq + 1))
          if (!is_baggage_octet(c)) fail("baggage", "bad property '" + p + "' in member '" + m.key + "'");
      out += ';';
      out += p;
    }
  }
  if (out.size() > max_baggage_bytes)
    fail("baggage", "longer than " + std::to_string(max_baggage_bytes) + " bytes");
  return out;
}

// ---- W3C Trace Context -------------------------------------------------------

// A `traceparent`: version, trace id, parent (span) id and flags.
struct trace_parent {
  std::uint8_t version = 0;
  std::array<std::uint8_t, 16> trace_id{};
  std::array<std::uint8_t, 8> parent_id{};
  std::uint8_t flags = 0;

  bool sampled() const noexcept { return flags & 1; }
  std::string trace_id_hex() const { return hex(trace_id.data(), trace_id.size()); }
  std::string parent_id_hex() const { return hex(parent_id.data(), parent_id.size()); }
  friend bool operator==(const trace_parent&, const trace_parent&) = default;

  static std::string hex(const std::uint8_t* p, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
      s += detail::hex_digits[p[i] >> 4];
      s += detail::hex_digits[p[i] & 15];
    }
    return s;
  }
};

// A trace context as carried by the two headers: the parent and the raw,
// validated `tracestate` (empty when absent). The value trace_var() holds is
// the context as this process forwards it: extract() and the snapshot codec
// accept a later version's traceparent (its first four fields) and store it
// with version 00, the version we speak, so inject/extract and save/restore
// give back an equal value.
struct trace_context {
  trace_parent parent;
  std::string tracestate;
  friend bool operator==(const trace_context&, const trace_context&) = default;
};

namespace detail {
template <std::size_t N>
void parse_hex_field(std::string_view s, std::array<std::uint8_t, N>& out, std::string_view field) {
  for (std::size_t i = 0; i < N; ++i) {
    const int h = lower_hex_value(s[2 * i]), l = lower_hex_value(s[2 * i + 1]);
    if (h < 0 || l < 0) fail("traceparent", std::string(field) + " is not lowercase hex");
    out[i] = static_cast<std::uint8_t>(h * 16 + l);
  }
}
template <std::size_t N>
bool all_zero(const std::array<std::uint8_t, N>& a) noexcept {
  for (auto b : a)
    if (b) return false;
  return true;
}
constexpr bool is_lcalpha(char c) noexcept { return c >= 'a' && c <= 'z'; }
constexpr bool is_key_char(char c) noexcept {
  return is_lcalpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/';
}
// tracestate key: simple-key, or tenant-id "@" system-id.
inline bool valid_tracestate_key(std::string_view k) noexcept {
  const std::size_t at = k.find('@');
  auto run_ok = [](std::string_view s, std::size_t max, bool first_may_be_digit) {
    if (s.empty() || s.size() > max) return false;
    if (!(is_lcalpha(s[0]) || (first_may_be_digit && s[0] >= '0' && s[0] <= '9'))) return false;
    for (char c : s)
      if (!is_key_char(c)) return false;
    return true;
  };
  if (at == std::string_view::npos) return run_ok(k, 256, false);
  return run_ok(k.substr(0, at), 241, true) && run_ok(k.substr(at + 1), 14, false);
}
// tracestate value: 0x20-0x7E except ',' and '=', 1..256 chars, last not a space.
inline bool valid_tracestate_value(std::string_view v) noexcept {
  if (v.empty() || v.size() > 256 || v.back() == ' ') return false;
  for (unsigned char c : v)
    if (c < 0x20 || c > 0x7E || c == ',' || c == '=') return false;
  return true;
}
}  // namespace detail

// Parses a `traceparent` value. Throws parse_error if it is not exactly
// `00-<32 hex>-<16 hex>-<2 hex>` (lowercase), if either id is all zeros, if the
// version is ff, or (for versions above 00) if the 55 characters are followed
// by anything but "-...".
inline trace_parent parse_traceparent(std::string_view s) {
  using namespace detail;
  if (s.size() < 55) fail("traceparent", "shorter than 55 characters");
  if (s.size() > 512) fail("traceparent", "longer than 512 characters");
  trace_parent p;
  std::array<std::uint8_t, 1> v{}, f{};
  parse_hex_field(s.substr(0, 2), v, "version");
  if (v[0] == 0xff) fail("traceparent", "version ff is invalid");
  if (s[2] != '-' || s[35] != '-' || s[52] != '-') fail("traceparent", "fields must be separated by '-'");
  parse_hex_field(s.substr(3, 32), p.trace_id, "trace-id");
  parse_hex_field(s.substr(36, 16), p.parent_id, "parent-id");
  parse_hex_field(s.substr(53, 2), f, "trace-flags");
  if (v[0] == 0 && s.size() != 55) fail("traceparent", "version 00 must be exactly 55 characters");
  if (s.size() > 55 && s[55] != '-') fail("traceparent", "unexpected data after trace-flags");
  if (all_zero(p.trace_id)) fail("traceparent", "trace-id is all zeros");
  if (all_zero(p.parent_id)) fail("traceparent", "parent-id is all zeros");
  p.version = v[0];
  p.flags = f[0];
  return p;
}
// Writes version 00 (whatever version was parsed: this is the version we speak).
inline std::string format_traceparent(const trace_parent& p) {
  std::string s = "00-";
  s += p.trace_id_hex();
  s += '-';
  s += p.parent_id_hex();
  s += '-';
  s += detail::hex_digits[p.flags >> 4];
  s += detail::hex_digits[p.flags & 15];
  return s;
}

// Parses a `tracestate` value into (key, value) members, in order. Empty
// members (",,") are allowed and skipped, as the spec says. Throws parse_error
// on a bad key or value, a duplicate key, more than 32 members, more than 512
// bytes.
inline std::vector<std::pair<std::string, std::string>> parse_tracestate(std::string_view s) {
  using namespace detail;
  if (s.size() > max_tracestate_bytes)
    fail("tracestate", "longer than " + std::to_string(max_tracestate_bytes) + " bytes");
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t b = 0;
  while (b <= s.size()) {
    std::size_t e = s.find(',', b);
    if (e == std::string_view::npos) e = s.size();
    std::string_view m = s.substr(b, e - b);
    while (!m.empty() && is_ows(m.front())) m.remove_prefix(1);
    while (!m.empty() && is_ows(m.back())) m.remove_suffix(1);
    if (!m.empty()) {
      const std::size_t eq = m.find('=');
      if (eq == std::string_view::npos) fail("tracestate", "member without '='");
      const std::string_view k = m.substr(0, eq), v = m.substr(eq + 1);
      if (!valid_tracestate_key(k)) fail("tracestate", "bad key '" + std::string(k) + "'");
      if (!valid_tracestate_value(v)) fail("tracestate", "bad value for key '" + std::string(k) + "'");
      for (const auto& o : out)
        if (o.first == k) fail("tracestate", "duplicate key '" + std::string(k) + "'");
      if (out.size() == max_tracestate_members)
        fail("tracestate", "more than " + std::to_string(max_tracestate_members) + " members");
      out.emplace_back(std::string(k), std::string(v));
    }
    b = e + 1;
  }
  return out;
}
inline std::string format_tracestate(const std::vector<std::pair<std::string, std::string>>& members) {
  std::string s;
  for (const auto& [k, v] : members) {
    if (!detail::valid_tracestate_key(k) || !detail::valid_tracestate_value(v))
      detail::fail("tracestate", "bad member '" + k + "'");
    if (!s.empty()) s += ',';
    s += k;
    s += '=';
    s += v;
  }
  if (s.size() > max_tracestate_bytes) detail::fail("tracestate", "longer than 512 bytes");
  return s;
}

inline std::ostream& operator<<(std::ostream& os, const trace_context& t) {
  return os << format_traceparent(t.parent);
}

// The variable holding the current trace context (name "traceparent").
inline context_var<trace_context>& trace_var() {
  static context_var<trace_context> v("traceparent");
  return v;
}

// Codec for trace_context (for snapshots): "<traceparent>[ <tracestate>]".
template <>
struct codec<trace_context> {
  static std::string encode(const trace_context& t) {
    std::string s = format_traceparent(t.parent);
    if (!t.tracestate.empty()) {
      s += ' ';
      s += t.tracestate;
    }
    return s;
  }
  static trace_context decode(std::string_view s) {
    const std::size_t sp = s.find(' ');
    trace_context t;
    t.parent = parse_traceparent(s.substr(0, sp));
    t.parent.version = 0;  // held as we forward it (see trace_context)
    if (sp != std::string_view::npos) {
      t.tracestate = std::string(s.substr(sp + 1));
      parse_tracestate(t.tracestate);
    }
    return t;
  }
};

// ---- contexts <-> headers ----------------------------------------------------

// The `baggage` value for `c`'s registered variables (sorted by key), "" when
// none has a value. Throws parse_error if the result would break the limits,
// and what a codec throws.
inline std::string to_baggage(const context& c, const registry& r = registry::global()) {
  std::vector<baggage_member> ms;
  for (auto& [k, v] : r.encode(c))
    if (k != trace_var().name()) ms.push_back({std::move(k), std::move(v), {}});  // it has its own headers
  return format_baggage(ms);
}

// Incoming headers; an empty view means "absent".
struct incoming_headers {
  std::string_view traceparent{};
  std::string_view tracestate{};
  std::string_view baggage{};
};

// A new context: `base`'s variables, plus the registered variables named in
// `h.baggage` (decoded by their codecs) and trace_var() from traceparent /
// tracestate (tracestate is ignored without traceparent, as the spec says).
// Baggage members of unregistered keys are not applied; they are appended to
// `*unknown` if given. Throws parse_error (nothing applied) on any fault.
// Cost: one new context and one box per applied variable.
inline context extract(const incoming_headers& h, const context& base = copy_context(),
                       const registry& r = registry::global(), std::vector<baggage_member>* unknown = nullptr) {
  std::vector<std::pair<std::uint64_t, detail::box_ptr>> boxes;
  std::vector<baggage_member> skipped;
  for (baggage_member& m : parse_baggage(h.baggage)) {
    auto e = r.find_key(m.key);
    if (!e) {
      skipped.push_back(std::move(m));
      continue;
    }
    try {
      boxes.emplace_back(e->id, e->decode(e->info, m.value));
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& x) {
      detail::fail("baggage", "value of '" + m.key + "' rejected by its codec: " + x.what());
    }
  }
  if (!h.traceparent.empty()) {
    trace_context t;
    t.parent = parse_traceparent(h.traceparent);
    t.parent.version = 0;  // held as we forward it (see trace_context)
    if (!h.tracestate.empty()) {
      parse_tracestate(h.tracestate);
      t.tracestate = std::string(h.tracestate);
    }
    boxes.emplace_back(trace_var().id(), detail::make_box<trace_context>(detail::var_access::info(trace_var()),
                                                                          std::move(t)));
  }
  context out = detail::context_with(base, boxes);
  if (unknown) unknown->insert(unknown->end(), std::make_move_iterator(skipped.begin()),
                               std::make_move_iterator(skipped.end()));
  return out;
}

// The headers that carry `c` to another process: traceparent and tracestate
// when trace_var() has a value, baggage when a registered variable has one.
inline std::vector<std::pair<std::string, std::string>> inject(const context& c = copy_context(),
                                                                const registry& r = registry::global()) {
  std::vector<std::pair<std::string, std::string>> out;
  if (auto t = c.get(trace_var())) {
    out.emplace_back("traceparent", format_traceparent(t->parent));
    if (!t->tracestate.empty()) out.emplace_back("tracestate", t->tracestate);
  }
  std::string b = to_baggage(c, r);
  if (!b.empty()) out.emplace_back("baggage", std::move(b));
  return out;
}

}  // namespace ctxvars
