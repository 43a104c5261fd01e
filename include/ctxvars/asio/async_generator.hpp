// async_generator<T> for Asio: a producer whose body is an Asio coroutine
// (it awaits timers, sockets, channels, anything with use_awaitable) and runs
// in its own context layer over its consumer's current context, as
// ctxvars::generator<T> and ctxvars::async_generator<T> do (PEP 568).
// Part of the Asio adapter (one implementation for both Asios; see adapter.hpp);
// the faces name it ctxvars::asio::async_generator<T> / generator_yield<T>
// (and ctxvars::boost_asio::...).
//
//   net::awaitable<void> rows(cx::generator_yield<row> out, query q) {
//     auto g = stage.scoped_set("fetching");          // seen by this body only
//     while (auto page = co_await fetch(q))            // real Asio operations
//       for (auto& r : *page) co_await out.yield(r);
//   }
//   // in a task (cx::co_spawn):
//   cx::async_generator<row> g(ex, [q](auto out) { return rows(std::move(out), q); });
//   while (std::optional<row> r = co_await g.next()) ...   // stage unchanged here
//
// Why not a coroutine type of its own: Asio's operations complete into
// asio::awaitable coroutines only (use_awaitable needs Asio's promise), so the
// body must be one. The generator therefore runs the body as a task of the
// adapter (co_spawn's machinery: every resumption of it, through its own
// executor, a bound executor, a strand or another io_context, runs in its
// context — here, the layer's context) and hands values over like a channel:
// `co_await out.yield(v)` gives v to the pending pull and suspends the body
// until the next one.
//
// The rules (docs/beyond-python.md, "Asio generators"):
// - lazy: the body starts at the first pull;
// - each pull (async_next / next) snapshots the context current where it is
//   initiated (the consumer's); the body runs in its layer over that snapshot
//   until it yields again: it sees the consumer's values at each pull except
//   for variables it set itself, and its sets persist across its
//   suspensions but never reach the consumer; its tokens are foreign to the
//   consumer and the consumer's to it;
// - an exception thrown out of the body completes the pending pull with it
//   (once; the generator is then finished); the consumer's context is as it was;
// - cancelling a pull (its completion handler's cancellation slot: awaitable
//   operators, parallel groups, bind_cancellation_slot) cancels the body as Asio
//   cancels a co_spawned coroutine: what it awaits completes with
//   operation_aborted; the pull completes when the body yields or ends;
// - destroying the generator while the body is suspended at a yield (the
//   consumer stopped early) destroys the body's frames — their destructors,
//   scoped_set guards included — in its layer, rebuilt over a snapshot of the
//   destroying thread's current context, in a step on the body's executor
//   (Asio unwinds a coroutine through its executor). Nothing they set reaches
//   anyone. If that executor has shut down, Asio destroys the frames wherever
//   it drops them.
// - generators nest (a body pulling from another layers it over its own layer).
//
// Preconditions: one pull at a time (a second concurrent pull completes with
// std::logic_error); yield only from the body; a body returns
// awaitable<void> (with the Asio's default executor type).
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "../generator.hpp"
#include "co_spawn.hpp"

