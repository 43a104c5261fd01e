// Flow policies: what a variable's value does when new work is forked from the
// current context (ctxvars::fork_context(), which bind, spawn, the Asio
// adapters' co_spawn and to_thread use).
//
//   context_var<int> retries("retries", 0, ctxvars::flow::isolate);  // new work sees the default
//   context_var<span_id> span("span", {}, ctxvars::on_fork([](const span_id& s) { return child_of(s); }));
//
// - flow::inherit (the default): new work sees the parent's value (a snapshot).
// - flow::isolate: new work does not see the parent's value — it sees the
//   default, or nothing (lookup_error) for a variable without one.
// - on_fork(f): new work sees f(parent's value). f applies only to a value the
//   parent set (an unset variable stays unset in the child: its default is
//   not passed to f). f runs on the forking thread, with the parent's context
//   current, before the child exists: what f reads with get() is the parent's
//   value; what it sets goes to the parent's context, never to the child's.
//   f may run on many threads at once (every fork calls it) and must be
//   callable as const. If f throws, the fork throws it and nothing else
//   changed (no child is made; spawn/co_spawn start nothing).
//
// copy_context() and context::copy() stay plain snapshots (Python's rules):
// policies apply only to forks.
//
// A variable destroyed while contexts hold its values: isolate keeps
// isolating; an on_fork variable's values are inherited unchanged from then
// on — f is never called after the variable's destructor returned (it waits
// for calls in progress on other threads), so f may use what it captured from
// an object owning the variable.
#pragma once

#include <concepts>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

#include "detail/flow.hpp"
#include "detail/value_box.hpp"

namespace ctxvars {

// The policies that need no function. `ctxvars::flow::inherit` is what a
// variable constructed without a policy does.
enum class flow : unsigned char { inherit, isolate };

// The policy that maps the parent's value to the child's (see on_fork()).
template <class F>
struct on_fork_policy {
  F f;
};

// New work sees f(parent's value): f must be callable as `const F&` with a
// `const T&` and return something T is constructible from.
template <class F>
on_fork_policy<std::decay_t<F>> on_fork(F&& f) {
  return on_fork_policy<std::decay_t<F>>{std::forward<F>(f)};
}

namespace detail {

template <class P>
struct is_on_fork : std::false_type {};
template <class F>
struct is_on_fork<on_fork_policy<F>> : std::true_type {};

// What context_var's policy constructors accept for a T.
template <class P, class T>
concept flow_policy_for =
    std::same_as<P, flow> ||
    (is_on_fork<P>::value && std::invocable<const decltype(P::f)&, const T&> &&
     std::is_constructible_v<T, std::invoke_result_t<const decltype(P::f)&, const T&>>);

class isolate_policy final : public flow_policy {
 public:
  isolate_policy() noexcept : flow_policy(true) {}

 private:
  void make_child(const box_base*, box_ptr&) const override {}  // never called: forks drop the entry
};

template <class T, class F>
class on_fork_impl final : public flow_policy {
 public:
  explicit on_fork_impl(F&& f) : flow_policy(false), f_(std::move(f)) {}

 private:
  void make_child(const box_base* b, box_ptr& out) const override {
    out = make_box<T>(b->info, std::invoke(f_, box_value<T>(b)));
  }
  F f_;
};

// The policy object a variable's identity will own (null: inherit). Throws
// std::bad_alloc or what F's move throws.
template <class T>
std::unique_ptr<flow_policy> make_flow_policy(flow p) {
  if (p == flow::isolate) return std::make_unique<isolate_policy>();
  return nullptr;
}
template <class T, class F>
std::unique_ptr<flow_policy> make_flow_policy(on_fork_policy<F> p) {
  return std::make_unique<on_fork_impl<T, F>>(std::move(p.f));
}

}  // namespace detail
}  // namespace ctxvars
