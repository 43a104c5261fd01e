// Watchers (<ctxvars/watch.hpp>): the registry and the notifications the
// core's switch and set paths call when watch_flags is not zero.
//
// The registry is an immutable list published under a mutex with a
// generation number. Each thread keeps the list it last saw and takes the
// mutex only when the generation moved, so notifications on many threads do
// not contend on a shared line beyond reading the generation. A call is
// bracketed by the record's in_flight count, checked against `active` after
// the increment (both sequentially consistent), so unwatch() can wait for
// calls already started and no call starts after it.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <mutex>
#include <memory>
#include <new>
#include <thread>
#include <optional>
#include <vector>

#include "ctxvars/watch.hpp"

namespace ctxvars {
namespace detail {

constinit std::atomic<unsigned> watch_flags{0};

namespace {

struct watcher_list {
  std::vector<std::shared_ptr<watcher_rec>> switches;
  std::vector<std::shared_ptr<watcher_rec>> values;  // sorted by var_id
};

struct watch_registry {
  std::mutex m;
  std::shared_ptr<const watcher_list> list;  // null: none
  std::atomic<std::uint64_t> generation{1};
};
// Never destroyed: threads and static destructors may still switch contexts.
watch_registry& registry() {
  static watch_registry* r = new watch_registry;
  return *r;
}

// Publishes `next` (caller holds the mutex).
void publish(watch_registry& r, std::shared_ptr<const watcher_list> next) {
  unsigned flags = 0;
  if (next && !next->switches.empty()) flags |= watching_switches;
  if (next && !next->values.empty()) flags |= watching_values;
  if (!flags) next.reset();
  r.list = std::move(next);
  r.generation.fetch_add(1, std::memory_order_release);
  watch_flags.store(flags, std::memory_order_release);
}

// The list this thread last saw. Destroyed at thread exit; after that the
// thread reads the registry under its mutex.
struct list_cache {
  std::shared_ptr<const watcher_list> list;
  std::uint64_t generation = 0;
  ~list_cache() { this_thread_state().watch_cache_gone = true; }
};

// The watchers stopped from inside a callback on this thread, finished (their
// calls on other threads waited for, their callbacks destroyed) when the
// outermost notification ends: see in_watcher_scope. A plain pointer, made on
// the first such stop and freed by that scope: constant-initialised and
// trivially destructible, so it works during thread exit too, after every
// thread_local with a destructor (the list cache among them) is gone.
constinit thread_local std::vector<std::shared_ptr<watcher_rec>>* deferred_stops = nullptr;

list_cache* thread_cache(thread_state& st) noexcept {
  if (CTXVARS_UNLIKELY(st.watch_cache_gone)) return nullptr;
  thread_local list_cache cache;
  return &cache;
}

// The current list: borrowed from this thread's cache, or owned in `hold`.
// Not reentrant per thread (callers run with in_watcher set around calls).
const watcher_list* current_list(thread_state& st, std::shared_ptr<const watcher_list>& hold) {
  watch_registry& r = registry();
  list_cache* cache = thread_cache(st);
  if (CTXVARS_UNLIKELY(!cache)) {
    std::lock_guard lk(r.m);
    hold = r.list;
    return hold.get();
  }
  const std::uint64_t g = r.generation.load(std::memory_order_acquire);
  if (cache->generation != g) {
    std::shared_ptr<const watcher_list> fresh;
    {
      std::lock_guard lk(r.m);
      fresh = r.list;
      cache->generation = r.generation.load(std::memory_order_relaxed);
    }
    // The old list (and maybe records' callbacks) dies outside the mutex.
    std::swap(cache->list, fresh);
  }
  return cache->list.get();
}

// Waits until no call of `r` runs on another thread, then destroys its
// callback. Only on a thread that runs no watcher callback.
void finish_stop(watcher_rec& r) noexcept {
  while (r.in_flight.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  r.drop();
}

// The same, or null when there is none or it cannot be had (out of memory,
// or a thread_local that cannot be made): then nothing is notified.
const watcher_list* list_or_null(thread_state& st, std::shared_ptr<const watcher_list>& hold) noexcept {
  try {
    return current_list(st, hold);
  } catch (...) {
    return nullptr;
  }
}

// Marks the thread as running watcher callbacks for the scope. At its end,
// the watchers stopped meanwhile on this thread are finished (their calls on
// other threads waited for, their callbacks destroyed): a thread waits only
// outside callbacks, so two callbacks stopping each other cannot deadlock.
struct in_watcher_scope {
  thread_state& st;
  explicit in_watcher_scope(thread_state& s) noexcept : st(s) { st.in_watcher = true; }
  ~in_watcher_scope() {
    st.in_watcher = false;
    if (CTXVARS_LIKELY(!deferred_stops)) return;
    // Taken first: a callback's destructor (in finish_stop) may start a new
    // notification, with deferrals of its own.
    std::unique_ptr<std::vector<std::shared_ptr<watcher_rec>>> stopped(std::exchange(deferred_stops, nullptr));
    for (const auto& r : *stopped) finish_stop(*r);
  }
};

// Calls `call` on `r` unless it was stopped; the in_flight bracket lets
// unwatch() wait for it. An exception escaping the callback terminates.
template <class Call>
void invoke(watcher_rec& r, Call&& call) noexcept {
  r.in_flight.fetch_add(1, std::memory_order_seq_cst);
  if (r.active.load(std::memory_order_seq_cst)) {
    try {
      call();
    } catch (...) {
      std::fputs("ctxvars: a watcher callback threw; callbacks must not throw (std::terminate)\n", stderr);
      r.in_flight.fetch_sub(1, std::memory_order_release);
      std::terminate();
    }
  }
  r.in_flight.fetch_sub(1, std::memory_order_release);
}

using rec_range = std::pair<std::vector<std::shared_ptr<watcher_rec>>::const_iterator,
                            std::vector<std::shared_ptr<watcher_rec>>::const_iterator>;
rec_range watchers_of(const watcher_list& l, std::uint64_t var_id) noexcept {
  return std::equal_range(l.values.begin(), l.values.end(), var_id, [](const auto& a, const auto& b) {
    if constexpr (std::is_same_v<std::decay_t<decltype(a)>, std::uint64_t>)
      return a < b->var_id;
    else
      return a->var_id < b;
  });
}

box_ptr retained(box_base* b) noexcept {
  if (b) b->refs.fetch_add(1, std::memory_order_relaxed);
  return box_ptr(b);
}

// Records stopped but left listed (an unwatch that ran out of memory) go
// with the next list built.
void drop_inactive(watcher_list& l) {
  auto inactive = [](const std::shared_ptr<watcher_rec>& x) { return !x->active.load(std::memory_order_relaxed); };
  std::erase_if(l.switches, inactive);
  std::erase_if(l.values, inactive);
}

}  // namespace

void add_watcher(std::shared_ptr<watcher_rec> rec) {
  watch_registry& r = registry();
  auto next = std::make_shared<watcher_list>();
  std::lock_guard lk(r.m);
  if (r.list) *next = *r.list;
  drop_inactive(*next);
  if (rec->var_id == 0) {
    next->switches.push_back(std::move(rec));
  } else {
    auto at = std::upper_bound(next->values.begin(), next->values.end(), rec->var_id,
                               [](std::uint64_t id, const auto& x) { return id < x->var_id; });
    next->values.insert(at, std::move(rec));
  }
  publish(r, std::move(next));
}

void remove_watcher(const std::shared_ptr<watcher_rec>& rec) noexcept {
  rec->active.store(false, std::memory_order_seq_cst);
  watch_registry& r = registry();
  std::shared_ptr<const watcher_list> old;
  try {
    auto next = std::make_shared<watcher_list>();
    std::lock_guard lk(r.m);
    if (r.list) {
      *next = *r.list;
      drop_inactive(*next);  // `rec` among them
    }
    old = r.list;
    publish(r, std::move(next));
  } catch (const std::bad_alloc&) {
    // The record stays listed, inactive (never called again): a documented,
    // harmless leftover until the next registration change.
  }
  thread_state& st = this_thread_state();
  if (st.in_watcher) {
    // Inside a notification: finished when it ends (in_watcher_scope), also
    // during thread exit. Without room to note it, the callback dies with its
    // last reference (the documented out-of-memory leftover).
    try {
      if (!deferred_stops) deferred_stops = new std::vector<std::shared_ptr<watcher_rec>>();
      deferred_stops->push_back(rec);
    } catch (const std::bad_alloc&) {
    }
    return;
  }
  finish_stop(*rec);
}

namespace {
// A watched variable whose value differs between the two contexts of a
// switch; the values are retained until every call is made.
struct value_diff {
  std::uint64_t id = 0;
  box_ptr before, after;
};
constexpr std::size_t lookup_limit = 16;

// Fills `out` with the watched variables whose values differ from `from` to
// `to` (read on this thread, their only writer). Few watched variables (the
// usual case): each is looked up in both, O(k log32 n), into `few` without
// allocating. More: the two contexts are diffed (diff.hpp), skipping the
// subtrees they share, so the cost follows what changed. Throws
// std::bad_alloc (then nothing is reported).
std::size_t collect_value_diffs(const watcher_list& l, context_impl* from, context_impl* to,
                                value_diff (&few)[lookup_limit], std::vector<value_diff>& many) {
  if (l.values.size() <= lookup_limit) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < l.values.size(); ++i) {
      const std::uint64_t id = l.values[i]->var_id;
      if (i > 0 && l.values[i - 1]->var_id == id) continue;
      const box_ptr* pa = from ? from->map.find(id, id) : nullptr;
      const box_ptr* pb = to ? to->map.find(id, id) : nullptr;
      box_base* ba = pa ? pa->get() : nullptr;
      box_base* bb = pb ? pb->get() : nullptr;
      if (ba != bb) few[n++] = {id, retained(ba), retained(bb)};
    }
    return n;
  }
  const context_map a = from ? from->map : context_map();
  const context_map b = to ? to->map : context_map();
  auto on_change = [&](const change& c) {
    const auto range = watchers_of(l, c.var_id);
    if (range.first == range.second) return;
    auto box = [](const std::optional<context::entry>& e) {
      return e ? retained(const_cast<box_base*>(context_access::box(*e))) : box_ptr();
    };
    many.push_back({c.var_id, box(c.before), box(c.after)});
  };
  diff_maps(a, b, on_change);
  return many.size();
}
}  // namespace

// Every change is collected before the first call, so nothing a callback does
// (set a variable in the new context, say) is reported as part of the switch.
void notify_switch(context_impl* from, context_impl* to) noexcept {
  thread_state& st = this_thread_state();
  if (st.in_watcher || from == to) return;
  // Declared before the scope, so released after it ended: the last reference
  // to a value (or to a stopped watcher's callback) may go here, and its
  // destructor is user code whose sets must be notified like any other.
  std::shared_ptr<const watcher_list> hold;
  value_diff few[lookup_limit];
  std::vector<value_diff> many;
  in_watcher_scope scope(st);
  const watcher_list* l = list_or_null(st, hold);
  if (!l) return;
  std::size_t n = 0;
  if (!l->values.empty()) {
    try {
      n = collect_value_diffs(*l, from, to, few, many);
    } catch (...) {
      n = 0;  // out of memory: this switch's value notifications are skipped (documented)
      many.clear();
    }
  }
  if (!l->switches.empty()) {
    const context_switch ev(from, to);
    for (const auto& r : l->switches) invoke(*r, [&] { r->switched(ev); });
  }
  const value_diff* diffs = many.empty() ? few : many.data();
  for (std::size_t k = 0; k < n; ++k) {
    const box_base* before = diffs[k].before.get();
    const box_base* after = diffs[k].after.get();
    auto [lo, hi] = watchers_of(*l, diffs[k].id);
    for (auto it = lo; it != hi; ++it) {
      watcher_rec& r = **it;
      invoke(r, [&] { r.changed(before, after, true); });
    }
  }
}

void notify_value(std::uint64_t var_id, box_base* before, box_base* after) noexcept {
  if (before == after) return;
  thread_state& st = this_thread_state();
  if (st.in_watcher) return;
  // Kept alive through the calls (a callback may set the variable again,
  // dropping the last other reference) and released after the scope ended:
  // a value's destructor is user code, not a callback (see notify_switch).
  box_ptr b, a;
  std::shared_ptr<const watcher_list> hold;
  in_watcher_scope scope(st);
  const watcher_list* l = list_or_null(st, hold);
  if (!l) return;
  auto [lo, hi] = watchers_of(*l, var_id);
  if (lo == hi) return;
  b = retained(before);
  a = retained(after);
  for (auto it = lo; it != hi; ++it) invoke(**it, [&] { (*it)->changed(b.get(), a.get(), false); });
}

}  // namespace detail
}  // namespace ctxvars
