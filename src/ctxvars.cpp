// Compiled parts of the core: id sources, per-thread state and its teardown,
// and the (cold) error paths.
#include <cxxabi.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "ctxvars/ctxvars.hpp"

namespace ctxvars {
namespace detail {

constinit thread_local thread_state tls{};

namespace {
std::atomic<std::uint64_t> var_ids{1};
std::atomic<std::uint64_t> context_ids{1};
std::atomic<std::uint64_t> thread_ids{1};

// Live variable identities by id, for error messages. Never destroyed, so
// identities that die during static destruction can still unregister.
struct var_registry {
  std::mutex m;
  std::unordered_map<std::uint64_t, const var_info*> live;
};
var_registry& registry() {
  static var_registry* r = new var_registry;
  return *r;
}

// Destroys the thread's base context at thread exit. Destructors of values
// may run user code that reads or sets variables again: reads see an empty
// context; a set recreates the base context once more (see writable_context).
struct base_holder {
  bool armed = false;
  ~base_holder() {
    thread_state& st = this_thread_state();
    if (st.current == st.base) st.current = nullptr;
    context_impl* b = st.base;
    st.base = nullptr;
    st.torn_down = true;
    st.version = fresh_version(st);
    if (b) b->release();
    // No more parking from here on (torn_down); free what is parked.
    for (box_base*& s : st.spare)
      if (box_base* shell = std::exchange(s, nullptr)) shell->free_shell(shell);
    while (void* p = st.free_contexts) {
      st.free_contexts = *static_cast<void**>(p);
      ::operator delete(p, std::align_val_t{alignof(context_impl)});
    }
    st.n_free_contexts = 0;
    while (void* p = st.free_layers) {
      st.free_layers = *static_cast<void**>(p);
      ::operator delete(p);
    }
    st.n_free_layers = 0;
  }
};
// Function-local, so each registers its destructor when first reached (a
// namespace-scope thread_local would be initialised together with the others
// of this file, and a late one would already be destroyed when needed).
void arm_holder() {
  thread_local base_holder holder;
  holder.armed = true;
}
void arm_late_holder() {  // for a set made by a destructor during thread exit
  thread_local base_holder late_holder;
  late_holder.armed = true;
}
thread_local bool late_used = false;
}  // namespace

std::uint64_t new_thread_id() noexcept { return thread_ids.fetch_add(1, std::memory_order_relaxed); }

void register_var(var_info* info) {
  var_registry& r = registry();
  std::lock_guard lk(r.m);
  r.live.emplace(info->id, info);
}
void unregister_var(std::uint64_t id) noexcept {
  var_registry& r = registry();
  std::lock_guard lk(r.m);
  r.live.erase(id);
}

std::uint64_t next_var_id() noexcept { return var_ids.fetch_add(1, std::memory_order_relaxed); }
// Context ids come from per-thread blocks: no shared counter on copy_context.
std::uint64_t next_context_id() noexcept {
  thread_state& st = this_thread_state();
  if (CTXVARS_UNLIKELY(st.next_context_id == st.end_context_id)) {
    constexpr std::uint64_t block = 4096;
    st.next_context_id = context_ids.fetch_add(block, std::memory_order_relaxed);
    st.end_context_id = st.next_context_id + block;
  }
  return st.next_context_id++;
}

void* context_impl::operator new(std::size_t n) {
  thread_state& st = this_thread_state();
  if (void* p = st.free_contexts) {
    st.free_contexts = *static_cast<void**>(p);
    --st.n_free_contexts;
    return p;
  }
  return ::operator new(n, std::align_val_t{alignof(context_impl)});
}

void context_impl::operator delete(void* p) noexcept {
  thread_state& st = this_thread_state();
  if (st.n_free_contexts < 64 && !st.torn_down) {
    if (CTXVARS_UNLIKELY(!st.armed)) arm_thread_exit();
    *static_cast<void**>(p) = st.free_contexts;
    st.free_contexts = p;
    ++st.n_free_contexts;
    return;
  }
  ::operator delete(p, std::align_val_t{alignof(context_impl)});
}

void arm_thread_exit() noexcept {
  thread_state& st = this_thread_state();
  if (st.armed || st.torn_down) return;
  st.armed = true;
  arm_holder();
}

context_impl* writable_context() {
  thread_state& st = this_thread_state();
  if (st.current) return st.current;
  if (!st.base) {
    if (st.torn_down) {
      if (late_used)
        throw std::logic_error(
            "ctxvars: set() during thread exit after this thread's context was destroyed twice");
      late_used = true;
      arm_late_holder();
    } else {
      arm_thread_exit();
    }
    st.base = new context_impl(false);
  }
  st.current = st.base;
  st.version = fresh_version(st);
  return st.base;
}

namespace {
std::string quoted(std::string_view name) { return "'" + std::string(name) + "'"; }

// The name of a live variable identity, or nullopt if it is gone.
std::optional<std::string> var_name_of(std::uint64_t id) {
  var_registry& r = registry();
  std::lock_guard lk(r.m);
  auto it = r.live.find(id);
  if (it == r.live.end()) return std::nullopt;
  return it->second->name;
}

std::string type_name(const std::type_info& t) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(t.name());
}
}  // namespace

void throw_context_in_use(bool by_this_thread) {
  throw context_in_use_error(std::string("ctxvars: cannot enter context: it is already entered by ") +
                             (by_this_thread ? "this thread (a context cannot be entered twice)"
                                             : "another thread (a context is entered by one thread at a time)"));
}
void throw_moved_from_bound() {
  throw std::logic_error(
      "ctxvars: call of a moved-from function object made by ctxvars::bind (call the object it was moved to)");
}
void throw_moved_from_context_executor() {
  throw std::logic_error(
      "ctxvars: use of a moved-from context_executor (use the executor it was moved to, or a copy)");
}
void throw_lookup(std::string_view var_name) {
  throw lookup_error("ctxvars: context_var " + quoted(var_name) +
                     " has no value in the current context and no default");
}
void throw_used_token(std::string_view var_name, bool moved_from) {
  if (moved_from)
    throw used_token_error("ctxvars: token of context_var " + quoted(var_name) +
                           " was moved from; reset with the token it was moved to");
  throw used_token_error("ctxvars: token of context_var " + quoted(var_name) + " has already been used once");
}
void throw_foreign_var(std::string_view var_name, std::uint64_t token_var_id) {
  const std::optional<std::string> other = var_name_of(token_var_id);
  throw foreign_token_error("ctxvars: token was created by a different context_var, " +
                            (other ? quoted(*other) : std::string("since destroyed,")) + " not " +
                            quoted(var_name));
}
void throw_foreign_context(std::string_view var_name) {
  throw foreign_token_error("ctxvars: token of context_var " + quoted(var_name) +
                            " was created in a different context than the current one");
}
void throw_entry_type(std::string_view var_name, const std::type_info& stored, const std::type_info& requested) {
  throw entry_type_error("ctxvars: context_var " + quoted(var_name) + " holds a value of type " +
                         quoted(type_name(stored)) + ", not " + quoted(type_name(requested)));
}

}  // namespace detail
}  // namespace ctxvars
