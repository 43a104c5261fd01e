// Which ctxvars Asio adapter serves an awaitable type: lets Asio-neutral
// headers (http.hpp's async_handle) run a user's awaitable of either Asio in a
// context. The primary template is left undefined; <ctxvars/asio.hpp> and
// <ctxvars/boost_asio.hpp> each define it for their `awaitable<T>` (default
// executor) with `traits` and `co_spawn` (the adapter's co_spawn object). A
// use with neither header included fails to compile, naming this template —
// never a silent choice that depends on include order.
#pragma once

namespace ctxvars::detail {

template <class Awaitable>
struct awaitable_adapter;

}  // namespace ctxvars::detail
