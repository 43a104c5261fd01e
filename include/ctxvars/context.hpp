// context: a mapping of context variables to values (Python's contextvars.Context),
// and copy_context().
#pragma once

#include <cstddef>
#include <functional>
#include <iterator>
#include <optional>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "context_var.hpp"
#include "detail/context_impl.hpp"

namespace ctxvars {

class context;
context copy_context();
namespace detail {
struct context_access;
}

// A handle to a context. Copies of a handle refer to the SAME context, like
// references to a Python object; copy() makes a new one. A context holds an
// immutable snapshot of a trie, so copy() is O(1) and never allocates more
// than the new handle's state.
//
// Thread safety: every member is safe from any thread, also while another
// thread runs inside the context and sets variables there (readers see the
// state before or after each set, never a torn one). A context is entered by
// at most one thread at a time.
class context {
 public:
  // A new, empty context. Allocates (std::bad_alloc).
  context() : impl_(new detail::context_impl(true)) {}
  context(const context& o) noexcept : impl_(o.impl_) { impl_->retain(); }
  // Moving is copying: a handle always refers to a context. (The library moves
  // handles it owns with context_access::take, which costs no locked
  // instruction; the handle it empties is never seen by users, and only
  // context_access copies or assigns it.)
  context(context&& o) noexcept : context(static_cast<const context&>(o)) {}
  // Rebinds the handle. The old context may die here, running its values'
  // destructors (user code that may read or assign this very handle): the
  // handle is repointed first and the old context released last.
  context& operator=(const context& o) noexcept {
    detail::context_impl* prev = impl_;
    o.impl_->retain();
    impl_ = o.impl_;
    prev->release();
    return *this;
  }
  context& operator=(context&& o) noexcept { return *this = static_cast<const context&>(o); }
  ~context() {
    if (impl_) impl_->release();
  }

  // A new context holding the same variables. O(1); allocates the new handle.
  // A plain snapshot: flow policies do not apply (see fork_context()).
  context copy() const {
    detail::context_map m;
    detail::flow_keys keys;
    impl_->snapshot(m, keys);
    return context(new detail::context_impl(true, std::move(m), std::move(keys)));
  }

  // Enters this context, calls f(a...), and leaves it (also when f throws), so
  // that what f sets stays in this context. Throws context_in_use_error if any
  // thread — this one included — is already inside. Cost: one CAS to enter and
  // one atomic decrement to leave; no allocation.
  template <class F, class... A>
  std::invoke_result_t<F, A...> run(F&& f, A&&... a) {
    detail::enter_scope scope(impl_);
    return std::invoke(std::forward<F>(f), std::forward<A>(a)...);
  }

  // Mapping access (Python's `var in ctx`, `ctx[var]`, `len(ctx)`): O(log32 n)
  // on a snapshot; the variable's default is never consulted.
  template <class T>
  bool contains(const context_var<T>& v) const {
    detail::context_map m = impl_->snapshot();
    return m.find(v.id(), v.id()) != nullptr;
  }
  template <class T>
  std::optional<T> get(const context_var<T>& v) const {
    detail::context_map m = impl_->snapshot();
    if (const detail::box_ptr* p = m.find(v.id(), v.id())) return detail::box_value<T>(p->get());
    return std::nullopt;
  }
  std::size_t size() const noexcept { return impl_->snapshot().size(); }
  bool empty() const noexcept { return size() == 0; }

  // True when both handles refer to the same context.
  friend bool operator==(const context& a, const context& b) noexcept { return a.impl_ == b.impl_; }
  // True while some thread is inside (run, or a task running in it).
  bool entered() const noexcept { return impl_->entered(); }
  // True when this is the calling thread's current context.
  bool is_current() const noexcept { return detail::this_thread_state().current == impl_; }

  // One (variable, value) pair of a context, seen through iteration. Keeps its
  // value alive; valid even after the variable is destroyed.
  class entry {
   public:
    std::string_view name() const noexcept { return box_->info->name; }
    std::uint64_t var_id() const noexcept { return box_->info->id; }
    const std::type_info& type() const noexcept { return *box_->info->type; }
    template <class T>
    bool is(const context_var<T>& v) const noexcept {
      return box_->info->id == v.id();
    }
    template <class T>
    bool holds() const noexcept {
      return *box_->info->type == typeid(T);
    }
    // The value if it is a T, else nullptr.
    template <class T>
    const T* get_if() const noexcept {
      return holds<T>() ? &detail::box_value<T>(box_.get()) : nullptr;
    }
    // The value; throws entry_type_error (a std::bad_cast naming the
    // variable, the stored type and T) if it is not a T.
    template <class T>
    const T& value() const {
      if (!holds<T>()) detail::throw_entry_type(box_->info->name, *box_->info->type, typeid(T));
      return detail::box_value<T>(box_.get());
    }

   private:
    friend class context;
    friend struct detail::context_access;
    explicit entry(detail::box_ptr b) noexcept : box_(std::move(b)) {}
    detail::box_ptr box_;
  };

  // Iteration over a snapshot taken by begin(): later sets do not affect it.
  // No allocation; the order is unspecified.
  class iterator {
   public:
    using value_type = entry;
    using difference_type = std::ptrdiff_t;
    using reference = entry;
    using iterator_category = std::input_iterator_tag;

