// Must NOT compile: Boost.Asio types given to the standalone Asio adapter.
// The test (tests/CMakeLists.txt) passes when the compiler's message says, in
// one line, which adapter to use.
#include <ctxvars/asio.hpp>

#include <boost/asio.hpp>

boost::asio::awaitable<void> work() { co_return; }

int main() {
  boost::asio::io_context io;
  ctxvars::asio::co_spawn(io, work(), boost::asio::detached);
}
