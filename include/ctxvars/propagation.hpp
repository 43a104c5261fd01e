// Carrying a context to another process: W3C Baggage and W3C Trace Context.
//
//   // client side: headers for the current context (a new child span of its trace)
//   for (auto& [name, value] : ctxvars::inject_child()) request.set(name, value);
//   // server side: a new context built from the request's headers
//   ctxvars::context ctx = ctxvars::extract({.traceparent = tp, .tracestate = ts, .baggage = bg});
//   ctx.run(handler);
//
// `baggage` carries the registered variables (codec.hpp) as percent-encoded
// key=value pairs (https://www.w3.org/TR/baggage/); `traceparent`/`tracestate`
// (https://www.w3.org/TR/trace-context-2/) carry the value of trace_var()
// (trace.hpp makes ids).
//
// Two kinds of functions, as the specs ask ("strict in what you emit"):
// - the parsers and formatters (parse_baggage, parse_traceparent,
//   parse_tracestate, format_*) are strict and total: every input parses
//   completely or throws parse_error naming the header and the fault;
//   what the formatters write is always valid;
// - extract() follows the receiver rules: it never refuses a request. A
//   malformed traceparent is ignored (and its tracestate with it), a malformed
//   tracestate is dropped without touching the traceparent, a malformed
//   baggage list-member is dropped and the others kept; each drop is reported
//   to the handler set with on_malformed_header() (to count or log it).
// Limits: a baggage header of at most 8192 bytes and 180 members (whole
// members beyond are dropped on receipt); traceparent version 00 exactly 55
// characters (later versions: 55 followed by "-..." as the spec asks);
// tracestate at most 32 members (more: dropped whole) and 512 bytes (longer:
// truncated by whole members, those over 128 characters first).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codec.hpp"
#include "context.hpp"
#include "context_var.hpp"
#include "trace.hpp"

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

// ---- malformed input: dropped, and reported ----------------------------------

// What extract() dropped: the header ("traceparent", "tracestate" or
// "baggage"), the fault in words, and the text dropped (the whole header, or
// one baggage list-member). The views are valid during the call only.
struct malformed_header {
  std::string_view header;
  std::string_view problem;
  std::string_view text;
};
using malformed_header_handler = std::function<void(const malformed_header&)>;

namespace detail {
struct malformed_hook {
  std::mutex m;
  std::shared_ptr<const malformed_header_handler> h;
  static malformed_hook& instance() {
    static malformed_hook k;
    return k;
  }
};
// Calls the handler, if any. Costs a lock only when something is malformed.
// A handler that throws is ignored: reporting never refuses a request.
inline void report_malformed(std::string_view header, std::string_view problem, std::string_view text) noexcept {
  std::shared_ptr<const malformed_header_handler> h;
  {
    malformed_hook& k = malformed_hook::instance();
    std::lock_guard g(k.m);
    h = k.h;
  }
  if (!h) return;
  try {
    (*h)(malformed_header{header, problem, text});
  } catch (...) {
  }
}
}  // namespace detail

// Sets the process-wide handler told of every malformed header or list-member
// extract() drops (nullptr: none, the default); returns the previous one. The
// handler runs on the thread that extracts, possibly on several at once, and
// must be thread-safe; an exception it throws is swallowed. Thread-safe; a
// call already running keeps the handler it started with.
inline malformed_header_handler on_malformed_header(malformed_header_handler h) {
  auto next = h ? std::make_shared<const malformed_header_handler>(std::move(h)) : nullptr;
  detail::malformed_hook& k = detail::malformed_hook::instance();
  std::shared_ptr<const malformed_header_handler> prev;
  {
    std::lock_guard g(k.m);
    prev = std::exchange(k.h, std::move(next));
  }
  return prev ? *prev : malformed_header_handler();
}

namespace detail {

[[noreturn]] inline void fail(std::string_view header, std::string_view what) {
  throw parse_error("ctxvars: invalid " + std::string(header) + " header: " + std::string(what));
}
constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }
inline std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}
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

