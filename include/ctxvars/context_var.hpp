// context_var<T>: a context-local variable (Python's contextvars.ContextVar),
// with its token<T> and the scoped_set guard.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "config.hpp"
#include "detail/context_impl.hpp"
#include "detail/debug_checks.hpp"
#include "detail/text.hpp"
#include "detail/value_box.hpp"
#include "errors.hpp"
#include "flow.hpp"

namespace ctxvars {

template <class T>
class context_var;
namespace detail {
struct var_access;  // integrations' way to a variable's identity (format.hpp, propagation.hpp)
}

// The receipt of one context_var::set: what the variable held before, and the
// right to undo the set once, in the context where it happened. Move-only;
// a moved-from token counts as used.
template <class T>
class token {
 public:
  token(token&& o) noexcept
      : var_(o.var_),
        var_id_(o.var_id_),
        ctx_id_(o.ctx_id_),
        old_(std::move_if_noexcept(o.old_)),  // a copy when T's move may throw (its copy cannot)
        old_box_(std::move(o.old_box_)),
        had_old_(o.had_old_),
        state_(std::exchange(o.state_, state::moved_from)) {}
  // Takes o's place; what this token held (a value, a box: user destructors)
  // is destroyed last, once both tokens are in their final state.
  token& operator=(token&& o) noexcept {
    if (this != &o) {
      token taken(std::move(o));
      swap(taken);
    }
    return *this;
  }
  token(const token&) = delete;
  token& operator=(const token&) = delete;

  // The variable whose set made this token. Precondition: it still exists
  // (a token may outlive its variable; reset through another variable then
  // throws foreign_token_error rather than touching the dead one).
  const context_var<T>& var() const noexcept { return *var_; }
  // The value before the set; nullopt is Python's Token.MISSING. Stays
  // readable after reset. For a T with a nothrow copy the token keeps a copy;
  // for any other T it is the old value itself, in the old box the token
  // keeps alive (such a box holds a std::optional<T>).
  const std::optional<T>& old_value() const noexcept {
    if constexpr (detail::boxed_as_optional<T>) {
      return old_box_ ? detail::box_optional<T>(old_box_.get()) : detail::no_old_value<T>;
    } else {
      return old_;
    }
  }
  // Whether the variable had a value before the set (for any T).
  bool had_old_value() const noexcept { return had_old_; }
  // True once reset() has consumed the token, and for a moved-from token.
  bool used() const noexcept { return state_ != state::live; }

 private:
  friend class context_var<T>;
  enum class state : unsigned char { live, used, moved_from };
  token(const context_var<T>* v, std::uint64_t var_id, std::uint64_t ctx_id) noexcept
      : var_(v), var_id_(var_id), ctx_id_(ctx_id) {}
  void swap(token& o) noexcept {
    using std::swap;
    swap(var_, o.var_);
    swap(var_id_, o.var_id_);
    swap(ctx_id_, o.ctx_id_);
    if constexpr (!detail::boxed_as_optional<T>) {
      // By construction, not assignment: T may be nothrow-copyable yet not
      // assignable (a const member).
      std::optional<T> mine(std::move_if_noexcept(old_));
      old_.reset();
      if (o.old_) old_.emplace(std::move_if_noexcept(*o.old_));
      o.old_.reset();
      if (mine) o.old_.emplace(std::move_if_noexcept(*mine));
    }
    std::swap(old_box_, o.old_box_);
    swap(had_old_, o.had_old_);
    swap(state_, o.state_);
  }

