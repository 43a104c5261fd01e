// How a variable's value becomes text when a context is printed: the writer
// context_var's constructor installs in the variable's identity (var_info::format).
//
// Known without help (in this order of precedence):
//   bool                      true / false
//   std::nullptr_t            nullptr
//   char                      the character
//   char8_t, char16_t, char32_t, wchar_t
//                             the character, UTF-8 encoded (a lone surrogate or an
//                             invalid code point prints as U+FFFD)
//   signed/unsigned char, other integers, __int128 and unsigned __int128
//                             the exact decimal number
//   float, double, long double
//                             the shortest decimal that reads back exactly
//   pointers to any character type, null included
//                             the string, `(null)` for a null pointer (never a crash)
//   strings and string views of char, char8_t, char16_t, char32_t, wchar_t
//                             the text, UTF-8 encoded (UTF-16 and UTF-32 transcoded;
//                             invalid sequences print U+FFFD)
//   anything convertible to std::string_view, and any T with an
//   `std::ostream& operator<<(std::ostream&, const T&)` visible where the variable
//   is constructed (other pointers print their address this way)
//   an enumeration without operator<< (std::byte too)
//                             its underlying integer
//   std::optional<U> with U printable (and without operator<<)
//                             U's text, or `nullopt`
// Other types (__float128 among them: there is no exact printer for it without
// libquadmath) print as `<?>` until given a formatter (ctxvars::set_formatter in
// <ctxvars/format.hpp>). Writers allocate only the text they append and throw
// only what an operator<< or the allocation throws.
#pragma once

#include <charconv>
#include <concepts>
#include <cstddef>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
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
inline constexpr bool is_char_type_v =
    std::is_same_v<T, char> || std::is_same_v<T, signed char> || std::is_same_v<T, unsigned char> ||
    std::is_same_v<T, char8_t> || std::is_same_v<T, char16_t> || std::is_same_v<T, char32_t> ||
    std::is_same_v<T, wchar_t>;

// A character type whose values are characters rather than small numbers
// (signed and unsigned char are int8_t and uint8_t: numbers).
template <class T>
inline constexpr bool is_text_char_v = std::is_same_v<T, char8_t> || std::is_same_v<T, char16_t> ||
                                       std::is_same_v<T, char32_t> || std::is_same_v<T, wchar_t>;

// T is a pointer to (const/volatile) characters: a C string that may be null.
template <class T>
inline constexpr bool is_char_pointer_v =
    std::is_pointer_v<T> && is_char_type_v<std::remove_const_t<std::remove_pointer_t<T>>>;

#ifdef __SIZEOF_INT128__
// __extension__: the names stay quiet under -Wpedantic, where the library's
// users may spell them `__int128` in gnu++ mode or not at all.
__extension__ typedef __int128 int128;
__extension__ typedef unsigned __int128 uint128;
template <class T>
inline constexpr bool is_int128_v = std::is_same_v<T, int128> || std::is_same_v<T, uint128>;
#else
template <class T>
inline constexpr bool is_int128_v = false;
#endif

template <class T>
inline constexpr bool is_std_float_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, long double>;

template <class T>
struct is_optional : std::false_type {};
template <class U>
struct is_optional<std::optional<U>> : std::true_type {};

// The wide string view T converts to (char8_t/char16_t/char32_t/wchar_t), or void.
template <class T>
auto wide_view_of() {
  if constexpr (std::is_convertible_v<const T&, std::u8string_view>)
    return std::u8string_view();
  else if constexpr (std::is_convertible_v<const T&, std::u16string_view>)
    return std::u16string_view();
  else if constexpr (std::is_convertible_v<const T&, std::u32string_view>)
    return std::u32string_view();
  else if constexpr (std::is_convertible_v<const T&, std::wstring_view>)
    return std::wstring_view();
}
template <class T>
using wide_view_t = decltype(wide_view_of<T>());

inline void append_code_point(std::string& out, char32_t c) {
  if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) c = 0xFFFD;
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Appends `s` as UTF-8: 1-byte units as they are, 2-byte units as UTF-16,
// 4-byte units as UTF-32 (wchar_t is either, by its size).
template <class C>
void append_utf8(std::string& out, std::basic_string_view<C> s) {
  if constexpr (sizeof(C) == 1) {
    out.append(reinterpret_cast<const char*>(s.data()), s.size());
  } else if constexpr (sizeof(C) == 2) {
    for (std::size_t i = 0; i < s.size(); ++i) {
      char32_t u = static_cast<char16_t>(s[i]);
      if (u >= 0xD800 && u <= 0xDBFF && i + 1 < s.size()) {
        const char32_t lo = static_cast<char16_t>(s[i + 1]);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
          u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
          ++i;
        }
      }
      append_code_point(out, u);  // a lone surrogate becomes U+FFFD
    }
  } else {
    for (C c : s) append_code_point(out, static_cast<char32_t>(c));
  }
}

