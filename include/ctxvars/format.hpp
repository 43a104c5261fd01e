// Printing contexts: `std::cout << ctxvars::copy_context()` and, with {fmt},
// `fmt::format("{}", ctxvars::copy_context())` write a context's variables as
// `name=value` pairs (logfmt style), sorted by name then by variable id, with
// names and values quoted and escaped when they contain spaces, quotes, `=`,
// backslashes or control bytes. One context::entry prints as one pair.
//
//   ctxvars::context_var<std::string> request("request_id");
//   auto s = request.scoped_set("c22-r0");
//   std::cout << ctxvars::copy_context();   // request_id=c22-r0
//
// How a value becomes text is part of its variable's identity: strings (of
// every character type; a null C string prints `(null)`), numbers (__int128
// exactly), bool, enums, optionals and every T with an operator<< work out of
// the box (the full table is in detail/text.hpp); set_formatter() gives a variable its own; with {fmt},
// use_fmt_formatter() uses fmt::formatter<T>. A value without a formatter
// prints as `<?>`.
//
// Debug builds (CTXVARS_DEBUG_CHECKS) follow each pair printed for a context or
// an entry with `name.set_at=file:line`, where that value was set; the logging
// path (append_current_fields, spdlog's %&) does not.
//
// {fmt} is optional: define CTXVARS_WITH_FMT (the ctxvars::fmt target does, when
// Debian's libfmt-dev is found) or include <fmt/format.h> before this header to
// get the fmt::formatter specialisations and use_fmt_formatter().
#pragma once

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "context.hpp"
#include "context_var.hpp"
#include "detail/text.hpp"
#include "detail/var_access.hpp"

#if defined(CTXVARS_WITH_FMT) || defined(FMT_VERSION)
#include <fmt/format.h>
#define CTXVARS_FORMAT_HAS_FMT 1
#endif

