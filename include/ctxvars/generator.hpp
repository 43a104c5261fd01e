// generator<T>: a synchronous C++20 generator whose body runs in its own
// context layer over its consumer's current context (PEP 568's semantics,
// which CPython never shipped).
//
//   ctxvars::generator<int> numbers() {
//     auto g = request_id.scoped_set("inner");  // seen by this body only
//     for (int i = 0;; ++i) co_yield i;
//   }
//   for (int i : numbers()) ...                  // request_id unchanged here
//
// The rules (docs/beyond-python.md, "Generators", has them as a table):
// - at each resume the body sees its consumer's CURRENT values (the context
//   current on the resuming thread, whatever it is), except for variables the
//   body set itself;
// - what the body sets stays in its layer across its suspensions and never
//   reaches the consumer; its tokens are foreign to the consumer
//   (foreign_token_error) and the consumer's to it;
// - when the body resets its own token for a variable it had not set before,
//   the variable shows the consumer's current value again (not the value the
//   token saw, which may be stale by then);
// - the body starts at begin() (lazy); an exception thrown out of it reaches
//   the consumer through begin() or ++, and leaves the consumer's context as
//   it was;
// - destroying a started generator is its last resume: the destructors of its
//   suspended locals (scoped_set guards included) run in its layer over the
//   consumer's context of that moment;
// - generators nest: one iterating another layers over the outer's layer.
//
// How. A generator owns one context (created at its first resume) whose map
// is its consumer's map with the body's own writes on top. At each resume the
// layer compares the consumer's context (id and modification count) with the
// one it was built over; only if it changed is the map rebuilt: an O(1) copy
// of the consumer's map plus one write per variable the body set. Its writes
// go through a small hook in the core (detail::context_layer).
//
// A body that also co_awaits: async_generator<T> (<ctxvars/async_generator.hpp>).
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <new>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "config.hpp"
#include "context.hpp"
#include "context_var.hpp"
#include "detail/context_impl.hpp"

namespace ctxvars {

namespace detail {

// The context layer of one generator: the context its body runs in, and what
// the body set there (PEP 568's logical context, kept in one context_impl).
//
// Its map is, between enter() and leave(), the consumer's current map with
// the body's own writes on top: `own_` lists the variables whose value there
// is the body's. `inherited_` keeps each box that a set of the body displaced
// while the variable showed the consumer's value: a token holding such a box
// as its old value undoes the body's set, so resetting it installs the
// consumer's current value, not that (possibly stale) box. An entry is pruned
// once nothing but this list holds the box (no token can name it then).
//
// Thread safety: used by the thread that resumes the generator, one at a time
// (a generator, like any coroutine, is not resumed concurrently). Between two
// resumes it may move to another thread.
class generator_layer final : public context_layer {
 public:
  generator_layer() noexcept = default;
  // `shared`: the context may be read by other threads while the body writes
  // it (an Asio generator's, which dump_tasks reads in debug builds): its
  // writes take the context's short writer lock.
  explicit generator_layer(bool shared) noexcept : shared_(shared) {}
  generator_layer(const generator_layer&) = delete;
  generator_layer& operator=(const generator_layer&) = delete;
  // Detaches from the context (which the generator releases after its frame
  // is gone: parameter copies die after the promise, in this context).
  ~generator_layer() {
    if (ctx_) ctx_->set_layer(nullptr);
  }

  // The generator's context, or null before its first resume.
  context_impl* context() const noexcept { return ctx_; }
  // Detaches from the context and hands the layer's reference to it over to
  // the caller (an owner that releases the context while others may still
  // hold it: an Asio generator's task). The layer is then unused.
  context_impl* detach() noexcept {
    if (ctx_) ctx_->set_layer(nullptr);
    return std::exchange(ctx_, nullptr);
  }