    iterator() noexcept = default;
    iterator(const iterator&) noexcept = default;
    iterator& operator=(const iterator&) noexcept = default;
    entry operator*() const noexcept { return entry(it_->value); }
    iterator& operator++() noexcept {
      ++it_;
      return *this;
    }
    void operator++(int) noexcept { ++it_; }
    friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.it_ == b.it_; }

   private:
    friend class context;
    explicit iterator(detail::context_map m) noexcept : snap_(std::move(m)), it_(snap_.begin()) {}
    detail::context_map snap_;
    detail::context_map::iterator it_;
  };
  iterator begin() const noexcept { return iterator(impl_->snapshot()); }
  iterator end() const noexcept { return iterator(); }

 private:
  friend context copy_context();
  friend struct detail::context_access;
  explicit context(detail::context_impl* adopt) noexcept : impl_(adopt) {}
  detail::context_impl* impl_;
};

namespace detail {
struct context_access {
  static context_impl* impl(const context& c) noexcept { return c.impl_; }
  static const box_base* box(const context::entry& e) noexcept { return e.box_.get(); }
  static context::entry entry(box_ptr b) noexcept { return context::entry(std::move(b)); }
  // A handle that adopts the one reference `c` was created with.
  static context adopt(context_impl* c) noexcept { return context(c); }
  // Moves the reference `c` holds into the result, leaving `c` empty (null):
  // no locked instruction, where moving a handle would retain and release.
  // Only for handles the library owns and never shows in that state (an
  // emptied handle may only be destroyed, assigned or copied).
  static context take(context& c) noexcept { return context(std::exchange(c.impl_, nullptr)); }
  static bool empty(const context& c) noexcept { return c.impl_ == nullptr; }
  // Copy and assignment that accept an emptied handle (and then copy the emptiness).
  static context copy_of(const context& c) noexcept {
    if (c.impl_) c.impl_->retain();
    return context(c.impl_);
  }
  static void assign(context& to, context&& from) noexcept {
    context_impl* prev = std::exchange(to.impl_, std::exchange(from.impl_, nullptr));
    if (prev) prev->release();  // last: the old context's values' destructors are user code
  }
  // A new handle to an existing context (takes one reference). The handle may
  // travel to any thread: the context stops being externally serialised.
  static context make(context_impl* c) noexcept {
    c->clear_externally_serialized();
    c->retain();
    return context(c);
  }
};
}  // namespace detail

// A new context holding the current thread's variables, a plain snapshot
// (Python's copy_context: flow policies do not apply). O(1).
inline context copy_context() {
  // This thread is the only writer of its current context: no lock needed.
  return context(detail::plain_copy_of(detail::this_thread_state().current, true));
}

namespace detail {
// fork_context() of `cur`, which has policy-bearing keys: a copy of its map
// with each policy applied, built before anything is visible. f (user code)
// runs with the parent's context current and cannot reach the child.
CTXVARS_NOINLINE inline context_impl* fork_with_policies(const context_impl* cur, bool shared) {
  context_map m(cur->map);
  flow_keys keys(cur->policy_keys());
  for (const std::uint64_t id : keys) {
    const box_ptr* p = m.find(id, id);
    if (!p) continue;  // reset, or isolated by an earlier fork: the list is a superset
    const box_base* b = p->get();  // kept alive by m while f runs
    const flow_policy* policy = b->info->flow;
    box_ptr displaced;
    context_map::retired dropped;
    if (policy->isolates()) {
      m.remove(id, id, displaced, dropped);
    } else {
      box_ptr child;
      if (policy->fork(b, child)) m.assign(id, id, std::move(child), displaced, dropped);
    }
  }
  // The child shares the parent's list (a superset of what it holds).
  return new context_impl(shared, std::move(m), std::move(keys));
}

// The context new work gets when `cur` (the calling thread's current context,
// or null) forks it: see fork_context(). `shared`: reachable from handles.
CTXVARS_ALWAYS_INLINE context_impl* fork_of(const context_impl* cur, bool shared) {
  if (CTXVARS_LIKELY(!cur || !cur->policy_keys())) return plain_copy_of(cur, shared);
  return fork_with_policies(cur, shared);
}
}  // namespace detail

// The context for new work forked from the current one: a copy of the
// current thread's variables with every variable's flow policy applied
// (flow.hpp) — isolated variables are absent, on_fork variables hold f(parent's
// value), the others are shared as by copy_context(). What bind(f), spawn,
// co_spawn (both Asios) and to_thread give the work they start.
// Cost: without a policy-bearing variable in the current context, exactly a
// copy_context() (O(1), one branch more); with k of them, O(k) lookups plus,
// per on_fork variable, a call of f and one value box, and at most a layer or
// two of the new context's map. Throws std::bad_alloc or what an f (or T's
// constructor) throws; then nothing changed and no context was made. The
// current context is not changed by the fork itself (an f that sets does).
inline context fork_context() {
  return detail::context_access::adopt(detail::fork_of(detail::this_thread_state().current, true));
}

}  // namespace ctxvars