namespace ctxvars::detail::asio_adapter {

template <class Traits, class T>
class generator_core;

// What a pull hands the body when it resumes it at a yield: the consumer's
// context (a snapshot), and whether to stop (the generator was destroyed).
struct generator_resume {
  bool stop = false;
  context_map base;
};

// A pending pull: the consumer's completion handler, type-erased.
template <class T>
struct generator_pull {
  virtual ~generator_pull() = default;
  // Posts the handler with (e, v) through its associated executor (never
  // inline: the caller may be the initiating function or the body's step).
  virtual void complete(std::exception_ptr e, std::optional<T> v) = 0;
};

// The body suspended at a yield: its coroutine's handler, type-erased.
struct generator_resumer {
  virtual ~generator_resumer() = default;
  // Dispatches the handler through the body's executor (it runs in a step of
  // the body's task, i.e. in its layer).
  virtual void resume(generator_resume r) = 0;
};

template <class Traits, class T, class Handler>
class generator_pull_op final : public generator_pull<T> {
 public:
  template <class Ex>
  generator_pull_op(Handler h, const Ex& fallback)
      : work_(Traits::prefer(Traits::associated_executor(h, fallback), Traits::outstanding_work_tracked)),
        h_(std::move(h)) {}
  void complete(std::exception_ptr e, std::optional<T> v) override {
    Traits::post(work_, [h = std::move(h_), e, v = std::move(v)]() mutable {
      // On the consumer's executor, as its cancellation signals come.
      auto slot = Traits::associated_cancellation_slot(h);
      if (slot.is_connected()) slot.clear();
      std::move(h)(e, std::move(v));
    });
  }

