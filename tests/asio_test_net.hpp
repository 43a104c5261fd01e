// Which Asio an Asio test binary runs against: the same test source is
// compiled once for standalone Asio and once for Boost.Asio
// (CTXVARS_TEST_BOOST_ASIO). `net` names the Asio, `cx` the adapter for it.
#pragma once

#if defined(CTXVARS_TEST_BOOST_ASIO)
#include "ctxvars/boost_asio.hpp"

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/system/system_error.hpp>

namespace net = ::boost::asio;
namespace cx = ::ctxvars::boost_asio;
using net_error_code = ::boost::system::error_code;
using net_system_error = ::boost::system::system_error;
#else
#include "ctxvars/asio.hpp"

#include <asio.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <system_error>

namespace net = ::asio;
namespace cx = ::ctxvars::asio;
using net_error_code = std::error_code;
using net_system_error = std::system_error;
#endif
