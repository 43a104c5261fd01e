// Codecs and the registry of variables that cross process boundaries.
//
// A variable crosses a process boundary (baggage header, snapshot bytes) only
// when registered with a codec: a pair of functions turning its value into a
// string and back. The registry maps the variable's name (its key on the wire)
// to its identity and codec.
//
//   ctxvars::context_var<std::string> tenant("tenant");
//   ctxvars::registry::global().add(tenant);                  // codec<std::string>
//   ctxvars::registry::global().add(retries, my_codec{});     // any type with encode/decode
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "context.hpp"
#include "context_var.hpp"
#include "detail/value_box.hpp"
#include "detail/var_access.hpp"

namespace ctxvars {

// Text that does not parse: a malformed, oversized or hostile header or
// snapshot, or a value its codec rejects. The message names the header or key
// and what is wrong; nothing was changed.
struct parse_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// A registration the registry refuses (a name that is not a valid key, or a
// key already taken).
struct registry_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// The default codecs: `std::string encode(const T&)` and `T decode(std::string_view)`,
// decode throwing std::invalid_argument (or any std::exception) on bad text.
// Strings, bool ("true"/"false"), integers and floating point (strict: the
// whole text must be the number). Specialise for your own types, or pass any
// object with these two members to registry::add.
template <class T, class = void>
struct codec;

template <>
struct codec<std::string> {
  static std::string encode(const std::string& v) { return v; }
  static std::string decode(std::string_view s) { return std::string(s); }
};

template <>
struct codec<bool> {
  static std::string encode(bool v) { return v ? "true" : "false"; }
  static bool decode(std::string_view s) {
    if (s == "true") return true;
    if (s == "false") return false;
    throw std::invalid_argument("not a bool (true|false)");
  }
};

template <class T>
struct codec<T, std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>>> {
  static std::string encode(T v) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
  }
  static T decode(std::string_view s) {
    T v{};
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size())
      throw std::invalid_argument("not a number of the variable's type");
    return v;
  }
};

namespace detail {
// RFC 7230 tchar: what a baggage key may contain.
constexpr bool is_tchar(unsigned char c) noexcept {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}
inline bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!is_tchar(c)) return false;
  return true;
}
}  // namespace detail

// The variables that cross process boundaries, by key (the variable's name).
// Thread-safe: add/remove take a writer lock, lookups a reader lock; codecs
// run outside the lock. An entry keeps the variable's identity alive, so a
// registered variable may be destroyed (its values then still encode; decoded
// values go to the dead identity, where no live variable reads them) — remove
// it first to stop that.
class registry {
 public:
  // One registered variable, type-erased.
  struct entry {
    std::string key;
    std::uint64_t id;
    detail::var_info* info;
    std::function<void(const detail::box_base*, std::string&)> encode;
    std::function<detail::box_ptr(detail::var_info*, std::string_view)> decode;
    entry(std::string k, detail::var_info* i) : key(std::move(k)), id(i->id), info(i) { i->retain(); }
    entry(const entry&) = delete;
    entry& operator=(const entry&) = delete;
    ~entry() { info->release(); }
  };

  registry() = default;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  // The process-wide registry the propagation functions use by default.
  static registry& global() {
    static registry r;
    return r;
  }

  // Registers `v` under its name with `c` (an object with `encode(const T&) ->
  // std::string` and `decode(std::string_view) -> T`). Throws registry_error if
  // the name is not a valid key (an RFC 7230 token: letters, digits and
  // !#$%&'*+-.^_`|~) or is taken by another variable; registering the same
  // variable again replaces its codec. Allocates.
  template <class T, class C = codec<T>>
  void add(const context_var<T>& v, C c = C{}) {
    const std::string key(v.name());
    if (!detail::is_token(key))
      throw registry_error("ctxvars: cannot register context_var '" + key +
                           "': its name is not a valid baggage key (RFC 7230 token)");
    auto e = std::make_shared<entry>(key, detail::var_access::info(v));
    e->encode = [c](const detail::box_base* b, std::string& out) { out += c.encode(detail::box_value<T>(b)); };
    e->decode = [c](detail::var_info* info, std::string_view s) { return detail::make_box<T>(info, c.decode(s)); };
    std::unique_lock lock(mutex_);
    auto it = by_key_.find(key);
    if (it != by_key_.end() && it->second->id != e->id)
      throw registry_error("ctxvars: cannot register context_var '" + key +
                           "': another variable is registered under that name");
    if (it != by_key_.end()) by_id_.erase(it->second->id);
    by_id_[e->id] = e;
    by_key_[key] = std::move(e);
  }
  // Unregisters `v`; false if it was not registered.
  template <class T>
  bool remove(const context_var<T>& v) {
    std::unique_lock lock(mutex_);
    auto it = by_id_.find(v.id());
    if (it == by_id_.end()) return false;
    by_key_.erase(it->second->key);
    by_id_.erase(it);
    return true;
  }
  template <class T>
  bool contains(const context_var<T>& v) const {
    std::shared_lock lock(mutex_);
    return by_id_.count(v.id()) != 0;
  }
  std::size_t size() const {
    std::shared_lock lock(mutex_);
    return by_id_.size();
  }

  std::shared_ptr<const entry> find_key(std::string_view key) const {
    std::shared_lock lock(mutex_);
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : it->second;
  }
  std::shared_ptr<const entry> find_id(std::uint64_t id) const {
    std::shared_lock lock(mutex_);
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : it->second;
  }

  // The registered variables that have a value in `c`, encoded, sorted by key.
  // Throws what a codec throws.
  std::vector<std::pair<std::string, std::string>> encode(const context& c) const {
    detail::context_map m = detail::context_access::impl(c)->snapshot();
    std::vector<std::pair<std::shared_ptr<const entry>, const detail::box_base*>> found;
    {
      std::shared_lock lock(mutex_);
      if (by_id_.empty()) return {};
      for (const auto& e : m) {
        auto it = by_id_.find(e.value->info->id);
        if (it != by_id_.end()) found.emplace_back(it->second, e.value.get());
      }
    }
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(found.size());
    for (auto& [e, b] : found) {
      std::string v;
      e->encode(b, v);
      out.emplace_back(e->key, std::move(v));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  mutable std::shared_mutex mutex_;
  std::map<std::string, std::shared_ptr<const entry>, std::less<>> by_key_;
  std::map<std::uint64_t, std::shared_ptr<const entry>> by_id_;
};

namespace detail {
// A new context: `base`'s variables plus `boxes` (variable id, value). Nothing
// visible changes until it returns, so a throw (std::bad_alloc) leaves no trace.
inline context context_with(const context& base, std::vector<std::pair<std::uint64_t, box_ptr>>& boxes) {
  context out = base.copy();
  context_impl* impl = context_access::impl(out);
  // `out` is new: no thread is inside and no other handle exists, so it may be
  // written from here without entering it (the writer lock is taken anyway).
  for (auto& [id, box] : boxes) {
    // What this drops is held by `base` too, or is a value of `boxes` set
    // twice: its destructor sees nothing half-done (`out` is not visible yet).
    context_map::retired dropped;
    box_ptr old;
    impl->assign(id, std::move(box), old, dropped);
  }
  return out;
}
}  // namespace detail

}  // namespace ctxvars
