// Watchers: callbacks when a thread's current context switches, and
// per-variable change notifications with the old and new values (what .NET's
// AsyncLocal<T> offers with its value-changed handler).
//
//   ctxvars::context_var<std::string> request("request_id");
//   ctxvars::watcher w = ctxvars::watch(request, [](const ctxvars::value_change<std::string>& c) {
//     // c.before / c.after: the values (nullptr: none), c.context_switched:
//     // true when the thread switched contexts, false for a set or reset.
//     my_profiler_tag(c.after ? c.after->c_str() : "");
//   });
//   ctxvars::watcher s = ctxvars::on_context_switch([](const ctxvars::context_switch& sw) {
//     sw.changes([](const ctxvars::change& c) { /* every variable that differs */ });
//   });
//   // ... both stop when w and s are destroyed (or unwatch() is called).
//
// When they run: on the thread whose view changed, right after the change —
// a context switch (context::run entering and leaving, a task<T> or Asio task
// step starting and ending on a thread, bind()) or a set/reset of a watched
// variable. A variable's watcher is told of a switch only when the variable's
// value differs between the two contexts: with at most 16 watchers of
// variables, each watched variable is looked up in both (O(log32 n), no
// allocation); with more, the two tries are diffed structurally (diff.hpp),
// skipping every subtree they share, so the cost follows what changed, not
// the size of the contexts.
//
// Cost with no watcher registered: nothing measurable — one load of a word
// that only watch()/unwatch() write and a never-taken branch on each switch
// and each set/reset (benchmarks/watch_bench.cpp, docs/benchmarks.md). With
// watchers: each switch diffs the two contexts (when value watchers exist) and
// calls the callbacks; see docs/observability.md for figures.
//
// Rules for callbacks (documented, checked):
// - They run inside the switch or set, on its thread, with the new context
//   current: they may read variables, set them, copy and run contexts, and
//   register or stop watchers. Nothing they do is reported to watchers (no
//   nested notifications on that thread; a switch's value changes are
//   collected before its first callback), so a watcher never sees its own
//   or another callback's effects.
// - They must not throw: an exception escaping a callback calls
//   std::terminate (the switch it interrupts may be a destructor or a
//   coroutine's resumption, which cannot fail; .NET fails fast alike).
// - A watcher registered on one thread sees that thread's next switch; other
//   threads see it from their next switch after the registration becomes
//   visible to them (no ordering is promised beyond that).
// - If memory runs out while a switch's changes are computed, that switch's
//   value notifications are skipped (nothing else changes): the one documented
//   loss. Context-switch callbacks are still called.
// - Thread exit: a thread's base context is destroyed without notifications.
// - The Python module enters a task's C++ context around each operation made
//   from Python (ContextVar.get/set, a call guarded by python.hpp): C++
//   watchers see those enters and leaves as switches, not asyncio's task
//   switches themselves.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "context.hpp"
#include "context_var.hpp"
#include "detail/var_access.hpp"
#include "diff.hpp"

namespace ctxvars {

class context_switch;

namespace detail {

// One registered watcher. Shared by the registry's lists (and threads' cached
// copies of them) and by its `watcher` handle.
struct watcher_rec {
  explicit watcher_rec(std::uint64_t var) noexcept : var_id(var) {}
  watcher_rec(const watcher_rec&) = delete;
  watcher_rec& operator=(const watcher_rec&) = delete;
  virtual ~watcher_rec() = default;
  virtual void switched(const context_switch&) {}
  virtual void changed(const box_base*, const box_base*, bool) {}
  // Destroys the callback (after the last call finished).
  virtual void drop() noexcept = 0;

  const std::uint64_t var_id;  // 0: a context-switch watcher
  std::atomic<bool> active{true};
  std::atomic<unsigned> in_flight{0};
};

// Registers `r` (std::bad_alloc: nothing registered).
void add_watcher(std::shared_ptr<watcher_rec> r);
// Unregisters `r` and waits until no call of it runs on another thread —
// unless the calling thread runs a watcher callback itself (then no wait,
// which could deadlock two callbacks stopping each other).
void remove_watcher(const std::shared_ptr<watcher_rec>& r) noexcept;

template <class F>
class switch_watcher;
template <class T, class F>
class value_watcher;

}  // namespace detail

// What a context-switch watcher is told. Valid during the callback only.
class context_switch {
 public:
  // The contexts before and after the switch: a handle to the context itself
  // when it is one this thread entered (context::run, a shared task, an Asio
  // task), else a copy with the same variables (allocated here) — for a
  // thread's own base context, which no handle may name, and for a task's
  // private context, which only its task may enter.
  context from() const { return handle(from_); }
  context to() const { return handle(to_); }
  bool from_is_thread_base() const noexcept { return is_base(from_); }
  bool to_is_thread_base() const noexcept { return is_base(to_); }
  // Calls f(const change&) for each variable whose value differs between
  // from and to (diff.hpp), as they are when it is called (after an earlier
  // callback's sets, say): cost follows what changed.
  template <class F>
  void changes(F&& f) const {
    const detail::context_map a = from_ ? from_->map : detail::context_map();
    const detail::context_map b = to_ ? to_->map : detail::context_map();
    detail::diff_maps(a, b, f);
  }