 private:
  using work_t = std::decay_t<decltype(Traits::prefer(
      Traits::associated_executor(std::declval<const Handler&>(), std::declval<const typename Traits::any_io_executor&>()),
      Traits::outstanding_work_tracked))>;
  work_t work_;  // the consumer's executor: outstanding work while the pull waits
  Handler h_;
};

template <class Traits, class Handler>
class generator_resumer_op final : public generator_resumer {
 public:
  explicit generator_resumer_op(Handler h) : h_(std::move(h)) {}
  void resume(generator_resume r) override {
    auto ex = Traits::associated_executor(h_, typename Traits::any_io_executor());
    Traits::dispatch(ex, [h = std::move(h_), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
  }

 private:
  Handler h_;
};

// Installed in a pull's cancellation slot: forwards the cancellation to the body.
template <class Traits, class T>
struct generator_pull_cancel {
  std::weak_ptr<generator_core<Traits, T>> core;
  void operator()(typename Traits::cancellation_type t) const {
    if (auto c = core.lock()) c->forward_cancel(t);
  }
};

// The body's side: `co_await out.yield(v)`. Copyable (the body may pass it on);
// each copy names the same generator.
template <class Traits, class T>
class basic_generator_yield {
 public:
  // Hands v to the pending pull and suspends the body until the next pull,
  // which resumes it in its layer rebuilt over that pull's consumer context.
  // Throws (in the body) std::bad_alloc if the layer cannot be rebuilt, and
  // what Asio throws at a co_await of a cancelled coroutine.
  typename Traits::template awaitable<void> yield(T v) const;

 private:
  template <class, class>
  friend class generator_core;
  explicit basic_generator_yield(std::shared_ptr<generator_core<Traits, T>> c) noexcept : core_(std::move(c)) {}
  std::shared_ptr<generator_core<Traits, T>> core_;
};

// The co_spawn completion of the body's task. Destroyed without being called
// (the body's frames destroyed: the generator stopped early, or its executor
// shut down), it drops a pending pull so that nothing waits for it forever.
template <class Traits, class T>
class generator_body_done {
 public:
  using cancellation_slot_type = typename Traits::cancellation_slot;

  explicit generator_body_done(std::shared_ptr<generator_core<Traits, T>> c) noexcept : core_(std::move(c)) {}
  generator_body_done(generator_body_done&& o) noexcept : core_(std::move(o.core_)) {}
  generator_body_done& operator=(generator_body_done&&) = delete;
  ~generator_body_done() {
    if (core_) core_->body_gone();
  }
  void operator()(std::exception_ptr e) {
    auto c = std::move(core_);
    c->body_done(std::move(e));
  }
  // The body's task is cancelled through this slot (forwarded pull cancellations).
  cancellation_slot_type get_cancellation_slot() const noexcept { return core_->body_cancel_.slot(); }

 private:
  std::shared_ptr<generator_core<Traits, T>> core_;
};

// The shared state of one generator: the layer, the pending pull, the body
// suspended at a yield. The consumer's handle, the body's yield objects, and
// the body's completion hold it.
//
// Thread safety: `m_` guards the phase and the handlers; the layer is touched
// by one side at a time (the consumer before starting or resuming the body,
// the body in its steps), each handing over through `m_`. No user code runs
// under `m_` (handlers are completed or destroyed after it is released).
template <class Traits, class T>
class generator_core : public std::enable_shared_from_this<generator_core<Traits, T>> {
 public:
  generator_core() : layer_(CTXVARS_DEBUG_CHECKS != 0) {}
  generator_core(const generator_core&) = delete;
  generator_core& operator=(const generator_core&) = delete;
  virtual ~generator_core() {
    graveyard_.clear();
    if (context_impl* c = layer_.detach()) c->release();  // the task's block may hold it longer
  }

  // ---- the consumer's side ----

  // A pull's initiation, on the consumer's thread: the body (started, or
  // resumed at its yield) runs in its layer over the context current here.
  // Throws std::bad_alloc before anything changed (then the handler is gone).
  template <class Handler>
  void start_pull(Handler h, const typename Traits::any_io_executor& fallback) {
    auto slot = Traits::associated_cancellation_slot(h);
    std::unique_ptr<generator_pull<T>> op(new generator_pull_op<Traits, T, Handler>(std::move(h), fallback));
    if (slot.is_connected())  // cleared by the completion, on the consumer's executor
      slot.template emplace<generator_pull_cancel<Traits, T>>(
          generator_pull_cancel<Traits, T>{this->weak_from_this()});
    context_impl* cur = this_thread_state().current;
    context_map snapshot = cur ? cur->map : context_map();

    std::vector<context_map> dead;  // released last, here: the consumer's old values
    std::unique_ptr<generator_resumer> resume;
    std::exception_ptr error;
    bool start = false, done = false, busy = false;
    {
      std::unique_lock<std::mutex> l(m_);
      dead.swap(graveyard_);
      if (pull_) {
        busy = true;
      } else if (phase_ == phase::finished) {
        done = true;
        error = std::exchange(error_, nullptr);
      } else if (phase_ == phase::not_started) {
        // Nobody is inside the layer yet: build it here.
        context_map retired, retired_base;
        layer_.build_over(std::move(snapshot), retired, retired_base);
        prepare_spawn();
        phase_ = phase::running;
        pull_ = std::move(op);
        ++seq_;
        start = true;
      } else {  // at_yield: the body waits for this pull
        l.unlock();
        // The body is suspended (its last step may still be leaving the
        // context on another thread, which touches no inherited box): drop
        // the boxes no token of it can name, here, in the consumer's context.
        layer_.prune();
        l.lock();
        phase_ = phase::running;
        pull_ = std::move(op);
        ++seq_;
        resume = std::move(resume_);
      }
    }
    if (busy) {
      op->complete(std::make_exception_ptr(std::logic_error(
                       "ctxvars async_generator: a pull was started while another one is pending")),
                   std::nullopt);
    } else if (done) {
      op->complete(error, std::nullopt);
    } else if (start) {
      spawn();
    } else {
      resume->resume(generator_resume{false, std::move(snapshot)});
    }
  }

  // The consumer's handle is destroyed (it stopped early, or the body ended).
  void stop() noexcept {
    context_impl* cur = this_thread_state().current;
    context_map snapshot = cur ? cur->map : context_map();
    std::vector<context_map> dead;
    std::unique_ptr<generator_resumer> resume;
    {
      std::lock_guard<std::mutex> l(m_);
      dead.swap(graveyard_);
      switch (phase_) {
        case phase::not_started:
          phase_ = phase::finished;
          break;
        case phase::at_yield:
          phase_ = phase::running;  // running its cleanup
          resume = std::move(resume_);
          break;
        case phase::running:  // a pull is pending (a precondition broken): stop at the next yield
          stop_requested_ = true;
          stop_base_ = snapshot;
          break;
        case phase::finished:
          break;
      }
    }
    if (resume) resume->resume(generator_resume{true, std::move(snapshot)});
  }

  // A cancellation of the pending pull (on the consumer's side): emitted to the
  // body in a step of its own executor, if that pull is still pending then.
  void forward_cancel(typename Traits::cancellation_type t) {
    std::uint64_t seq;
    {
      std::lock_guard<std::mutex> l(m_);
      if (phase_ != phase::running || !pull_) return;
      seq = seq_;
    }
    post_to_body([c = this->shared_from_this(), t, seq] {
      bool live;
      {
        std::lock_guard<std::mutex> l(c->m_);
        live = c->phase_ == phase::running && c->pull_ && c->seq_ == seq;
      }
      if (live) c->body_cancel_.emit(t);
    });
  }

  // ---- the body's side ----

  // At a yield, in the body's step: v goes to the pending pull.
  void yielded(std::unique_ptr<generator_resumer> resume, std::optional<T> v) {
    std::unique_ptr<generator_pull<T>> pull;
    bool stop = false;
    context_map base;
    {
      std::lock_guard<std::mutex> l(m_);
      pull = std::move(pull_);
      if (stop_requested_) {
        stop = true;
        base = std::move(stop_base_);
      } else {
        phase_ = phase::at_yield;
        resume_ = std::move(resume);
      }
    }
    if (pull) pull->complete(nullptr, stop ? std::nullopt : std::move(v));
    if (stop) resume->resume(generator_resume{true, std::move(base)});
  }

  // Resumed at a yield, in the body's step: the layer is rebuilt over the
  // pull's snapshot, with the thread switched out of it meanwhile (the cache
  // and watchers see the rebuild). Throws std::bad_alloc (then the layer is
  // as it was).
  void resumed(context_map base) {
    context_map retired, retired_base;
    context_impl* const c = layer_.context();
    thread_state& st = this_thread_state();
    step_scope* s = innermost_step;
    if (s && s->context() == c && st.current == c) {
      s->outside([&] { layer_.build_over(std::move(base), retired, retired_base); });
    } else {
      layer_.build_over(std::move(base), retired, retired_base);
      if (st.current == c) st.version = fresh_version(st);
    }
    // The replaced maps may hold the consumer's last references to values it
    // replaced since: released by the consumer (next pull, or the handle's end).
    std::lock_guard<std::mutex> l(m_);
    graveyard_.push_back(std::move(retired));
    graveyard_.push_back(std::move(retired_base));
  }

  void body_done(std::exception_ptr e) {
    std::unique_ptr<generator_pull<T>> pull;
    {
      std::lock_guard<std::mutex> l(m_);
      phase_ = phase::finished;
      pull = std::move(pull_);
      if (!pull) error_ = e;
    }
    if (pull) pull->complete(std::move(e), std::nullopt);
  }

  void body_gone() noexcept {
    std::unique_ptr<generator_pull<T>> pull;
    std::unique_ptr<generator_resumer> resume;
    {
      std::lock_guard<std::mutex> l(m_);
      phase_ = phase::finished;
      pull = std::move(pull_);
      resume = std::move(resume_);
    }
  }

  // For tests: the layer.
  const generator_layer& layer() const noexcept { return layer_; }

 protected:
  // Under m_, once: makes the body's task (its context: the layer's).
  virtual void prepare_spawn() = 0;
  // Spawns the body (outside m_: its first step may run inline).
  virtual void spawn() = 0;
  // Runs f in a step of the body's task, through its executor, never inline.
  virtual void post_to_body(std::function<void()> f) = 0;

 public:  // for run_generator_body, in the body's task
  // The body's awaitable: the user's function called with a yield object.
  virtual typename Traits::template awaitable<void> call_body() = 0;
  // Destroys the user's function (in the layer, before the task ends).
  virtual void drop_body() noexcept = 0;

 protected:

  context_impl* layer_context() const noexcept { return layer_.context(); }
  basic_generator_yield<Traits, T> make_yield() { return basic_generator_yield<Traits, T>(this->shared_from_this()); }
  generator_body_done<Traits, T> make_done() { return generator_body_done<Traits, T>(this->shared_from_this()); }

 private:
  friend class generator_body_done<Traits, T>;
  enum class phase { not_started, running, at_yield, finished };

  std::mutex m_;
  generator_layer layer_;
  phase phase_ = phase::not_started;                 // under m_
  std::unique_ptr<generator_pull<T>> pull_;          // under m_: the pending pull
  std::unique_ptr<generator_resumer> resume_;        // under m_: the body at its yield
  std::exception_ptr error_;                         // under m_: thrown while no pull was pending
  std::uint64_t seq_ = 0;                            // under m_: pulls started
  bool stop_requested_ = false;                      // under m_
  context_map stop_base_;                            // under m_
  std::vector<context_map> graveyard_;               // under m_: maps the body's rebuilds replaced
  typename Traits::cancellation_signal body_cancel_;  // emitted in the body's steps only
};

// The body's task: the user's function (kept in the generator's state),
// called with a yield object inside the task, then dropped there (its captures
// die in the layer); then the task leaves its context before Asio completes
// it (as run_task).
template <class Traits, class T>
typename Traits::template awaitable<void> run_generator_body(std::shared_ptr<generator_core<Traits, T>> c,
                                                             task_ref t) {
  std::exception_ptr e;
  try {
    co_await c->call_body();
  } catch (...) {
    e = std::current_exception();
  }
  c->drop_body();
  finish_task(t.get());
  if (e) std::rethrow_exception(e);
}

template <class Traits, class T, class Executor, class F>
class generator_state final : public generator_core<Traits, T> {
 public:
  generator_state(Executor ex, F f) : ex_(std::move(ex)), f_(std::move(f)) {}

 private:
  void prepare_spawn() override {
    cex_.emplace(ex_, make_task(context_access::make(this->layer_context())));
  }
  void spawn() override {
    Traits::co_spawn(*cex_, run_generator_body<Traits, T>(this->shared_from_this(), cex_->task()), this->make_done());
  }
  typename Traits::template awaitable<void> call_body() override { return std::invoke(*f_, this->make_yield()); }
  void drop_body() noexcept override { f_.reset(); }
  void post_to_body(std::function<void()> f) override {
    Traits::execute(Traits::prefer(*cex_, Traits::blocking_never), std::move(f));
  }

  Executor ex_;
  std::optional<F> f_;
  std::optional<basic_context_executor<Traits, Executor>> cex_;
};

template <class Traits, class T>
typename Traits::template awaitable<void> generator_yield_body(std::shared_ptr<generator_core<Traits, T>> c,
                                                              std::optional<T> v) {
  auto tok = Traits::use_awaitable();
  generator_resume r = co_await Traits::template async_initiate<decltype(tok), void(generator_resume)>(
      [&c, &v](auto handler) {
        using H = decltype(handler);
        c->yielded(std::unique_ptr<generator_resumer>(new generator_resumer_op<Traits, H>(std::move(handler))),
                   std::move(v));
      },
      tok);
  c->resumed(std::move(r.base));
  if (r.stop) {
    // Drop our own handler: Asio destroys the body's frames through its
    // executor (a step in the layer, rebuilt just now over the destroyer's
    // context), running their destructors. Never returns.
    c.reset();
    co_await Traits::template async_initiate<decltype(tok), void()>([](auto) {}, tok);
  }
}

template <class Traits, class T>
typename Traits::template awaitable<void> basic_generator_yield<Traits, T>::yield(T v) const {
  return generator_yield_body<Traits, T>(core_, std::optional<T>(std::move(v)));
}

// The consumer's handle. See the top of this file. Move-only.
//
// Cost per pull: a snapshot of the consumer's context (O(1)), one allocation
// for the pending pull, a dispatch into the body's executor and a post back to
// the consumer's; the body's steps cost what a task's steps cost, plus, at a
// resume, the layer's rebuild if the consumer's context changed (O(1) + O(k)
// for k variables the body set). Thread safety: one pull at a time; the
// handle is used by one thread at a time; the body runs on its executor.
template <class Traits, class T>
class basic_async_generator {
 public:
  using value_type = T;
  using yield_type = basic_generator_yield<Traits, T>;

  // A generator whose body is f(yield_type) (an awaitable<void>), run on `ex`
  // (an executor, or one wrapped by the adapter: the bare one is used, as
  // co_spawn does) in its own layer. Nothing runs until the first pull.
  // Allocates; throws std::bad_alloc.
  template <class Executor, class F>
    requires executor_like<Traits, Executor> && std::is_invocable_v<std::decay_t<F>&, yield_type>
  basic_async_generator(const Executor& ex, F&& f) : core_(make_core(unwrap<Traits>(ex), std::forward<F>(f))) {}
  template <class ExecutionContext, class F>
    requires execution_context_like<Traits, ExecutionContext> && std::is_invocable_v<std::decay_t<F>&, yield_type>
  basic_async_generator(ExecutionContext& ctx, F&& f) : basic_async_generator(ctx.get_executor(), std::forward<F>(f)) {}

  basic_async_generator(basic_async_generator&&) noexcept = default;
  basic_async_generator& operator=(basic_async_generator&& o) noexcept {
    if (this != &o) {
      basic_async_generator old(std::move(*this));
      core_ = std::move(o.core_);
    }
    return *this;
  }
  basic_async_generator(const basic_async_generator&) = delete;
  basic_async_generator& operator=(const basic_async_generator&) = delete;

  // The consumer stopped: a body suspended at a yield is destroyed in its
  // layer over the calling thread's current context (see the top of this file).
  ~basic_async_generator() {
    if (core_) core_->stop();
  }

  // Asio operation, signature void(std::exception_ptr, std::optional<T>):
  // the next value, nullopt once the body has returned, or the exception it
  // threw (once). The body sees the context current where this is initiated.
  // The initiation allocates (the pending pull) and throws std::bad_alloc;
  // the handler is completed through its associated executor (else the
  // generator's), never inside the initiation. Precondition: not moved-from.
  template <class Token>
  auto async_next(Token&& token) {
    return Traits::template async_initiate<std::decay_t<Token>, void(std::exception_ptr, std::optional<T>)>(
        [](auto handler, std::shared_ptr<generator_core<Traits, T>> c, typename Traits::any_io_executor fallback) {
          c->start_pull(std::move(handler), fallback);
        },
        token, core_, fallback_);
  }
  // co_await g.next(): async_next(use_awaitable); rethrows the body's exception.
  auto next() { return async_next(Traits::use_awaitable()); }

  // For tests.
  const generator_core<Traits, T>* core() const noexcept { return core_.get(); }

 private:
  template <class Ex, class F>
  std::shared_ptr<generator_core<Traits, T>> make_core(Ex ex, F&& f) {
    using Fd = std::decay_t<F>;
    using Aw = std::invoke_result_t<Fd&, yield_type>;
    static_assert(std::is_same_v<Aw, typename Traits::template awaitable<void>>,
                  "an Asio async_generator's body returns awaitable<void> (with the default executor type)");
    fallback_ = typename Traits::any_io_executor(ex);
    return std::make_shared<generator_state<Traits, T, Ex, Fd>>(std::move(ex), Fd(std::forward<F>(f)));
  }

  typename Traits::any_io_executor fallback_;  // completes handlers that have no executor of their own
  std::shared_ptr<generator_core<Traits, T>> core_;
};

}  // namespace ctxvars::detail::asio_adapter