// Length of the valid UTF-8 sequence at s[i], or 0 if there is none (overlong
// forms, surrogates, above U+10FFFF, truncated or bad continuation bytes).
inline std::size_t utf8_sequence(std::string_view s, std::size_t i) noexcept {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  std::size_t n;
  std::uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 1, cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 2, cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 3, cp = c & 0x07;
  } else {
    return 0;
  }
  for (std::size_t k = 1; k <= n; ++k) {
    if (i + k >= s.size()) return 0;
    const unsigned char d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3F);
  }
  if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n + 1;
}
inline bool valid_utf8(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

// Percent-decodes a baggage value (its octets already checked). Throws
// parse_error on a bad or truncated escape. Decoded octets that are not UTF-8
// become U+FFFD, one per byte, as the Baggage spec requires of a receiver.
inline std::string percent_decode(std::string_view v, std::string_view key) {
  std::string raw;
  raw.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      raw += v[i];
      continue;
    }
    if (i + 2 >= v.size()) fail("baggage", "truncated percent-escape in the value of '" + std::string(key) + "'");
    const int h = hex_value(v[i + 1]), l = hex_value(v[i + 2]);
    if (h < 0 || l < 0) fail("baggage", "bad percent-escape in the value of '" + std::string(key) + "'");
    raw += static_cast<char>(h * 16 + l);
    i += 2;
  }
  if (valid_utf8(raw)) return raw;
  std::string out;
  out.reserve(raw.size() + 8);
  for (std::size_t i = 0; i < raw.size();) {
    const std::size_t n = utf8_sequence(raw, i);
    if (n) {
      out.append(raw, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    }
  }
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

// Splits a list on ',' (neither a key, a value nor a property may hold one)
// and calls f(member) for each, whitespace around it trimmed.
template <class F>
void for_each_list_member(std::string_view s, F&& f) {
  std::size_t b = 0;
  for (;;) {
    const std::size_t e = s.find(',', b);
    f(trim_ows(s.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b)));
    if (e == std::string_view::npos) return;
    b = e + 1;
  }
}

// One baggage list-member (OWS around it already trimmed):
// key OWS "=" OWS value *( OWS ";" OWS property ). Throws parse_error.
inline baggage_member parse_baggage_member(std::string_view text) {
  if (text.empty()) fail("baggage", "empty list-member");
  scanner sc{text};
  baggage_member m;
  const std::string_view key = sc.take_while(tchar_pred);
  if (key.empty()) fail("baggage", "expected a key in list-member '" + std::string(text) + "'");
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
  if (!sc.done()) fail("baggage", "unexpected character in the member '" + m.key + "'");
  return m;
}

}  // namespace detail

// Parses a `baggage` header value, strictly. An empty (or all-whitespace)
// header is an empty list. Keys may repeat (the spec does not make them
// unique); members keep their order. Throws parse_error on any syntax error,
// an empty member, a header over 8192 bytes, more than 180 members or a bad
// percent-escape. Decoded octets that are not UTF-8 become U+FFFD.
inline std::vector<baggage_member> parse_baggage(std::string_view header) {
  using namespace detail;
  if (header.size() > max_baggage_bytes)
    fail("baggage", "longer than " + std::to_string(max_baggage_bytes) + " bytes");
  std::vector<baggage_member> out;
  if (trim_ows(header).empty()) return out;
  for_each_list_member(header, [&](std::string_view m) {
    if (out.size() == max_baggage_members)
      fail("baggage", "more than " + std::to_string(max_baggage_members) + " members");
    out.push_back(parse_baggage_member(m));
  });
  return out;
}

// Writes members as a `baggage` header value (values percent-encoded).
// Throws parse_error if a key or property is invalid, a value is not UTF-8,
// or the result breaks a limit (the receiver would drop members).
inline std::string format_baggage(const std::vector<baggage_member>& members) {
  using namespace detail;
  if (members.size() > max_baggage_members)
    fail("baggage", "more than " + std::to_string(max_baggage_members) + " members");
  std::string out;
  for (std::size_t i = 0; i < members.size(); ++i) {
    const baggage_member& m = members[i];
    if (!is_token(m.key)) fail("baggage", "key '" + m.key + "' is not a token");
    if (!valid_utf8(m.value)) fail("baggage", "the value of '" + m.key + "' is not UTF-8");
    if (i) out += ',';
    out += m.key;
    out += '=';
    percent_encode(out, m.value);
    for (const std::string& p : m.properties) {
      const std::size_t eq = p.find('=');
      const std::string_view pk = std::string_view(p).substr(0, eq);
      if (!is_token(pk)) fail("baggage", "bad property '" + p + "' in member '" + m.key + "'");
      if (eq != std::string::npos) {
        const std::string_view pv = std::string_view(p).substr(eq + 1);
        for (unsigned char c : pv)
          if (!is_baggage_octet(c)) fail("baggage", "bad property '" + p + "' in member '" + m.key + "'");
        percent_decode(pv, m.key);  // a bad escape would make the receiver drop the member
      }
      out += ';';
      out += p;
    }
  }
  if (out.size() > max_baggage_bytes)
    fail("baggage", "longer than " + std::to_string(max_baggage_bytes) + " bytes");
  return out;
}

