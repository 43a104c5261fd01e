// ctxvars::debug::source_location: std::source_location where the standard
// library has it, else (clang 14 with libstdc++ 12, which lacks
// __builtin_source_location) the same members from the older builtins, which
// clang also evaluates at the outermost caller when used as a default argument.
// What the debug checks (CTXVARS_DEBUG_CHECKS) record for each set().
#pragma once

#include <cstdint>
#include <source_location>

namespace ctxvars::debug {

#if defined(__cpp_lib_source_location)
using source_location = std::source_location;
#else
class source_location {
 public:
  static constexpr source_location current(const char* file = __builtin_FILE(),
                                           const char* function = __builtin_FUNCTION(),
                                           std::uint_least32_t line = __builtin_LINE(),
                                           std::uint_least32_t column = __builtin_COLUMN()) noexcept {
    source_location l;
    l.file_ = file;
    l.function_ = function;
    l.line_ = line;
    l.column_ = column;
    return l;
  }
  constexpr source_location() noexcept = default;
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr const char* function_name() const noexcept { return function_; }
  constexpr std::uint_least32_t line() const noexcept { return line_; }
  constexpr std::uint_least32_t column() const noexcept { return column_; }

 private:
  const char* file_ = "";
  const char* function_ = "";
  std::uint_least32_t line_ = 0;
  std::uint_least32_t column_ = 0;
};
#endif

}  // namespace ctxvars::debug
