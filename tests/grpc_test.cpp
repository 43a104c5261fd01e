#include "ctxvars/grpc.hpp"

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/format.hpp"
#include "echo.grpc.pb.h"

namespace {

ctxvars::context_var<std::string> request_id("request_id");
ctxvars::context_var<std::string> tenant("tenant");

class echo_service final : public ctxvars_test::Echo::Service {
 public:
  std::atomic<int> calls{0};
  grpc::Status Fields(grpc::ServerContext* ctx, const ctxvars_test::FieldsRequest*,
                      ctxvars_test::FieldsReply* reply) override {
    return ctxvars::grpc::serve(ctx, [&] {
      ++calls;
      reply->set_fields(ctxvars::to_string(ctxvars::copy_context()));
      return grpc::Status::OK;
    });
  }
};

// The fields without the trace context (sorted by name: traceparent is last).
std::string without_trace(const std::string& fields) {
  const std::size_t tp = fields.find("traceparent=");
  return tp == std::string::npos ? fields : fields.substr(0, tp ? tp - 1 : 0);
}
std::string trace_of(const std::string& fields) {
  const std::size_t tp = fields.find("traceparent=");
  return tp == std::string::npos ? "" : fields.substr(tp + 12);
}

struct Grpc : ::testing::Test {
  ctxvars::registry reg;
  echo_service service;
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<ctxvars_test::Echo::Stub> stub;

  void SetUp() override {
    reg.add(request_id);
    reg.add(tenant);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> sf;
    sf.push_back(ctxvars::grpc::server_interceptor_factory(reg));
    b.experimental().SetInterceptorCreators(std::move(sf));
    server = b.BuildAndStart();
    ASSERT_TRUE(server);
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> cf;
    cf.push_back(ctxvars::grpc::client_interceptor_factory(reg));
    channel = grpc::experimental::CreateCustomChannelWithInterceptors(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), grpc::ChannelArguments(),
        std::move(cf));
    stub = ctxvars_test::Echo::NewStub(channel);
  }
  void TearDown() override { server->Shutdown(); }

  std::string call(grpc::Status* st = nullptr) {
    grpc::ClientContext cc;
    cc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    ctxvars_test::FieldsReply reply;
    grpc::Status s = stub->Fields(&cc, ctxvars_test::FieldsRequest(), &reply);
    if (st) *st = s;
    EXPECT_TRUE(st || s.ok()) << s.error_message();
    return reply.fields();
  }
};

TEST_F(Grpc, HandlerRunsInTheCallersContextCarriedInMetadata) {
  ctxvars::context().run([&] {
    auto a = request_id.scoped_set("c1-r0");
    auto b = tenant.scoped_set("acme corp");
    ctxvars::trace_var().set(
        {ctxvars::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), "k=v"});
    const std::string f = call();
    EXPECT_EQ(without_trace(f), "request_id=c1-r0 tenant=\"acme corp\"");
    // The call went out as a child span: the same trace, a new parent-id.
    const std::string tp = trace_of(f);
    EXPECT_EQ(tp.substr(0, 36), "00-4bf92f3577b34da6a3ce929d0e0e4736-");
    EXPECT_NE(tp.substr(36, 16), "00f067aa0ba902b7");
    EXPECT_EQ(tp.substr(52), "-01");
  });
  const std::string f = call();  // no context: an empty one on the server, in a new trace
  EXPECT_EQ(without_trace(f), "");
  EXPECT_EQ(trace_of(f).size(), 55u);
  EXPECT_EQ(trace_of(f).substr(52), "-03");
}

TEST_F(Grpc, ConcurrentCallersEachSeeOnlyTheirOwnValues) {
  std::atomic<int> wrong{0};
  {
    std::vector<std::jthread> ts;
    for (int c = 0; c < 4; ++c)
      ts.emplace_back([&, c] {
        auto t = tenant.scoped_set("t" + std::to_string(c));
        for (int r = 0; r < 25; ++r) {
          auto id = request_id.scoped_set("c" + std::to_string(c) + "-r" + std::to_string(r));
          if (without_trace(call()) != "request_id=c" + std::to_string(c) + "-r" + std::to_string(r) + " tenant=t" + std::to_string(c))
            ++wrong;
        }
      });
  }
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(service.calls.load(), 100);
}

TEST_F(Grpc, MalformedMetadataIsDroppedAndReportedNeverRefused) {
  // Bad entries added by hand (the caller's empty context adds none).
  std::atomic<int> reported{0};
  auto prev = ctxvars::on_malformed_header([&](const ctxvars::malformed_header&) { ++reported; });
  auto raw = ctxvars_test::Echo::NewStub(channel);
  grpc::ClientContext cc;
  cc.AddMetadata("baggage", "tenant=%zz");
  cc.AddMetadata("baggage", "request_id=kept");
  cc.AddMetadata("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01");
  ctxvars_test::FieldsReply reply;
  grpc::Status s = raw->Fields(&cc, ctxvars_test::FieldsRequest(), &reply);
  ctxvars::on_malformed_header(std::move(prev));
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(without_trace(reply.fields()), "request_id=kept");
  EXPECT_NE(trace_of(reply.fields()).substr(3, 32), std::string(32, '0'));
  EXPECT_EQ(reported.load(), 2);
  EXPECT_EQ(service.calls.load(), 1);
}

}  // namespace