  // Makes the generator's context current on this thread. The first time, it
  // creates that context; whenever the thread's current context is another
  // one, or changed, since the last resume, it rebuilds the map over it: an
  // O(1) copy plus one write per variable the body set (O(k)), usually no
  // allocation; the replaced map goes to `retired`, for the caller to release
  // after leave() (it may hold the last reference to a value the consumer
  // dropped: its destructor is user code). Otherwise O(1).
  // Throws std::bad_alloc; then nothing changed.
  switch_record enter(thread_state& st, context_map& retired) {
    context_impl* const cons = st.current;
    const std::uint64_t cid = cons ? cons->id : 0;
    const std::uint64_t cmods = cons ? cons->modifications() : 0;
    if (!ctx_) {
      ctx_ = new context_impl(shared_);  // reachable from no handle: no lock
      ctx_->set_layer(this);
    }
    const bool changed = built_ && (cid != consumer_id_ || cmods != consumer_mods_);
    if (!built_ || via_base_ || dropped_ || changed) {
      rebuild(cons, retired);
      consumer_id_ = cid;
      consumer_mods_ = cmods;
      built_ = true;
      via_base_ = false;
    }
    consumer_wrote_ = changed;
    consumer_map_ = cons ? &cons->map : nullptr;
    return switch_to(st, ctx_);
  }
  // For a generator whose resumes are not on the consumer's stack
  // (async_generator.hpp): builds the layer over `base`, a snapshot of the
  // consumer's context that the layer keeps until the next call, and makes
  // no switch. O(1) if `base` is the snapshot of the last call, else a
  // rebuild as in enter(); the replaced map and snapshot go to `retired`
  // (released by the caller: user destructors). Throws std::bad_alloc; then
  // nothing changed.
  void build_over(context_map base, context_map& retired, context_map& retired_base) {
    if (!ctx_) {
      ctx_ = new context_impl(shared_);
      ctx_->set_layer(this);
    }
    if (!built_ || !via_base_ || !base.identical(base_)) {
      rebuild(&base, retired);
      built_ = true;
      via_base_ = true;
    }
    retired_base = std::exchange(base_, std::move(base));
    consumer_map_ = &base_;
  }
  // The last resume of a generator (its destruction; every kind whose frame
  // is destroyed by its consumer: generator<T>, async_generator<T>), on the
  // destroying thread: rebuilds `l` over that thread's current context
  // (without memory for it, the cleanup sees the layer as of its last resume),
  // makes its context current, calls destroy_frame() — the frame's
  // destructors run in the layer, and `l` dies with the frame — and gives the
  // thread back what it had. Then it drops the layer's own reference to the
  // context (the values the body set die there, in the caller's context) and
  // last what the rebuild replaced. A generator that never resumed (no
  // context) only has its frame destroyed. destroy_frame must not throw.
  // (The Asio generator unwinds through its executor instead, asynchronously:
  // asio/async_generator.hpp; it shares build_over.)
  template <class F>
  static void last_resume(generator_layer& l, F&& destroy_frame) noexcept {
    context_impl* const ctx = l.context();
    if (!ctx) {
      std::forward<F>(destroy_frame)();
      return;
    }
    thread_state& st = this_thread_state();
    context_map retired, retired_base;  // released last
    context_impl* const cur = st.current;
    try {
      l.build_over(cur ? cur->map : context_map(), retired, retired_base);
    } catch (...) {
      // No memory for a rebuild: the cleanup sees the layer of its last
      // resume; a reset of its own token still shows the current value. A
      // layer that had let go of its map (drop()) shows the consumer's
      // current values, without the body's own (an O(1) copy).
      l.consumer_map_ = cur ? &cur->map : nullptr;
      if (l.dropped_) {
        context_map m = cur ? cur->map : context_map();
        l.ctx_->replace_map(m);
      }
    }
    ctx->retain();  // ours until the frame (holding the layer) is gone
    const switch_record r = switch_to(st, ctx);
    std::forward<F>(destroy_frame)();
    switch_back(st, ctx, r);
    ctx->release();
    ctx->release();  // the layer's own reference
  }
  // Undoes enter(): the consumer's context is current again. If the consumer
  // had changed its context since the resume before (it writes between
  // pulls), the layer lets go of the consumer's map until the next resume
  // (see drop()).
  void leave(thread_state& st, const switch_record& r) noexcept {
    consumer_map_ = nullptr;
    switch_back(st, ctx_, r);
    prune();
    if (consumer_wrote_) drop();
  }

