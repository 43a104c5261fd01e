// ctxvars::bind keeps a handler's Asio associations (executor, allocator,
// cancellation slot) in a file that includes ONLY the core header and Asio,
// no adapter header. Compiled for standalone Asio and Boost.Asio.
#include "ctxvars/ctxvars.hpp"

#include <gtest/gtest.h>

#if defined(CTXVARS_TEST_BOOST_ASIO)
#include <boost/asio.hpp>
namespace net = ::boost::asio;
#else
#include <asio.hpp>
namespace net = ::asio;
#endif

#include <atomic>
#include <memory>
#include <thread>
#include <type_traits>

namespace {

ctxvars::context_var<int> rid("rid", -1);

template <class T>
struct tagged_allocator : std::allocator<T> {
  using value_type = T;
  int tag = 0;
  tagged_allocator() = default;
  explicit tagged_allocator(int t) : tag(t) {}
  template <class U>
  tagged_allocator(const tagged_allocator<U>& o) : tag(o.tag) {}
  template <class U>
  struct rebind {
    using other = tagged_allocator<U>;
  };
};

TEST(AsioBindWithoutAdapter, BothBindFormsReportTheHandlersAssociations) {
  net::io_context io;
  auto strand = net::make_strand(io);
  net::cancellation_signal sig;
  auto h = net::bind_cancellation_slot(
      sig.slot(), net::bind_executor(strand, [](auto) {}));
  auto snap = ctxvars::bind(h);
  auto in_c = ctxvars::bind(ctxvars::context(), h);
  static_assert(std::is_same_v<net::associated_executor_t<decltype(snap)>, decltype(strand)>);
  static_assert(std::is_same_v<net::associated_executor_t<decltype(in_c)>, decltype(strand)>);
  EXPECT_TRUE(net::get_associated_executor(snap) == strand);
  EXPECT_TRUE(net::get_associated_executor(in_c, io.get_executor()) == strand);
  EXPECT_TRUE(net::get_associated_cancellation_slot(snap).is_connected());
  EXPECT_TRUE(net::get_associated_cancellation_slot(in_c).is_connected());

  // Nothing associated: the defaults Asio would use for the bare handler.
  auto plain = ctxvars::bind([] {});
  EXPECT_TRUE(net::get_associated_executor(plain, io.get_executor()) == io.get_executor());
  EXPECT_FALSE(net::get_associated_cancellation_slot(plain).is_connected());
}

// Each associator's get is forwarded in the form it is called in: where the bare
// handler's one-argument get returns by value (Boost returns the default
// candidate by value there), so does the bound one's, so `const auto& x = get(b)`
// is as safe as for the bare handler (it used to be a reference to a temporary
// that died at the end of the call: ASan stack-use-after-scope).
template <template <class, class> class A, class H, class B, class D>
void expect_same_get_forms(const H& h, const B& b) {
  static_assert(std::is_same_v<decltype(A<H, D>::get(h)), decltype(A<B, D>::get(b))>,
                "one-argument get: the same type, reference or value, as the bare handler's");
  static_assert(std::is_same_v<decltype(A<H, D>::get(h, std::declval<const D&>())),
                               decltype(A<B, D>::get(b, std::declval<const D&>()))>);
}

TEST(AsioBindWithoutAdapter, AssociatorsReturnWhatTheBareHandlersReturnNoDanglingDefault) {
  net::io_context io;
  auto h = [] {};
  auto snap = ctxvars::bind(h);
  auto in_c = ctxvars::bind(ctxvars::context(), h);
  expect_same_get_forms<net::associated_executor, decltype(h), decltype(snap), net::any_io_executor>(h, snap);
  expect_same_get_forms<net::associated_executor, decltype(h), decltype(in_c), net::any_io_executor>(h, in_c);
  expect_same_get_forms<net::associated_allocator, decltype(h), decltype(snap), std::allocator<void>>(h, snap);
  expect_same_get_forms<net::associated_cancellation_slot, decltype(h), decltype(snap), net::cancellation_slot>(
      h, snap);
  auto s = net::bind_executor(net::make_strand(io), h);
  auto bs = ctxvars::bind(s);
  expect_same_get_forms<net::associated_executor, decltype(s), decltype(bs), net::any_io_executor>(s, bs);
  // Used the way that dangled: the value outlives the call (ASan checks it).
  const auto& ex = net::associated_executor<decltype(snap), net::any_io_executor>::get(snap);
  EXPECT_TRUE(ex.target_type() == typeid(void)) << "an empty any_io_executor, as for the bare handler";
  const auto& slot = net::associated_cancellation_slot<decltype(in_c)>::get(in_c);
  EXPECT_FALSE(slot.is_connected());
}

TEST(AsioBindWithoutAdapter, TheAssociatedAllocatorIsKept) {
  auto h = net::bind_allocator(tagged_allocator<int>(42), [] {});
  auto b = ctxvars::bind(h);
  static_assert(std::is_same_v<net::associated_allocator_t<decltype(b)>, tagged_allocator<int>>);
  EXPECT_EQ(net::get_associated_allocator(b).tag, 42);
}

// The case from issue 10: a bound handler on a strand, in a file without the
// adapter, used to run off the strand.
TEST(AsioBindWithoutAdapter, ABoundTimerHandlerRunsOnItsStrandInItsContext) {
  net::io_context io;
  auto strand = net::make_strand(io);
  long counter = 0;  // non-atomic: only the strand touches it (TSan checks)
  std::atomic<int> off_strand{0}, wrong{0};
  std::vector<std::unique_ptr<net::steady_timer>> timers;
  ctxvars::context().run([&] {
    (void)rid.set(44);
    for (int i = 0; i < 200; ++i) {
      timers.push_back(std::make_unique<net::steady_timer>(io, std::chrono::microseconds(i % 7)));
      timers.back()->async_wait(ctxvars::bind(net::bind_executor(strand, [&](auto) {
        if (!strand.running_in_this_thread()) ++off_strand;
        if (rid.get() != 44) ++wrong;
        ++counter;
      })));
    }
  });
  std::thread t([&] { io.run(); });
  io.run();
  t.join();
  EXPECT_EQ(off_strand.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(counter, 200);
}

TEST(AsioBindWithoutAdapter, CancellationThroughABoundHandlerReachesTheOperation) {
  net::io_context io;
  net::cancellation_signal sig;
  net::steady_timer timer(io, net::steady_timer::time_point::max());  // only the cancel ends it
  bool aborted = false;
  int seen = 0;
  ctxvars::context().run([&] {
    (void)rid.set(5);
    timer.async_wait(ctxvars::bind(net::bind_cancellation_slot(sig.slot(), [&](auto ec) {
      aborted = ec == net::error::operation_aborted;
      seen = rid.get();
    })));
  });
  net::post(io, [&] { sig.emit(net::cancellation_type::terminal); });
  io.run();
  EXPECT_TRUE(aborted);
  EXPECT_EQ(seen, 5);
}

}  // namespace
