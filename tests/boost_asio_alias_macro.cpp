// The other order: ctxvars first, then the alias, no macro (see
// boost_asio_alias_test.cpp).
#include "ctxvars/bind.hpp"
#include "ctxvars/boost_asio.hpp"
#include "ctxvars/codec.hpp"
#include "ctxvars/ctxvars.hpp"
#include "ctxvars/diff.hpp"
#include "ctxvars/format.hpp"
#include "ctxvars/propagation.hpp"
#include "ctxvars/snapshot.hpp"
#include "ctxvars/task.hpp"
#include "ctxvars/thread_pool.hpp"
#include "ctxvars/watch.hpp"

#include <boost/asio.hpp>
namespace asio = boost::asio;

#include <atomic>
#include <thread>

bool alias_macro_file_keeps_the_strand() {
  asio::io_context io;
  auto strand = asio::make_strand(io);
  std::atomic<bool> on_strand{false};
  asio::post(io, ctxvars::bind(asio::bind_executor(strand, [&] { on_strand = strand.running_in_this_thread(); })));
  std::thread t([&] { io.run(); });
  io.run();
  t.join();
  return on_strand.load();
}
