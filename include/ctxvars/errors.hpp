// The exceptions ctxvars throws. Each derives from the standard exception the
// contract names and carries a message naming the variable or context, in the
// spirit of Python's contextvars messages.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>

namespace ctxvars {

// get() found no value in the current context and the variable has no default
// (Python: LookupError).
struct lookup_error : std::out_of_range {
  using std::out_of_range::out_of_range;
};

// reset(token) with a token of another variable, or created in another context
// (Python: ValueError).
struct foreign_token_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// reset(token) with a token that was already used (Python: RuntimeError).
struct used_token_error : std::logic_error {
  using std::logic_error::logic_error;
};

// context::run() on a context some thread (this one included) is already inside
// (Python: RuntimeError "cannot enter context: ... is already entered").
struct context_in_use_error : std::logic_error {
  using std::logic_error::logic_error;
};

// context::entry::value<T>() on an entry whose value is not a T. Derives from
// std::bad_cast (what a failed dynamic_cast of a reference throws); what()
// names the variable, the stored type and the requested one.
class entry_type_error : public std::bad_cast {
 public:
  explicit entry_type_error(const std::string& message) : msg_(std::make_shared<const std::string>(message)) {}
  const char* what() const noexcept override { return msg_->c_str(); }

 private:
  std::shared_ptr<const std::string> msg_;  // shared: copying an exception must not throw
};

namespace detail {
[[noreturn]] void throw_lookup(std::string_view var_name);
[[noreturn]] void throw_used_token(std::string_view var_name, bool moved_from);
[[noreturn]] void throw_foreign_var(std::string_view var_name, std::uint64_t token_var_id);
[[noreturn]] void throw_entry_type(std::string_view var_name, const std::type_info& stored,
                                   const std::type_info& requested);
[[noreturn]] void throw_foreign_context(std::string_view var_name);
}  // namespace detail

}  // namespace ctxvars
