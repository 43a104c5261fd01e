// gRPC (target ctxvars::grpc; Debian libgrpc++-dev): client and server
// interceptors that carry the registered variables and the trace context in
// call metadata (`traceparent`, `tracestate`, `baggage`, as over HTTP).
//
//   // client: every call made through the channel carries the caller's context
//   std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> cf;
//   cf.push_back(ctxvars::grpc::client_interceptor_factory());
//   auto channel = grpc::experimental::CreateCustomChannelWithInterceptors(addr, creds, args, std::move(cf));
//
//   // server: the interceptor builds each call's context from its metadata...
//   std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> sf;
//   sf.push_back(ctxvars::grpc::server_interceptor_factory());
//   builder.experimental().SetInterceptorCreators(std::move(sf));
//   // ...and a handler runs its body in it:
//   grpc::Status Get(grpc::ServerContext* ctx, const Req* req, Res* res) override {
//     return ctxvars::grpc::serve(ctx, [&] { ...; return grpc::Status::OK; });
//   }
//
// The client interceptor captures copy_context() when the call is created (on
// the calling thread), so the headers are right whichever thread sends them;
// the call goes out as a new child span of the caller's trace.
// gRPC runs server interceptors and handlers on its own threads, not always
// the same, so the server interceptor does not enter the context itself: it
// keeps it with the call (keyed by its ServerContext, dropped when the call
// ends), and serve() runs the handler body in it. Metadata follows the
// receiver rules (ctxvars::extract): repeated keys are combined, malformed
// parts dropped and reported to on_malformed_header(), never refused; a call
// without a valid traceparent is served in a new trace.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_interceptor.h>
#include <grpcpp/support/server_interceptor.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "context.hpp"
#include "propagation.hpp"

namespace ctxvars::grpc {

namespace detail {

// The contexts of calls in progress, by ServerContext.
class call_table {
 public:
  static call_table& instance() {
    static call_table t;
    return t;
  }
  using result = context;
  void put(const void* call, result r) {
    std::lock_guard g(m_);
    calls_.insert_or_assign(call, std::move(r));
  }
  std::optional<result> get(const void* call) const {
    std::lock_guard g(m_);
    auto it = calls_.find(call);
    if (it == calls_.end()) return std::nullopt;
    return it->second;
  }
  void drop(const void* call) {
    std::lock_guard g(m_);
    calls_.erase(call);
  }

 private:
  mutable std::mutex m_;
  std::map<const void*, result> calls_;
};

// Builds a call's context from its client metadata: a repeated key's values
// joined with ',' (as HTTP does), then the receiver rules, then a new trace
// if none came. Never throws parse_error.
template <class Multimap>
call_table::result from_metadata(const Multimap& md, const registry& r) {
  std::string values[3];
  const char* names[3] = {"traceparent", "tracestate", "baggage"};
  for (int i = 0; i < 3; ++i) {
    auto range = md.equal_range(names[i]);
    for (auto it = range.first; it != range.second; ++it) {
      if (it->second.size() == 0) continue;
      if (!values[i].empty()) values[i] += ',';
      values[i].append(it->second.data(), it->second.size());
    }
  }
  return with_trace(ctxvars::extract({values[0], values[1], values[2]}, context(), r));
}

class client_interceptor final : public ::grpc::experimental::Interceptor {
 public:
  explicit client_interceptor(const registry& r) : ctx_(copy_context()), reg_(r) {}
  void Intercept(::grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(::grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      auto* md = m->GetSendInitialMetadata();
      for (auto& [name, value] : ctxvars::inject_child(ctx_, reg_)) md->emplace(name, value);
    }
    m->Proceed();
  }

 private:
  context ctx_;
  const registry& reg_;
};

class client_factory final : public ::grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit client_factory(const registry& r) : reg_(r) {}
  ::grpc::experimental::Interceptor* CreateClientInterceptor(::grpc::experimental::ClientRpcInfo*) override {
    return new client_interceptor(reg_);
  }

 private:
  const registry& reg_;
};

class server_interceptor final : public ::grpc::experimental::Interceptor {
 public:
  server_interceptor(::grpc::experimental::ServerRpcInfo* info, const registry& r)
      : call_(info->server_context()), reg_(r) {}
  ~server_interceptor() override { call_table::instance().drop(call_); }
  void Intercept(::grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(::grpc::experimental::InterceptionHookPoints::POST_RECV_INITIAL_METADATA))
      call_table::instance().put(call_, from_metadata(*m->GetRecvInitialMetadata(), reg_));
    m->Proceed();
  }

 private:
  const void* call_;
  const registry& reg_;
};

class server_factory final : public ::grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit server_factory(const registry& r) : reg_(r) {}
  ::grpc::experimental::Interceptor* CreateServerInterceptor(::grpc::experimental::ServerRpcInfo* info) override {
    return new server_interceptor(info, reg_);
  }

 private:
  const registry& reg_;
};

}  // namespace detail

// Factories for channel and server builders (see the header comment). The
// registry must outlive the channel or server.
inline std::unique_ptr<::grpc::experimental::ClientInterceptorFactoryInterface> client_interceptor_factory(
    const registry& r = registry::global()) {
  return std::make_unique<detail::client_factory>(r);
}
inline std::unique_ptr<::grpc::experimental::ServerInterceptorFactoryInterface> server_interceptor_factory(
    const registry& r = registry::global()) {
  return std::make_unique<detail::server_factory>(r);
}

// The context of the call `ctx` (built by the server interceptor; without the
// interceptor, built here from ctx's client metadata), always in a trace.
// Never throws parse_error (malformed metadata is dropped and reported).
inline context context_of(const ::grpc::ServerContextBase* ctx, const registry& r = registry::global()) {
  auto found = detail::call_table::instance().get(ctx);
  return found ? std::move(*found) : detail::from_metadata(ctx->client_metadata(), r);
}

// Runs `body()` (returning grpc::Status) in the call's context.
template <class Body>
::grpc::Status serve(const ::grpc::ServerContextBase* ctx, Body&& body, const registry& r = registry::global()) {
  context c = context_of(ctx, r);
  return c.run(std::forward<Body>(body));
}

}  // namespace ctxvars::grpc