  // Drops the boxes only the inherited list still holds. Call outside the
  // layer: a value's destructor (user code) runs in the caller's context,
  // with the list consistent.
  void prune() noexcept {
    for (std::size_t i = 0; i < inherited_.size();) {
      if (inherited_[i].box->refs.load(std::memory_order_acquire) == 1) {
        box_ptr dead = std::move(inherited_[i].box);
        if (i + 1 != inherited_.size()) inherited_[i] = std::move(inherited_.back());
        inherited_.pop_back();
      } else {
        ++i;
      }
    }
  }

  // context_layer: a write of the body (set, reset) to its context.
  void write(context_impl& c, std::uint64_t id, box_ptr* box, box_ptr& old,
             context_map::retired& dropped) override {
    if (!box || is_inherited(id, box->get())) {
      // A reset that undoes the body's first set of this variable (or one to
      // "absent": the body never removes a variable it set by itself): show
      // the consumer's current value again.
      const box_ptr* theirs = consumer_map_ ? consumer_map_->find(id, id) : nullptr;
      if (theirs)
        c.assign_direct(id, box_ptr(*theirs), old, dropped);
      else
        c.remove_direct(id, old, dropped);
      for (std::size_t i = 0; i < own_.size(); ++i)
        if (own_[i] == id) {
          own_[i] = own_.back();
          own_.pop_back();
          break;
        }
      return;
    }
    const bool was_own = is_own(id);
    if (!was_own) {  // room first: nothing may throw after the update
      own_.reserve(own_.size() + 1);
      inherited_.reserve(inherited_.size() + 1);
      stash_.reserve(own_.size() + 1);  // for drop(), which must not allocate
    }
    c.assign_direct(id, std::move(*box), old, dropped);
    if (!was_own) {
      own_.push_back(id);
      // `old` is the consumer's box (or none): a token holding it undoes this set.
      if (old && !is_inherited(id, old.get())) inherited_.push_back({id, old});
    }
  }

  // For tests: variables the body's own values are shown for, and boxes kept.
  std::size_t own_count() const noexcept { return own_.size(); }
  std::size_t inherited_count() const noexcept { return inherited_.size(); }

 private:
  struct inherited_box {
    std::uint64_t id;
    box_ptr box;
  };

  // Keeps the body's own values aside and empties the layer's map, so that
  // the consumer's map is no longer shared by it: a consumer that writes
  // between pulls then updates its map in place instead of stacking a
  // write-log layer on it per pull (and folding the stack, with trie path
  // copies, every few pulls: most of the cost of such a pull, measured in
  // benchmarks.md). The next enter() rebuilds anyway (the consumer changed).
  // No allocation (stash_ has room for own_, see write()); nothing dies here:
  // every value the old map holds is the consumer's (its map cannot change
  // while the body runs on its stack) or is kept in stash_.
  void drop() noexcept {
    stash_.resize(own_.size());
    for (std::size_t i = 0; i < own_.size(); ++i) {
      const box_ptr* b = ctx_->map.find(own_[i], own_[i]);
      stash_[i] = b ? *b : box_ptr();
    }
    context_map old;
    ctx_->replace_map(old);
    dropped_ = true;
  }

  bool is_own(std::uint64_t id) const noexcept {
    for (std::uint64_t o : own_)
      if (o == id) return true;
    return false;
  }
  bool is_inherited(std::uint64_t id, const box_base* b) const noexcept {
    for (const inherited_box& e : inherited_)
      if (e.box.get() == b && e.id == id) return true;
    return false;
  }