  const context_var<T>* var_;
  std::uint64_t var_id_;
  std::uint64_t ctx_id_;
  struct no_copy {};
  // The copy of the old value (T with a nothrow copy only; see old_value()).
  [[no_unique_address]] std::conditional_t<detail::boxed_as_optional<T>, no_copy, std::optional<T>> old_;
  detail::box_ptr old_box_;  // the displaced box, reinstalled by reset without allocating
  bool had_old_ = false;
  state state_ = state::live;
};

// Guard returned by context_var::scoped_set: its destructor resets the token.
// If that reset is impossible — the guard dies in another context than the one
// it set in (for example after a coroutine resumed elsewhere), or its token was
// already used — the destructor does nothing: the value stays where it was set.
// Call reset() to get the exception instead.
template <class T>
class [[nodiscard]] scoped_value {
 public:
  // Movable (the moved-from guard does nothing), not copyable or assignable.
  scoped_value(scoped_value&& o) noexcept : var_(o.var_), tok_(std::move(o.tok_)) {}
  scoped_value(const scoped_value&) = delete;
  scoped_value& operator=(const scoped_value&) = delete;
  scoped_value& operator=(scoped_value&&) = delete;
  ~scoped_value() {
    if (!tok_.used()) {
      try {
        var_->reset(tok_);
      } catch (...) {
        // documented no-op: see the class comment
      }
    }
  }
  // Undoes the set now; throws what context_var::reset throws.
  void reset() { var_->reset(tok_); }
  const ctxvars::token<T>& token() const noexcept { return tok_; }

 private:
  friend class context_var<T>;
  scoped_value(context_var<T>* v, ctxvars::token<T>&& t) noexcept : var_(v), tok_(std::move(t)) {}
  context_var<T>* var_;
  ctxvars::token<T> tok_;
};

// A variable whose value lives in the current context.
//
// Identity: a context_var is an identity (like a Python object); it cannot be
// copied or moved. Destroying it is always safe: contexts that still hold its
// value keep (and later destroy) that value, and can still name it when
// iterated. A variable later built at the same address is a new variable.
//
// Thread safety: every member may be called from any thread; each thread acts
// on its own current context.
template <class T>
class context_var {
  static_assert(std::is_copy_constructible_v<T> || std::is_move_constructible_v<T>,
                "context_var<T> needs a copy- or move-constructible T");

 public:
  using value_type = T;

  // A variable with no default. Allocates its identity (std::bad_alloc).
  explicit context_var(std::string name) : info_(make_info(std::move(name), nullptr)) {}
  // A variable whose get() falls back to `default_value`.
  context_var(std::string name, T default_value)
      : default_(std::move(default_value)), info_(make_info(std::move(name), nullptr)) {}
  // With a flow policy (flow.hpp): `flow::isolate`, `flow::inherit` or
  // `on_fork(f)`, applied by fork_context() (bind, spawn, co_spawn, to_thread).
  // Allocates the identity and the policy (std::bad_alloc; also what moving
  // f throws); on throw nothing leaks.
  template <detail::flow_policy_for<T> P>
  context_var(std::string name, T default_value, P policy)
      : default_(std::move(default_value)),
        info_(make_info(std::move(name), detail::make_flow_policy<T>(std::move(policy)))) {}
  // The same without a default: an isolated variable is unset in new work
  // (get() throws lookup_error there, try_get() is nullopt); on_fork applies
  // only where a value was set.
  template <detail::flow_policy_for<T> P>
  explicit context_var(std::string name, P policy)
      : info_(make_info(std::move(name), detail::make_flow_policy<T>(std::move(policy)))) {}
  context_var(const context_var&) = delete;
  context_var& operator=(const context_var&) = delete;
  // Contexts may keep values of the variable; an on_fork f is not called
  // after this returns (it waits for calls of f running on other threads).
  ~context_var() {
    if (info_->flow) info_->flow->retire();
    detail::drop_spare(info_);
    info_->release();
  }

  // The variable's flow policy: flow::inherit, flow::isolate, or (for on_fork)
  // nullopt.
  std::optional<flow> flow_policy() const noexcept {
    if (!info_->flow) return flow::inherit;
    if (info_->flow->isolates()) return flow::isolate;
    return std::nullopt;
  }

  std::string_view name() const noexcept { return info_->name; }
  // A number identifying this variable for the life of the process (never reused).
  std::uint64_t id() const noexcept { return info_->id; }
  const std::optional<T>& default_value() const noexcept { return default_; }

