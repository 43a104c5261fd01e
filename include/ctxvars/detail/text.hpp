// How a variable's value becomes text when a context is printed: the writer
// context_var's constructor installs in the variable's identity (var_info::format).
//
// Known without help: strings (std::string, std::string_view, const char*),
// bool, characters, integers, floating point, and any T with an
// `std::ostream& operator<<(std::ostream&, const T&)` visible where the
// variable is constructed. Other types print as `<?>` until given a formatter
// (ctxvars::set_formatter in <ctxvars/format.hpp>).
#pragma once

#include <charconv>
#include <concepts>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

#include "value_box.hpp"

namespace ctxvars::detail {

// See var_info::format.
using text_writer = void (*)(const void* p, bool p_is_box, std::string& out);

template <class T>
const T& text_arg(const void* p, bool p_is_box) noexcept {
  return p_is_box ? box_value<T>(static_cast<const box_base*>(p)) : *static_cast<const T*>(p);
}

template <class T>
concept ostream_writable = requires(std::ostream& os, const T& v) {
  { os << v } -> std::convertible_to<std::ostream&>;
};

template <class T>
void write_text(const void* p, bool p_is_box, std::string& out) {
  const T& v = text_arg<T>(p, p_is_box);
  if constexpr (std::is_same_v<T, bool>) {
    out += v ? "true" : "false";
  } else if constexpr (std::is_same_v<T, char>) {
    out += v;
  } else if constexpr (std::is_integral_v<T>) {
    char buf[24];
    using wide = std::conditional_t<std::is_signed_v<T>, long long, unsigned long long>;
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<wide>(v));
    out.append(buf, r.ptr);
  } else if constexpr (std::is_floating_point_v<T>) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out += std::string_view(v);
  } else {
    std::ostringstream os;
    os << v;
    out += std::move(os).str();
  }
}

// The writer a context_var<T> starts with, or null when T has none.
template <class T>
constexpr text_writer default_text_writer() noexcept {
  if constexpr (std::is_arithmetic_v<T> || std::is_convertible_v<const T&, std::string_view> ||
                ostream_writable<T>)
    return &write_text<T>;
  else
    return nullptr;
}

// Appends `s` so that a reader (and a logfmt parser) can tell where it ends:
// as is when it is a plain token; otherwise in double quotes with `"` and `\`
// backslash-escaped and control bytes as \n, \r, \t or \xNN. An empty string
// prints as "".
inline void append_escaped(std::string& out, std::string_view s) {
  bool plain = !s.empty();
  for (unsigned char c : s)
    if (c <= 0x20 || c == '"' || c == '=' || c == '\\' || c == 0x7f) {
      plain = false;
      break;
    }
  if (plain) {
    out += s;
    return;
  }
  out += '"';
  static constexpr char hex[] = "0123456789abcdef";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\x";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

}  // namespace ctxvars::detail