  // The consumer's map (or an empty one) with the body's own values on top.
  // Strong guarantee: everything is built before the context changes.
  void rebuild(context_impl* cons, context_map& retired) {
    rebuild(cons ? &cons->map : nullptr, retired, cons ? &cons->policy_keys() : nullptr);
  }
  // `from_keys`: the policy-bearing keys of `from`'s context (flow policies),
  // merged with the body's own so that a fork inside the body applies both.
  void rebuild(const context_map* from, context_map& retired, const flow_keys* from_keys = nullptr) {
    flow_keys keys = from_keys ? *from_keys : flow_keys();
    for (std::uint64_t id : own_)
      if (ctx_->policy_keys().contains(id) && !keys.contains(id))
        keys = keys.with(id, [](std::uint64_t) { return true; });
    context_map m = from ? *from : context_map();
    for (std::size_t i = 0; i < own_.size(); ++i) {
      const std::uint64_t id = own_[i];
      const box_ptr* mine = !dropped_ ? ctx_->map.find(id, id) : stash_[i] ? &stash_[i] : nullptr;
      box_ptr copy = mine ? *mine : box_ptr();
      // What these displace is also held by the consumer's map or by ours:
      // nothing dies here.
      box_ptr displaced;
      context_map::retired dropped;
      if (copy)
        m.assign(id, id, std::move(copy), displaced, dropped);
      else
        m.remove(id, id, displaced, dropped);
    }
    ctx_->replace_map(m, &keys);
    retired = std::move(m);
    if (dropped_) {  // the new map holds the stashed values now
      dropped_ = false;
      for (box_ptr& b : stash_) b = box_ptr();
    }
  }

  context_impl* ctx_ = nullptr;           // owned by the generator (released after its frame)
  const context_map* consumer_map_ = nullptr;  // the consumer's map: between enter() and leave(), or base_
  context_map base_;                           // build_over's snapshot
  std::uint64_t consumer_id_ = 0;         // what the map was last built over
  std::uint64_t consumer_mods_ = 0;
  bool built_ = false;
  bool via_base_ = false;  // last built by build_over (else by enter)
  bool consumer_wrote_ = false;  // the last enter() found the consumer's context changed
  bool dropped_ = false;         // the map was emptied by drop(); own values in stash_
  std::vector<box_ptr> stash_;   // while dropped_: the value of own_[i] (null: none)
  bool shared_ = false;
  std::vector<std::uint64_t> own_;
  std::vector<inherited_box> inherited_;
};

}  // namespace detail

// A synchronous generator (co_yield; no co_await) whose body runs in its own
// context layer over its consumer's current context. See the rules at the top
// of this file.
//
// A range: begin() starts the body and returns an input iterator (the first
// call only; a later call returns an iterator at the current element without
// resuming), end() is std::default_sentinel. `*it` is T&& for a T that is not
// a reference (so move-only values can be moved out), else T. `co_yield e`
// yields e itself (an rvalue: no copy; it lives until the body resumes) or a
// copy of an lvalue.
//
// Cost per resume (begin, ++): a switch of the thread's current context in and
// out, no atomic instruction and no allocation, plus a rebuild of the layer —
// O(1) plus O(k) for k variables the body set — only if the consumer's context
// changed since the last resume. Lookups inside the body cost what they cost
// anywhere (a cache hit when nothing changed). The first resume allocates the
// layer's context; a rebuild may allocate write-log layers.
// Throws: begin() and ++ throw what the body throws (the generator is then
// finished: it == end), and std::bad_alloc (then the body did not run).
// Thread safety: one thread at a time, like any coroutine; it may be resumed
// and destroyed on any thread, and always layers over that thread's current
// context. Frames of an over-aligned T are allocated with T's alignment.
template <class T>
class [[nodiscard]] generator : public std::ranges::view_base {
 public:
  using value_type = std::remove_cvref_t<T>;
  using reference = std::conditional_t<std::is_reference_v<T>, T, T&&>;

  class promise_type;
  using handle_type = std::coroutine_handle<promise_type>;

  class promise_type {
   public:
    generator get_return_object() noexcept { return generator(handle_type::from_promise(*this)); }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }

    // co_yield of a value of the reference type: no copy.
    std::suspend_always yield_value(reference v) noexcept {
      value_ = std::addressof(v);
      return {};
    }
    // co_yield of an lvalue in a generator<T> of a non-reference T: a copy,
    // kept in the frame until the body resumes. Throws what T's copy throws
    // (inside the body: it reaches the consumer like any exception of it).
    struct copy_awaiter {
      value_type value;
      promise_type* p;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<>) noexcept { p->value_ = std::addressof(value); }
      void await_resume() const noexcept {}
    };
    copy_awaiter yield_value(const std::remove_reference_t<reference>& v)
      requires std::is_rvalue_reference_v<reference> &&
               std::is_constructible_v<value_type, const std::remove_reference_t<reference>&>
    {
      return copy_awaiter{value_type(v), this};
    }