  // The value in the current context, else the default, else lookup_error.
  // Cost: a cache hit is a few loads and a copy of T; a miss is an O(log32 n)
  // lookup. Never allocates unless T's copy does.
  T get() const {
    if (const T* p = peek()) return *p;
    if (default_) return *default_;
    detail::throw_lookup(name());
  }
  // The value in the current context, else `fallback` (the default is ignored).
  T get(T fallback) const {
    if (const T* p = peek()) return *p;
    return fallback;
  }
  // The value in the current context, else the default, else nullopt.
  std::optional<T> try_get() const {
    const T* p = peek();
    if (!p) p = default_ ? &*default_ : nullptr;
    return p ? std::optional<T>(std::in_place, *p) : std::optional<T>();
  }

  // Zero-copy read: the address of the value in the current context, or
  // nullptr if it has none there (the default is not consulted). Lifetime: the
  // pointee stays valid while the current context keeps this value — until
  // this thread sets or resets this variable, or leaves the context. Keep it
  // no longer than a local computation; never across co_await.
  const T* peek() const noexcept {
    detail::thread_state& st = detail::this_thread_state();
    const detail::cache_slot& s = detail::slot_for(st, id_);
    if (CTXVARS_LIKELY(s.id == id_ && s.version == st.version)) return static_cast<const T*>(s.value);
    return peek_slow();
  }

  // Sets the value in the current context and returns the token that undoes it.
  // Allocates one box for the value plus at most the trie path (none when the
  // context alone owns it). Strong guarantee: if anything throws (std::bad_alloc,
  // T's copy), the context is unchanged.
  // With CTXVARS_DEBUG_CHECKS the call site is a defaulted second parameter
  // (see config.hpp).
#if CTXVARS_DEBUG_CHECKS
  token<T> set(T value, debug::source_location where = debug::source_location::current()) {
    detail::thread_state& st = detail::this_thread_state();
    detail::context_impl* c = st.current;
    if (CTXVARS_UNLIKELY(!c)) c = detail::writable_context();
    return set_in(st, c, std::move(value), where);
  }
#else
  token<T> set(T value) {
    detail::thread_state& st = detail::this_thread_state();
    detail::context_impl* c = st.current;
    if (CTXVARS_UNLIKELY(!c)) c = detail::writable_context();
    return set_in(st, c, std::move(value));
  }
#endif

  // Restores the value from before `t`'s set (or removes the variable if it
  // had none) in the current context, and marks `t` used.
  // Throws used_token_error if `t` was used; foreign_token_error if `t` belongs
  // to another variable or was created in another context. Strong guarantee:
  // on any throw (std::bad_alloc included) neither the context nor `t` changed.
  void reset(token<T>& t) {
    detail::thread_state& st = detail::this_thread_state();
    reset_in(st, st.current, t);
  }