// ---- W3C Trace Context -------------------------------------------------------

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
  return is_lcalpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/' || c == '@';
}
// tracestate key, Level 2: ( lcalpha / DIGIT ) 0*255( keychar ), keychar =
// lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" (Level 1's tenant@system keys
// are a subset).
inline bool valid_tracestate_key(std::string_view k) noexcept {
  if (k.empty() || k.size() > 256) return false;
  if (!(is_lcalpha(k[0]) || (k[0] >= '0' && k[0] <= '9'))) return false;
  for (char c : k)
    if (!is_key_char(c)) return false;
  return true;
}
// tracestate value: 0x20-0x7E except ',' and '=', 1..256 chars, last not a space.
inline bool valid_tracestate_value(std::string_view v) noexcept {
  if (v.empty() || v.size() > 256 || v.back() == ' ') return false;
  for (unsigned char c : v)
    if (c < 0x20 || c > 0x7E || c == ',' || c == '=') return false;
  return true;
}
}  // namespace detail

// Parses a `traceparent` value, strictly. Throws parse_error if it is not
// `<version>-<32 hex>-<16 hex>-<2 hex>` (lowercase), if either id is all
// zeros, if the version is ff, if version 00 is not exactly 55 characters, or
// (for later versions) if the 55 characters are followed by anything but
// "-..." — a later version is read by its first four fields. The flags are
// returned as written (format_traceparent sends only the known ones).
inline trace_parent parse_traceparent(std::string_view s) {
  using namespace detail;
  if (s.size() < 55) fail("traceparent", "shorter than 55 characters");
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
// Writes version 00 (whatever version was parsed: this is the version we
// speak) with only the flags it knows (sampled, random); never throws but
// std::bad_alloc.
inline std::string format_traceparent(const trace_parent& p) {
  const std::uint8_t flags = p.flags & trace::known_flags;
  std::string s = "00-";
  s += p.trace_id_hex();
  s += '-';
  s += p.parent_id_hex();
  s += '-';
  s += detail::hex_digits[flags >> 4];
  s += detail::hex_digits[flags & 15];
  return s;
}

// Parses a `tracestate` value into (key, value) members, in order, strictly.
// Empty members (",,") are allowed and skipped, as the spec says. Throws
// parse_error on a bad key or value, a duplicate key, more than 32 members,
// more than 512 bytes.
inline std::vector<std::pair<std::string, std::string>> parse_tracestate(std::string_view s) {
  using namespace detail;
  if (s.size() > max_tracestate_bytes)
    fail("tracestate", "longer than " + std::to_string(max_tracestate_bytes) + " bytes");
  std::vector<std::pair<std::string, std::string>> out;
  for_each_list_member(s, [&](std::string_view m) {
    if (m.empty()) return;
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
  });
  return out;
}
inline std::string format_tracestate(const std::vector<std::pair<std::string, std::string>>& members) {
  if (members.size() > max_tracestate_members)
    detail::fail("tracestate", "more than " + std::to_string(max_tracestate_members) + " members");
  std::string s;
  for (const auto& [k, v] : members) {
    if (!detail::valid_tracestate_key(k) || !detail::valid_tracestate_value(v))
      detail::fail("tracestate", "bad member '" + k + "'");
    for (const auto& o : members) {
      if (&o.first == &k) break;
      if (o.first == k) detail::fail("tracestate", "duplicate key '" + k + "'");
    }
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

// Codec for trace_context (for snapshots, strict): "<traceparent>[ <tracestate>]".
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
    t.parent.flags &= trace::known_flags;
    if (sp != std::string_view::npos) t.tracestate = format_tracestate(parse_tracestate(s.substr(sp + 1)));
    return t;
  }
};

// ---- receiving: the specs' receiver rules ------------------------------------

namespace detail {

// A traceparent as a receiver reads it (OWS trimmed), held as we forward it;
// nullopt (reported) when malformed.
inline std::optional<trace_parent> receive_traceparent(std::string_view raw) {
  const std::string_view s = trim_ows(raw);
  try {
    trace_parent p = parse_traceparent(s);
    p.version = 0;
    p.flags &= trace::known_flags;
    return p;
  } catch (const parse_error& e) {
    report_malformed("traceparent", e.what(), raw);
    return std::nullopt;
  }
}

// A tracestate as a receiver reads it (several headers already joined with
// ','): canonical "k=v,..." text. A bad member or more than 32 members drop
// the whole tracestate; a repeated key keeps its first member; over 512 bytes,
// whole members are removed (those over 128 characters first, then from the
// end), as the spec says. Each drop is reported.
inline std::string receive_tracestate(std::string_view raw) {
  std::vector<std::pair<std::string_view, std::string_view>> ms;
  std::size_t count = 0;
  std::string problem;
  for_each_list_member(raw, [&](std::string_view m) {
    if (m.empty() || !problem.empty()) return;
    const std::size_t eq = m.find('=');
    const std::string_view k = m.substr(0, eq == std::string_view::npos ? m.size() : eq);
    const std::string_view v = eq == std::string_view::npos ? std::string_view() : m.substr(eq + 1);
    if (eq == std::string_view::npos) {
      problem = "member without '='";
    } else if (!valid_tracestate_key(k)) {
      problem = "bad key '" + std::string(k) + "'";
    } else if (!valid_tracestate_value(v)) {
      problem = "bad value for key '" + std::string(k) + "'";
    } else if (++count > max_tracestate_members) {
      problem = "more than " + std::to_string(max_tracestate_members) + " members";
    } else {
      for (const auto& o : ms)
        if (o.first == k) {
          report_malformed("tracestate", "duplicate key '" + std::string(k) + "' (the first is kept)", m);
          return;
        }
      ms.emplace_back(k, v);
    }
  });
  if (!problem.empty()) {
    report_malformed("tracestate", "ctxvars: invalid tracestate header: " + problem + " (tracestate dropped)", raw);
    return {};
  }
  auto length = [&] {
    std::size_t n = ms.empty() ? 0 : ms.size() - 1;
    for (const auto& [k, v] : ms) n += k.size() + 1 + v.size();
    return n;
  };
  if (length() > max_tracestate_bytes) {
    report_malformed("tracestate", "longer than 512 bytes (whole members removed)", raw);
    for (std::size_t i = ms.size(); i-- > 0 && length() > max_tracestate_bytes;)
      if (ms[i].first.size() + 1 + ms[i].second.size() > 128) ms.erase(ms.begin() + static_cast<std::ptrdiff_t>(i));
    while (length() > max_tracestate_bytes) ms.pop_back();
  }
  std::string out;
  for (const auto& [k, v] : ms) {
    if (!out.empty()) out += ',';
    out += k;
    out += '=';
    out += v;
  }
  return out;
}

// Baggage as a receiver reads it: each malformed member is dropped (and
// reported), the others kept in order; whole members past 180 members or
// 8192 bytes are dropped.
inline std::vector<baggage_member> receive_baggage(std::string_view raw) {
  std::vector<baggage_member> out;
  if (trim_ows(raw).empty()) return out;
  std::size_t bytes = 0;
  for_each_list_member(raw, [&](std::string_view m) {
    try {
      baggage_member b = parse_baggage_member(m);
      if (out.size() == max_baggage_members || bytes + m.size() + (out.empty() ? 0 : 1) > max_baggage_bytes) {
        report_malformed("baggage", "over the limit of 180 members or 8192 bytes (member dropped)", m);
        return;
      }
      bytes += m.size() + (out.empty() ? 0 : 1);
      out.push_back(std::move(b));
    } catch (const parse_error& e) {
      report_malformed("baggage", e.what(), m);
    }
  });
  return out;
}

}  // namespace detail

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

// Incoming headers; an empty view means "absent". A header received several
// times is given as its values joined with ',' (HTTP's rule; http.hpp and
// grpc.hpp do that).
struct incoming_headers {
  std::string_view traceparent{};
  std::string_view tracestate{};
  std::string_view baggage{};
};

// A new context: `base`'s variables, plus the registered variables named in
// `h.baggage` (decoded by their codecs) and trace_var() from traceparent /
// tracestate. Follows the receiver rules and never throws parse_error:
// - a malformed traceparent (all-zero ids, bad syntax, version ff, two of
//   them joined) is ignored, and the tracestate with it; trace_var() is then
//   left as in `base` (http::handle and grpc::serve start a new trace);
// - a later version is read by its first four fields and held as version 00,
//   with only the flags this version knows (sampled 01, random 02);
// - a malformed tracestate is dropped; the traceparent stays;
// - a malformed baggage member, or one whose codec rejects its value, is
//   dropped; the others are applied; a repeated key: the last one wins;
// - trace context comes only from its own headers: a baggage member named
//   like trace_var() is never applied (it is reported in `*unknown`).
// Every drop is reported to the on_malformed_header() handler. Baggage members
// of unregistered keys are not applied; they are appended to `*unknown` if
// given. Throws std::bad_alloc (nothing applied). Cost: one new context and
// one box per applied variable.
inline context extract(const incoming_headers& h, const context& base = copy_context(),
                       const registry& r = registry::global(), std::vector<baggage_member>* unknown = nullptr) {
  std::vector<std::pair<std::uint64_t, detail::box_ptr>> boxes;
  std::vector<baggage_member> skipped;
  for (baggage_member& m : detail::receive_baggage(h.baggage)) {
    auto e = r.find_key(m.key);
    if (!e || e->id == trace_var().id()) {
      skipped.push_back(std::move(m));
      continue;
    }
    try {
      detail::box_ptr b = e->decode(e->info, m.value);
      bool replaced = false;
      for (auto& [id, old] : boxes)
        if (id == e->id) old = std::move(b), replaced = true;
      if (!replaced) boxes.emplace_back(e->id, std::move(b));
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& x) {
      detail::report_malformed("baggage", "value of '" + m.key + "' rejected by its codec: " + x.what(), m.value);
    }
  }
  if (!h.traceparent.empty()) {
    if (auto p = detail::receive_traceparent(h.traceparent)) {
      trace_context t;
      t.parent = *p;
      if (!h.tracestate.empty()) t.tracestate = detail::receive_tracestate(h.tracestate);
      boxes.emplace_back(trace_var().id(),
                         detail::make_box<trace_context>(detail::var_access::info(trace_var()), std::move(t)));
    }
  }
  context out = detail::context_with(base, boxes);
  if (unknown)
    unknown->insert(unknown->end(), std::make_move_iterator(skipped.begin()), std::make_move_iterator(skipped.end()));
  return out;
}

// The headers that carry `c` to another process as it is: traceparent and
// tracestate when trace_var() has a value (the same parent-id: for a proxy
// that forwards), baggage when a registered variable has one. A trace
// context with an all-zero id (a default-constructed one) is not sent: what
// we emit is always valid.
inline std::vector<std::pair<std::string, std::string>> inject(const context& c = copy_context(),
                                                                const registry& r = registry::global()) {
  std::vector<std::pair<std::string, std::string>> out;
  auto t = c.get(trace_var());
  if (t && !detail::all_zero(t->parent.trace_id) && !detail::all_zero(t->parent.parent_id)) {
    out.emplace_back("traceparent", format_traceparent(t->parent));
    if (!t->tracestate.empty()) out.emplace_back("tracestate", t->tracestate);
  }
  std::string b = to_baggage(c, r);
  if (!b.empty()) out.emplace_back("baggage", std::move(b));
  return out;
}

// The headers for an outgoing call made from `c`: as inject(), but the
// traceparent is a new child span of c's trace (trace::child_of: the same
// trace-id, tracestate and flags, a new parent-id). What http::inject and the
// gRPC client interceptor send. `c` is not changed.
inline std::vector<std::pair<std::string, std::string>> inject_child(const context& c = copy_context(),
                                                                      const registry& r = registry::global()) {
  std::vector<std::pair<std::string, std::string>> out = inject(c, r);
  if (!out.empty() && out[0].first == "traceparent")
    out[0].second = format_traceparent(trace::child_of(*c.get(trace_var())).parent);
  return out;
}

// A context serving a request: `c` itself when it holds a trace context,
// else a copy of `c` with a new trace (trace::new_trace: random ids, the Level
// 2 random flag) set in it; `c` is not changed. http::handle, async_handle and
// grpc::serve use it: every request is served in a trace. Cost: O(1) and one
// box when a trace is started; throws std::bad_alloc.
inline context with_trace(context c) {
  if (!c.contains(trace_var())) {
    std::vector<std::pair<std::uint64_t, detail::box_ptr>> boxes;
    boxes.emplace_back(trace_var().id(),
                       detail::make_box<trace_context>(detail::var_access::info(trace_var()), trace::new_trace()));
    c = detail::context_with(c, boxes);
  }
  return c;
}

}  // namespace ctxvars
