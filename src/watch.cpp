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
#include <new>
#include <thread>
#include <tuple>
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

// The current list: borrowed from this thread's cache, or owned in `hold`.
// Not reentrant per thread (callers run with in_watcher set around calls).
const watcher_list* current_list(thread_state& st, std::shared_ptr<const watcher_list>& hold) {
  watch_registry& r = registry();
  if (CTXVARS_UNLIKELY(st.watch_cache_gone)) {
    std::lock_guard lk(r.m);
    hold = r.list;
    return hold.get();
  }
  thread_local list_cache cache;
  const std::uint64_t g = r.generation.load(std::memory_order_acquire);
  if (cache.generation != g) {
    std::shared_ptr<const watcher_list> fresh;
    {
      std::lock_guard lk(r.m);
      fresh = r.list;
      cache.generation = r.generation.load(std::memory_order_relaxed);
    }
    // The old list (and maybe records' callbacks) dies outside the mutex.
    std::swap(cache.list, fresh);
  }
  return cache.list.get();
}

// Marks the thread as running watcher callbacks for the scope.
struct in_watcher_scope {
  thread_state& st;
  explicit in_watcher_scope(thread_state& s) noexcept : st(s) { st.in_watcher = true; }
  ~in_watcher_scope() { st.in_watcher = false; }
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

}  // namespace

void add_watcher(std::shared_ptr<watcher_rec> rec) {
  watch_registry& r = registry();
  auto next = std::make_shared<watcher_list>();
  std::lock_guard lk(r.m);
  if (r.list) *next = *r.list;
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
      std::erase(next->switches, rec);
      std::erase(next->values, rec);
    }
    old = r.list;
    publish(r, std::move(next));
  } catch (const std::bad_alloc&) {
    // The record stays listed, inactive (never called again): a documented,
    // harmless leftover until the next registration change.
  }
  thread_state& st = this_thread_state();
  if (st.in_watcher) return;  // see remove_watcher's declaration
  while (rec->in_flight.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  rec->drop();
}

void notify_switch(context_impl* from, context_impl* to) noexcept {
  thread_state& st = this_thread_state();
  if (st.in_watcher || from == to) return;
  in_watcher_scope scope(st);
  std::shared_ptr<const watcher_list> hold;
  const watcher_list* l = nullptr;
  try {
    l = current_list(st, hold);
  } catch (...) {
    return;  // out of memory (or a thread_local that cannot be made): no notification
  }
  if (!l) return;
  if (!l->switches.empty()) {
    const context_switch ev(from, to);
    for (const auto& r : l->switches) invoke(*r, [&] { r->switched(ev); });
  }
  if (l->values.empty()) return;
  // Few watched variables (the usual case): look each one up in both
  // contexts, O(k log32 n), no allocation. The values are retained and every
  // change collected before the first call, so a callback that sets variables
  // cannot change what is reported.
  constexpr std::size_t lookup_limit = 16;
  if (l->values.size() <= lookup_limit) {
    struct pending {
      std::uint64_t id = 0;
      box_ptr before, after;
    };
    pending found[lookup_limit];
    std::size_t n = 0;
    for (std::size_t i = 0; i < l->values.size(); ++i) {
      const std::uint64_t id = l->values[i]->var_id;
      if (i > 0 && l->values[i - 1]->var_id == id) continue;
      const box_ptr* pa = from ? from->map.find(id, id) : nullptr;
      const box_ptr* pb = to ? to->map.find(id, id) : nullptr;
      box_base* ba = pa ? pa->get() : nullptr;
      box_base* bb = pb ? pb->get() : nullptr;
      if (ba != bb) found[n++] = {id, retained(ba), retained(bb)};
    }
    for (std::size_t k = 0; k < n; ++k) {
      auto [lo, hi] = watchers_of(*l, found[k].id);
      for (auto it = lo; it != hi; ++it) {
        watcher_rec& r = **it;
        const box_base* before = found[k].before.get();
        const box_base* after = found[k].after.get();
        invoke(r, [&] { r.changed(before, after, true); });
      }
    }
    return;
  }
  // Many: diff the two contexts (diff.hpp), skipping the subtrees they
  // share, so the cost follows what changed. The changes of watched
  // variables are collected before any call, so that a
  // callback cannot change what the walk reads (the maps are copies anyway)
  // and a failed allocation skips the whole switch rather than half of it.
  std::vector<std::tuple<const watcher_rec*, box_ptr, box_ptr>> calls;
  try {
    const context_map a = from ? from->map : context_map();
    const context_map b = to ? to->map : context_map();
    auto on_change = [&](const change& c) {
      auto [lo, hi] = watchers_of(*l, c.var_id);
      for (auto it = lo; it != hi; ++it)
        calls.emplace_back(it->get(), c.before ? retained(const_cast<box_base*>(context_access::box(*c.before))) : box_ptr(),
                           c.after ? retained(const_cast<box_base*>(context_access::box(*c.after))) : box_ptr());
    };
    diff_maps(a, b, on_change);
  } catch (...) {
    return;  // out of memory: this switch's value notifications are skipped (documented)
  }
  for (auto& call : calls) {
    watcher_rec& r = const_cast<watcher_rec&>(*std::get<0>(call));
    const box_base* before = std::get<1>(call).get();
    const box_base* after = std::get<2>(call).get();
    invoke(r, [&] { r.changed(before, after, true); });
  }
}

void notify_value(std::uint64_t var_id, box_base* before, box_base* after) noexcept {
  if (before == after) return;
  thread_state& st = this_thread_state();
  if (st.in_watcher) return;
  in_watcher_scope scope(st);
  std::shared_ptr<const watcher_list> hold;
  const watcher_list* l = nullptr;
  try {
    l = current_list(st, hold);
  } catch (...) {
    return;
  }
  if (!l) return;
  auto [lo, hi] = watchers_of(*l, var_id);
  if (lo == hi) return;
  // Kept alive through the calls: a callback may set the variable again.
  const box_ptr b = retained(before), a = retained(after);
  for (auto it = lo; it != hi; ++it) invoke(**it, [&] { (*it)->changed(b.get(), a.get(), false); });
}

}  // namespace detail
}  // namespace ctxvars