    // A synchronous generator: its body cannot co_await.
    template <class U>
    std::suspend_never await_transform(U&&) = delete;

    void return_void() const noexcept {}
    void unhandled_exception() noexcept { error_ = std::current_exception(); }

    // Frames of an over-aligned T get T's alignment (clang 14 otherwise
    // allocates them 16-aligned and misplaces over-aligned locals).
    static constexpr std::size_t frame_align =
        alignof(value_type) > __STDCPP_DEFAULT_NEW_ALIGNMENT__ ? alignof(value_type) : __STDCPP_DEFAULT_NEW_ALIGNMENT__;
    static void* operator new(std::size_t n) {
      if constexpr (frame_align > __STDCPP_DEFAULT_NEW_ALIGNMENT__)
        return ::operator new(n, std::align_val_t{frame_align});
      else
        return ::operator new(n);
    }
    static void operator delete(void* p, std::size_t) noexcept {
      if constexpr (frame_align > __STDCPP_DEFAULT_NEW_ALIGNMENT__)
        ::operator delete(p, std::align_val_t{frame_align});
      else
        ::operator delete(p);
    }

    // For tests (generator_test): the body's layer.
    const detail::generator_layer& layer() const noexcept { return layer_; }

   private:
    friend class generator;
    std::add_pointer_t<reference> value_ = nullptr;
    std::exception_ptr error_;
    detail::generator_layer layer_;
    bool started_ = false;
  };

  // An input iterator over the yielded values. Copies share the position
  // (advancing one advances all).
  class iterator {
   public:
    using value_type = generator::value_type;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::input_iterator_tag;

    iterator() noexcept = default;
    // Precondition: *this != end.
    reference operator*() const noexcept { return static_cast<reference>(*h_.promise().value_); }
    // Resumes the body until its next co_yield or its end. Throws what the
    // body throws (then *this == end), or std::bad_alloc (then nothing ran).
    // Precondition: *this != end.
    iterator& operator++() {
      generator::resume(h_);
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& i, std::default_sentinel_t) noexcept { return !i.h_ || i.h_.done(); }

   private:
    friend class generator;
    explicit iterator(handle_type h) noexcept : h_(h) {}
    handle_type h_{};
  };

  generator(generator&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  // Destroys the generator this one held (its last resume, see ~generator).
  generator& operator=(generator&& o) noexcept {
    if (this != &o) {
      generator old(std::move(*this));
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  generator(const generator&) = delete;
  generator& operator=(const generator&) = delete;

  // A started, unfinished generator gets its last resume: the destructors of
  // its suspended locals (user code: scoped_set guards, anything that reads or
  // sets variables) run in its layer over the calling thread's current
  // context; nothing they set reaches that context. Then its context is
  // released (the values the body set die, in the caller's context).
  ~generator() { destroy(); }

  // The first call starts the body and runs it to its first co_yield (or its
  // end); later calls return an iterator at the current element and resume
  // nothing. Throws what the body throws, or std::bad_alloc (then the body did
  // not start, and a later begin() starts it).
  iterator begin() {
    if (h_ && !h_.promise().started_) resume(h_);
    return iterator(h_);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

  // For tests: the promise (null for a moved-from generator).
  const promise_type* promise() const noexcept { return h_ ? &h_.promise() : nullptr; }

 private:
  explicit generator(handle_type h) noexcept : h_(h) {}

  static void resume(handle_type h) {
    promise_type& p = h.promise();
    detail::thread_state& st = detail::this_thread_state();
    detail::context_map retired;  // released last: see generator_layer::enter
    const detail::switch_record r = p.layer_.enter(st, retired);
    p.started_ = true;
    h.resume();  // never throws: the body's exceptions go to unhandled_exception
    p.layer_.leave(st, r);
    if (p.error_) std::rethrow_exception(std::exchange(p.error_, nullptr));
  }

  void destroy() noexcept {
    if (!h_) return;
    const handle_type h = std::exchange(h_, {});
    detail::generator_layer::last_resume(h.promise().layer_, [h] { h.destroy(); });
  }

  handle_type h_{};
};

}  // namespace ctxvars