namespace ctxvars {

namespace detail {
template <class T, class F>
void write_with(const void* p, bool p_is_box, std::string& out) {
  const T& v = text_arg<T>(p, p_is_box);
  const F f{};  // captureless: default-constructible and stateless (checked by set_formatter)
  if constexpr (std::is_invocable_v<const F&, const T&, std::string&>) {
    f(v, out);
  } else {
    out += f(v);
  }
}

struct field_ref {
  const var_info* info;
  const box_base* box;
};

// Appends `name=value` for `info`'s variable; `p` as in var_info::format.
inline void append_field(std::string& out, const var_info& info, const void* p, bool p_is_box,
                         std::string& scratch) {
  append_escaped(out, info.name);
  out += '=';
  text_writer w = info.format.load(std::memory_order_relaxed);
  if (!w) {
    out += "<?>";
    return;
  }
  scratch.clear();
  w(p, p_is_box, scratch);
  append_escaped(out, scratch);
}

#if CTXVARS_DEBUG_CHECKS
// Debug builds: appends ` name.set_at=file:line` for a value made by set()
// (the context printers show where each value came from).
inline void append_origin(std::string& out, const box_base& b, char sep = ' ') {
  if (!b.where.line()) return;
  out += sep;
  append_escaped(out, b.info->name + ".set_at");
  out += '=';
  std::string at = b.where.file_name();
  at += ':';
  at += std::to_string(b.where.line());
  append_escaped(out, at);
}
#endif

// Appends the fields of `m` (sorted by name, then id), separated by `sep`.
// `only_formattable` skips values without a formatter.
inline void append_map(std::string& out, const context_map& m, bool only_formattable, char sep = ' ') {
  field_ref small[32];
  std::vector<field_ref> big;
  field_ref* refs = small;
  std::size_t n = 0;
  const std::size_t size = m.size();
  if (size > 32) {
    big.resize(size);
    refs = big.data();
  }
  for (const auto& e : m) {
    const box_base* b = e.value.get();
    if (only_formattable && !b->info->format.load(std::memory_order_relaxed)) continue;
    refs[n++] = {b->info, b};
  }
  std::sort(refs, refs + n, [](const field_ref& a, const field_ref& b) {
    return a.info->name != b.info->name ? a.info->name < b.info->name : a.info->id < b.info->id;
  });
  std::string scratch;
  for (std::size_t i = 0; i < n; ++i) {
    if (i) out += sep;
    append_field(out, *refs[i].info, refs[i].box, true, scratch);
#if CTXVARS_DEBUG_CHECKS
    if (!only_formattable) append_origin(out, *refs[i].box, sep);
#endif
  }
}
}  // namespace detail

// Gives `v` its own formatter: a captureless lambda (or other empty,
// default-constructible callable) taking `const T&` and either returning
// something appendable to std::string or appending to a `std::string&` second
// argument. Affects every context holding a value of `v`, from now on; safe to
// call while other threads print. Does not allocate.
template <class T, class F>
void set_formatter(context_var<T>& v, F) noexcept {
  static_assert(std::is_empty_v<F> && std::is_default_constructible_v<F>,
                "set_formatter needs a captureless lambda (the formatter is stored as a plain function)");
  static_assert(std::is_invocable_v<const F&, const T&, std::string&> || std::is_invocable_v<const F&, const T&>,
                "set_formatter: the formatter must take (const T&) or (const T&, std::string&)");
  detail::var_access::info(v)->format.store(&detail::write_with<T, F>, std::memory_order_relaxed);
}
// Removes `v`'s formatter: its values print as `<?>` and logs skip them.
template <class T>
void clear_formatter(context_var<T>& v) noexcept {
  detail::var_access::info(v)->format.store(nullptr, std::memory_order_relaxed);
}
// Whether values of `v` have a formatter.
template <class T>
bool has_formatter(const context_var<T>& v) noexcept {
  return detail::var_access::info(v)->format.load(std::memory_order_relaxed) != nullptr;
}

// Appends `c`'s variables as `name=value` pairs separated by single spaces,
// sorted by name then variable id; nothing for an empty context. Reads a
// snapshot (safe while another thread runs in `c`). Allocates the text only
// (plus a sort buffer above 32 variables). Throws what a formatter throws.
inline void format_to(std::string& out, const context& c) {
  detail::context_map m = detail::context_access::impl(c)->snapshot();
  detail::append_map(out, m, false);
}
// Appends one entry as `name=value`.
inline void format_to(std::string& out, const context::entry& e) {
  const detail::box_base* b = detail::context_access::box(e);
  std::string scratch;
  detail::append_field(out, *b->info, b, true, scratch);
#if CTXVARS_DEBUG_CHECKS
  detail::append_origin(out, *b);
#endif
}
inline std::string to_string(const context& c) {
  std::string s;
  format_to(s, c);
  return s;
}
inline std::string to_string(const context::entry& e) {
  std::string s;
  format_to(s, e);
  return s;
}
inline std::ostream& operator<<(std::ostream& os, const context& c) { return os << to_string(c); }
inline std::ostream& operator<<(std::ostream& os, const context::entry& e) { return os << to_string(e); }

// The logging fast path: appends the current context's formattable variables
// as pairs (what format_to(copy_context()) would print minus the `<?>` ones)
// without making a copy of the context. `sep` separates the pairs.
inline void append_current_fields(std::string& out, char sep = ' ') {
  detail::context_impl* cur = detail::this_thread_state().current;
  if (!cur) return;
  // This thread is the only writer of its current context: no lock needed.
  // A copy of the root (one reference), not the map itself: a formatter may
  // set variables, which must not change the trie under the walk.
  const detail::context_map m = cur->map;
  detail::append_map(out, m, true, sep);
}
// Appends `name=value` for each of `vars` that has a value in the current
// context (or a default), in the order given, skipping those without either.
template <class... T>
void append_current_fields(std::string& out, const context_var<T>&... vars) {
  // Keeps the current values alive should a formatter set one of them.
  const detail::context_map keep = detail::this_thread_state().current ? detail::this_thread_state().current->map : detail::context_map();
  std::string scratch;
  bool first = true;
  auto one = [&](const auto& v) {
    using V = typename std::remove_cvref_t<decltype(v)>::value_type;
    const V* p = v.peek();
    if (!p && v.default_value()) p = &*v.default_value();
    if (!p) return;
    if (!first) out += ' ';
    first = false;
    detail::append_field(out, *detail::var_access::info(v), p, false, scratch);
  };
  (one(vars), ...);
}

#ifdef CTXVARS_FORMAT_HAS_FMT
namespace detail {
template <class T>
void write_fmt(const void* p, bool p_is_box, std::string& out) {
  const T& v = text_arg<T>(p, p_is_box);
  if constexpr (is_char_pointer_v<T>) {
    if (!v) {  // fmt throws format_error for a null C string
      out += "(null)";
      return;
    }
  }
  fmt::format_to(std::back_inserter(out), "{}", v);
}
}  // namespace detail
// Formats `v`'s values with fmt::formatter<T> ("{}").
template <class T>
void use_fmt_formatter(context_var<T>& v) noexcept {
  detail::var_access::info(v)->format.store(&detail::write_fmt<T>, std::memory_order_relaxed);
}
#endif

}  // namespace ctxvars

#ifdef CTXVARS_FORMAT_HAS_FMT
template <>
struct fmt::formatter<ctxvars::context> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const ctxvars::context& c, Ctx& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(ctxvars::to_string(c), ctx);
  }
};
template <>
struct fmt::formatter<ctxvars::context::entry> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const ctxvars::context::entry& e, Ctx& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(ctxvars::to_string(e), ctx);
  }
};
#endif