 private:
  friend struct detail::var_access;
  // set and reset in context `c` (the current one, or — for the Python module, through
  // var_access — a context whose writer is this thread without it being current: `c`
  // then gets a fresh cache version when it next becomes current, as its modification
  // count changed, and this variable's slot is cleared in case `c` is an outer context
  // of this thread that a switch_back would restore with its old version).
#if CTXVARS_DEBUG_CHECKS
  token<T> set_in(detail::thread_state& st, detail::context_impl* c, T value,
                  debug::source_location where = debug::source_location::current()) {
#else
  token<T> set_in(detail::thread_state& st, detail::context_impl* c, T value) {
#endif
    detail::box_ptr box = detail::make_box<T>(info_, std::move(value));
    // What the update retires (a fold's old layers may hold the last
    // reference to masked values): released when set returns, after the
    // cache, the token and the watchers are final. Declared before `t`, so
    // it dies after the token is complete (NRVO: `t` is the caller's object).
    detail::context_map::retired dropped;
#if CTXVARS_DEBUG_CHECKS
    box.get()->where = where;
    detail::debug::check_set(name(), c == st.base, where);
#endif
    token<T> t(this, id_, c->id);
    detail::box_base* const added = box.get();
    const T* now = &detail::box_value<T>(added);
    c->assign(id_, std::move(box), t.old_box_, dropped);
    // The cache first: the copy below is user code, which may set this very
    // variable again (and then rewrites the slot itself).
    remember_in(st, c, now);
    t.had_old_ = static_cast<bool>(t.old_box_);
    // Watchers before the copy below: that copy is user code which may set
    // this variable again, displacing (and freeing) `added`.
    if (CTXVARS_UNLIKELY(detail::watching() & detail::watching_values))
      detail::notify_value(id_, t.old_box_.get(), added);
    // The token's copy of the old value, for a T whose copy cannot throw (any
    // other T's token reads the old box itself: see token::old_value()).
    if constexpr (!detail::boxed_as_optional<T>) {
      if (t.old_box_) t.old_.emplace(detail::box_value<T>(t.old_box_.get()));
    }
    return t;
  }
  void reset_in(detail::thread_state& st, detail::context_impl* c, token<T>& t) {
    if (t.state_ != token<T>::state::live) detail::throw_used_token(name(), t.state_ == token<T>::state::moved_from);
    if (t.var_id_ != id_) detail::throw_foreign_var(name(), t.var_id_);
    if (!c || c->id != t.ctx_id_) detail::throw_foreign_context(name());
    // `dropped` (what a fold retired) and `displaced` die last: their values'
    // destructors (user code) see the reset complete, the cache right and
    // the token used.
    detail::context_map::retired dropped;
    detail::box_ptr displaced;
    detail::box_base* restored = t.old_box_.get();
    if (restored) {
      const T* now = &detail::box_value<T>(restored);
      if constexpr (detail::boxed_as_optional<T>)
        c->assign(id_, detail::box_ptr(t.old_box_), displaced, dropped);  // the token keeps it: old_value()
      else
        c->assign(id_, std::move(t.old_box_), displaced, dropped);
      remember_in(st, c, now);
    } else {
      c->remove(id_, displaced, dropped);
      remember_in(st, c, nullptr);
    }
    // A generator's layer may have shown its consumer's value instead (see
    // detail::context_layer): cache what is there now.
    if (CTXVARS_UNLIKELY(c->layer() != nullptr)) restored = remember_current(c);
    t.state_ = token<T>::state::used;
    if (CTXVARS_UNLIKELY(detail::watching() & detail::watching_values))
      detail::notify_value(id_, displaced.get(), restored);
  }
  void remember_in(detail::thread_state& st, const detail::context_impl* c, const T* v) const noexcept {
    detail::cache_slot& s = detail::slot_for(st, id_);
    if (CTXVARS_LIKELY(st.current == c))
      s = {id_, st.version, v};
    else if (s.id == id_)
      s = {0, 0, nullptr};
  }

 public:
  // set(value) now, reset when the returned guard is destroyed (see scoped_value).
#if CTXVARS_DEBUG_CHECKS
  scoped_value<T> scoped_set(T value, debug::source_location where = debug::source_location::current()) {
    return scoped_value<T>(this, set(std::move(value), where));
  }
#else
  scoped_value<T> scoped_set(T value) { return scoped_value<T>(this, set(std::move(value))); }
#endif

 private:
  CTXVARS_NOINLINE const T* peek_slow() const noexcept {
    detail::thread_state& st = detail::this_thread_state();
    const T* v = nullptr;
    if (st.current)
      if (const detail::box_ptr* p = st.current->map.find(id_, id_)) v = &detail::box_value<T>(p->get());
    detail::slot_for(st, id_) = {id_, st.version, v};
    return v;
  }
  CTXVARS_NOINLINE detail::box_base* remember_current(detail::context_impl* c) const noexcept {
    const detail::box_ptr* p = c->map.find(id_, id_);
    remember(p ? &detail::box_value<T>(p->get()) : nullptr);
    return p ? p->get() : nullptr;
  }
  void remember(const T* v) const noexcept {
    detail::thread_state& st = detail::this_thread_state();
    detail::slot_for(st, id_) = {id_, st.version, v};
  }

  // The identity, owning `policy` (built first: if the identity's allocation
  // throws, the policy is freed).
  static detail::var_info* make_info(std::string name, std::unique_ptr<detail::flow_policy> policy) {
    auto* i = new detail::var_info(std::move(name), typeid(T));
    i->flow = policy.release();
    i->format.store(detail::default_text_writer<T>(), std::memory_order_relaxed);
    return i;
  }

  // The default first: if its copy throws, no identity was made (none leaks).
  std::optional<T> default_;
  detail::var_info* info_;
  std::uint64_t id_ = info_->id;
};

}  // namespace ctxvars