// Appends the exact decimal of `v`: U is an unsigned integer type
// (unsigned __int128 included), `negative` says v stands for -v.
template <class U>
void append_decimal(std::string& out, U v, bool negative) {
  char buf[48];  // 2^128 has 39 digits
  char* p = buf + sizeof buf;
  do {
    *--p = static_cast<char>('0' + static_cast<int>(v % 10));
    v /= 10;
  } while (v);
  if (negative) *--p = '-';
  out.append(p, buf + sizeof buf);
}
// A signed S through its unsigned twin U: negating in U is exact also for the
// minimum value.
template <class U, class S>
void append_signed(std::string& out, S v) {
  append_decimal<U>(out, v < 0 ? static_cast<U>(U(0) - static_cast<U>(v)) : static_cast<U>(v), v < 0);
}

// Whether write_text<T> knows T.
template <class T>
constexpr bool has_text() noexcept {
  if constexpr (is_optional<T>::value && !ostream_writable<T>)
    return has_text<typename T::value_type>();
  else
    return std::is_same_v<T, bool> || std::is_same_v<T, std::nullptr_t> || std::is_integral_v<T> ||
           is_int128_v<T> || is_std_float_v<T> || is_char_pointer_v<T> ||
           std::is_convertible_v<const T&, std::string_view> || !std::is_void_v<wide_view_t<T>> ||
           ostream_writable<T> || std::is_enum_v<T>;
}
template <class T>
inline constexpr bool has_text_v = has_text<T>();

template <class T>
void write_text(const void* p, bool p_is_box, std::string& out) {
  const T& v = text_arg<T>(p, p_is_box);
  if constexpr (std::is_same_v<T, bool>) {
    out += v ? "true" : "false";
  } else if constexpr (std::is_same_v<T, std::nullptr_t>) {
    out += "nullptr";
  } else if constexpr (std::is_same_v<T, char>) {
    out += v;
  } else if constexpr (is_text_char_v<T>) {
    if constexpr (sizeof(T) == 1)
      out += static_cast<char>(v);
    else
      append_code_point(out, static_cast<char32_t>(v));
#ifdef __SIZEOF_INT128__
  } else if constexpr (std::is_same_v<T, int128>) {
    append_signed<uint128>(out, v);
  } else if constexpr (std::is_same_v<T, uint128>) {
    append_decimal(out, v, false);
#endif
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    // Through the widest standard type: exact for every integer up to 64 bits.
    append_signed<unsigned long long>(out, static_cast<long long>(v));
  } else if constexpr (std::is_integral_v<T>) {
    append_decimal(out, static_cast<unsigned long long>(v), false);
  } else if constexpr (is_std_float_v<T>) {
    char buf[128];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    if (r.ec == std::errc()) out.append(buf, r.ptr);
  } else if constexpr (is_char_pointer_v<T>) {
    using C = std::remove_const_t<std::remove_pointer_t<T>>;
    if (!v) {
      out += "(null)";
    } else if constexpr (sizeof(C) == 1) {
      out += std::string_view(reinterpret_cast<const char*>(v));
    } else {
      append_utf8(out, std::basic_string_view<C>(v));
    }
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out += std::string_view(v);
  } else if constexpr (!std::is_void_v<wide_view_t<T>>) {
    append_utf8(out, wide_view_t<T>(v));
  } else if constexpr (ostream_writable<T>) {
    std::ostringstream os;
    os << v;
    out += std::move(os).str();
  } else if constexpr (std::is_enum_v<T>) {
    write_text<std::underlying_type_t<T>>(&v, false, out);  // lands in an integer branch
  } else {
    static_assert(is_optional<T>::value);
    if (v)
      write_text<typename T::value_type>(&*v, false, out);
    else
      out += "nullopt";
  }
}

// The writer a context_var<T> starts with, or null when T has none.
template <class T>
constexpr text_writer default_text_writer() noexcept {
  if constexpr (has_text_v<T>)
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