 private:
  friend void detail::notify_switch(detail::context_impl*, detail::context_impl*) noexcept;
  context_switch(detail::context_impl* f, detail::context_impl* t) noexcept : from_(f), to_(t) {}
  static bool is_base(detail::context_impl* c) noexcept {
    return c == nullptr || c == detail::this_thread_state().base;
  }
  static context handle(detail::context_impl* c) {
    if (c && c->entered_by_this_thread()) return detail::context_access::make(c);
    // Written only by this thread, which runs here: no lock needed.
    return detail::context_access::adopt(detail::plain_copy_of(c, true));
  }
  detail::context_impl* from_;
  detail::context_impl* to_;
};

// What a variable's watcher is told. Pointers are valid during the callback.
template <class T>
struct value_change {
  std::string_view name;   // the variable's name
  const T* before;         // the value before; nullptr: none (the default is not substituted)
  const T* after;          // the value now; nullptr: none
  bool context_switched;   // true: the thread switched contexts; false: a set or reset
};

// A registered watcher; stops it when destroyed. Move-only.
class [[nodiscard]] watcher {
 public:
  watcher() noexcept = default;  // watches nothing
  watcher(watcher&& o) noexcept = default;
  // Stops the watcher this one held, last: `o` is taken first, since stopping
  // destroys the old callback, which may own `o`.
  watcher& operator=(watcher&& o) noexcept {
    if (this != &o) {
      watcher taken(std::move(o));
      rec_.swap(taken.rec_);
    }  // taken now holds the old watcher and stops it
    return *this;
  }
  watcher(const watcher&) = delete;
  watcher& operator=(const watcher&) = delete;
  ~watcher() { unwatch(); }

  // Stops the watcher: no call of it starts afterwards, and when this
  // returns none is running on another thread and the callback has been
  // destroyed. Called on a thread that is running a watcher callback, it
  // does not wait there: the waiting and the destruction happen when that
  // thread's notification ends (so two callbacks stopping each other cannot
  // deadlock). Do not call it while holding a lock the callback takes on
  // another thread: it waits for that call. Idempotent.
  void unwatch() noexcept {
    if (rec_) {
      detail::remove_watcher(rec_);
      rec_.reset();
    }
  }
  bool active() const noexcept { return static_cast<bool>(rec_); }

 private:
  template <class F>
  friend watcher on_context_switch(F f);
  template <class T, class F>
  friend watcher watch(const context_var<T>& v, F f);
  explicit watcher(std::shared_ptr<detail::watcher_rec> r) : rec_(std::move(r)) { detail::add_watcher(rec_); }
  std::shared_ptr<detail::watcher_rec> rec_;
};

namespace detail {
template <class F>
class switch_watcher final : public watcher_rec {
 public:
  explicit switch_watcher(F f) : watcher_rec(0), f_(std::in_place, std::move(f)) {}
  void switched(const context_switch& s) override { (*f_)(s); }
  void drop() noexcept override { f_.reset(); }

 private:
  std::optional<F> f_;
};

template <class T, class F>
class value_watcher final : public watcher_rec {
 public:
  value_watcher(std::uint64_t id, std::string name, F f)
      : watcher_rec(id), name_(std::move(name)), f_(std::in_place, std::move(f)) {}
  void changed(const box_base* before, const box_base* after, bool switched) override {
    const value_change<T> c{name_, before ? &box_value<T>(before) : nullptr, after ? &box_value<T>(after) : nullptr,
                            switched};
    (*f_)(c);
  }
  void drop() noexcept override { f_.reset(); }

 private:
  const std::string name_;
  std::optional<F> f_;
};
}  // namespace detail

// Calls f(const context_switch&) on every thread, each time its current
// context changes. Throws std::bad_alloc (then nothing is registered).
template <class F>
watcher on_context_switch(F f) {
  static_assert(std::is_invocable_v<F&, const context_switch&>, "f must be callable as f(const context_switch&)");
  return watcher(std::make_shared<detail::switch_watcher<F>>(std::move(f)));
}

// Calls f(const value_change<T>&) on any thread whose view of `v` changes: a
// set or reset of `v` there, or a switch to a context where `v` has another
// value. The watcher may outlive `v`. Throws std::bad_alloc (then nothing is
// registered).
template <class T, class F>
watcher watch(const context_var<T>& v, F f) {
  static_assert(std::is_invocable_v<F&, const value_change<T>&>, "f must be callable as f(const value_change<T>&)");
  return watcher(std::make_shared<detail::value_watcher<T, F>>(v.id(), std::string(v.name()), std::move(f)));
}

}  // namespace ctxvars
