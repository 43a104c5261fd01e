// Channels and as_tuple for the Asio tests that use them: the two Asios keep
// them in different places (see asio_test_net.hpp). Provides `as_tuple` in the
// includer's scope through `net_channel::as_tuple`.
#pragma once

#include "asio_test_net.hpp"

#if defined(CTXVARS_TEST_BOOST_ASIO)
#include <boost/asio/experimental/concurrent_channel.hpp>
namespace net_channel {
using ::boost::asio::as_tuple;
}
#else
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/concurrent_channel.hpp>
namespace net_channel {
using ::asio::experimental::as_tuple;
}
#endif
