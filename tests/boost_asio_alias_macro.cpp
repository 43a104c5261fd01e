// The other order: ctxvars first, then the alias (CTXVARS_NO_STANDALONE_ASIO is
// defined for the whole target; see boost_asio_alias_test.cpp).
#include "ctxvars/ctxvars.hpp"

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
