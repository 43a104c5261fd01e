// ctxvars::grpc: a channel built with the client interceptor (no call is made, so nothing
// connects), and a server interceptor factory.
#include <ctxvars/grpc.hpp>

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <memory>
#include <vector>

int main() {
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> cf;
  cf.push_back(ctxvars::grpc::client_interceptor_factory());
  auto channel = grpc::experimental::CreateCustomChannelWithInterceptors(
      "127.0.0.1:1", grpc::InsecureChannelCredentials(), grpc::ChannelArguments(), std::move(cf));
  auto server = ctxvars::grpc::server_interceptor_factory();
  std::printf("consumer_grpc: channel %s, server interceptor factory %s\n", channel ? "made" : "missing",
              server ? "made" : "missing");
  return (channel && server) ? 0 : 1;
}
