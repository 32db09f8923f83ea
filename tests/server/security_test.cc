// The hardened edge over real gRPC: API keys, tenants and their limits, TLS and mTLS with a
// certificate reload, and the defects of the black-box sweep (id validation, cancelled creation,
// deadline codes). Certificates: tests/fixtures/tls (make.sh).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/grpc/tls_stage.h"
#include "tests/server/grpc_harness.h"

namespace rwkv::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kKeyA[] = "key-of-tenant-a-0123456789";
constexpr char kKeyA2[] = "second-key-of-tenant-a-xyz";
constexpr char kKeyB[] = "key-of-tenant-b-0123456789";

std::string Tls(const std::string& name) {
  std::ifstream in(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/tls/" + name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::shared_ptr<const ApiKeys> Keys(const std::string& extra_b = "") {
  const std::string text = std::string(kKeyA) + " acme\n" + "sha256:" + absl::BytesToHexString(Sha256(kKeyA2)) +
                           " acme  # hashed\n" + kKeyB + " bravo " + extra_b + "\n";
  absl::StatusOr<std::shared_ptr<const ApiKeys>> k = ApiKeys::Parse(text, "keys", {});
  EXPECT_TRUE(k.ok()) << k.status();
  return k.ok() ? *k : nullptr;
}

client::Client As(const Harness& h, const std::string& key) {
  client::ConnectOptions o;
  o.api_key = key;
  return client::Client(h.Target(), o);
}

v1::CreateSessionRequest Create(const std::string& id, std::vector<int32_t> prompt = {5, 6}) {
  v1::CreateSessionRequest r;
  r.set_session_id(id);
  r.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  return r;
}

TEST(Security, NoKeyAndWrongKeyAreUnauthenticated) {
  grpc::EnableDefaultHealthCheckService(true);  // As rwkv-server does.
  Harness h({}, {}, 8, "", "", Keys());
  for (const std::string& key : {std::string(), std::string("not-a-key-at-all-000000"), std::string(kKeyA) + "x"}) {
    client::Client c = As(h, key);
    absl::Status st = c.GetModelInfo().status();
    EXPECT_EQ(st.code(), absl::StatusCode::kUnauthenticated) << key;
    EXPECT_THAT(std::string(st.message()), Not(HasSubstr(key.empty() ? "\x01" : key)));  // Never echoed.
    EXPECT_EQ(Generate(c, Greedy({1}, 2)).final.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c.CreateSession(Create("x")).status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c.ListSessions().status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c.ExportSession("x").status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c.ImportSession("data", "x").status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c.Tokenize("hi").status().code(), absl::StatusCode::kUnauthenticated);
  }
  EXPECT_EQ(h.Counter("rwkv_auth_failures_total", {{"reason", "missing"}}), 7);
  EXPECT_EQ(h.Counter("rwkv_auth_failures_total", {{"reason", "invalid"}}), 14);
  // The health service needs no key.
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  grpc::ClientContext ctx;
  EXPECT_TRUE(grpc::health::v1::Health::NewStub(As(h, "").channel())->Check(&ctx, req, &resp).ok());
  // A plain key, a hashed key, and the scheme in any case.
  EXPECT_TRUE(As(h, kKeyA).GetModelInfo().ok());
  EXPECT_TRUE(As(h, kKeyA2).GetModelInfo().ok());
  v1::Rwkv::Stub stub(As(h, "").channel());
  grpc::ClientContext lower;
  lower.AddMetadata("authorization", std::string("bearer ") + kKeyB);
  v1::ModelInfo info;
  EXPECT_TRUE(stub.GetModelInfo(&lower, v1::GetModelInfoRequest(), &info).ok());
}

TEST(Security, AnotherTenantsSessionIsNotFound) {
  Harness h({}, {}, 8, "", "", Keys());
  client::Client a = As(h, kKeyA), a2 = As(h, kKeyA2), b = As(h, kKeyB);
  ASSERT_TRUE(a.CreateSession(Create("chat")).ok());
  // B cannot see, read, export, fork, continue or delete it...
  EXPECT_EQ(b.GetSession("chat").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b.ExportSession("chat").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b.ForkSession("chat", "mine").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b.DeleteSession("chat").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Generate(b, Greedy({1}, 2, "chat")).final.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(b.ListSessions()->empty());
  // ...and its own "chat" is another session: the ids do not collide.
  ASSERT_TRUE(b.CreateSession(Create("chat", {9})).ok());
  EXPECT_EQ(b.GetSession("chat")->token_count(), 1);
  EXPECT_EQ(a.GetSession("chat")->token_count(), 2);
  // The tenant's other key is the same tenant.
  absl::StatusOr<std::vector<v1::Session>> list = a2.ListSessions();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].session_id(), "chat");  // Unscoped.
  // Export, import and fork stay within the tenant; an export carries the client's id.
  absl::StatusOr<std::string> data = a.ExportSession("chat");
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(*data, Not(HasSubstr("acme:")));
  ASSERT_TRUE(a.ImportSession(*data, "copy").ok());
  ASSERT_TRUE(a.ForkSession("chat", "").ok());
  EXPECT_EQ(a.ListSessions()->size(), 3u);
  EXPECT_EQ(b.ListSessions()->size(), 1u);
  EXPECT_EQ(b.GetSession("copy").status().code(), absl::StatusCode::kNotFound);
  // Messages name ids as the client knows them.
  absl::Status dup = a.CreateSession(Create("chat")).status();
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(dup.message()), HasSubstr("session chat already exists"));
  EXPECT_THAT(std::string(dup.message()), Not(HasSubstr("acme")));
  EXPECT_TRUE(b.DeleteSession("chat").ok());
  EXPECT_TRUE(a.GetSession("chat").ok());
}

TEST(Security, TenantLimitsAreResourceExhaustedNamingTheLimit) {
  Harness h({}, {}, 8, "", "", Keys("sessions=2 streams=1 tokens_per_minute=30"));
  client::Client a = As(h, kKeyA), b = As(h, kKeyB);
  ASSERT_TRUE(b.CreateSession(Create("one")).ok());
  ASSERT_TRUE(b.CreateSession(Create("two")).ok());
  absl::Status third = b.CreateSession(Create("three")).status();
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(third.message()), HasSubstr("limit is 2 (sessions)"));
  EXPECT_EQ(b.ForkSession("one", "four").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(a.CreateSession(Create("three")).ok());  // Acme has no limit.

  // Streams: one at a time for bravo. The running one may pass the token budget (it is checked
  // at admission); the next stream is then refused for tokens.
  auto running = std::async(std::launch::async, [&] { return Generate(b, Greedy({1}, 4000)); });
  ASSERT_TRUE(h.WaitFor([&] { return h.scheduler->occupancy().running == 1; }));
  Stream refused = Generate(b, Greedy({1}, 2));
  EXPECT_EQ(refused.final.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.final.status().message()), HasSubstr("concurrent stream limit is 1 (streams)"));
  ASSERT_TRUE(running.get().final.ok());
  Stream over = Generate(b, Greedy({1}, 2));
  EXPECT_EQ(over.final.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(over.final.status().message()),
              HasSubstr("limit of 30 generated tokens per minute (tokens_per_minute) is used up (4000 in the last 60 s)"));
  EXPECT_TRUE(Generate(a, Greedy({1}, 40)).final.ok());
  EXPECT_EQ(h.Counter("rwkv_tenant_limited_total", {{"limit", "sessions"}}), 2);
  EXPECT_EQ(h.Counter("rwkv_tenant_limited_total", {{"limit", "streams"}}), 1);
  EXPECT_EQ(h.Counter("rwkv_tenant_limited_total", {{"limit", "tokens_per_minute"}}), 1);
}

TEST(Security, KeysReloadTakesEffectForNewCalls) {
  Harness h({}, {}, 8, "", "", Keys());
  EXPECT_TRUE(As(h, kKeyB).GetModelInfo().ok());
  absl::StatusOr<std::shared_ptr<const ApiKeys>> only_a = ApiKeys::Parse(std::string(kKeyA) + " acme\n", "keys", {});
  ASSERT_TRUE(only_a.ok());
  h.frontend->SetApiKeys(*only_a);
  EXPECT_EQ(As(h, kKeyB).GetModelInfo().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(As(h, kKeyA).GetModelInfo().ok());
}

// A 20 KB id and a malformed one are INVALID_ARGUMENT on every RPC that takes an id, with a
// message of bounded length that does not echo them.
TEST(Security, EveryRpcValidatesSessionIds) {
  Harness h;
  ASSERT_TRUE(h.client->CreateSession(Create("ok")).ok());
  for (const std::string& id : {std::string(20000, 'x'), std::string("has space"), std::string("a/b")}) {
    std::vector<absl::Status> got = {h.client->GetSession(id).status(), h.client->DeleteSession(id),
                                     h.client->ExportSession(id).status(), h.client->ForkSession(id, "new").status(),
                                     h.client->ForkSession("ok", id).status(),
                                     h.client->CreateSession(Create(id)).status(),
                                     h.client->ImportSession(*h.client->ExportSession("ok"), id).status(),
                                     Generate(*h.client, Greedy({1}, 2, id)).final.status()};
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].code(), absl::StatusCode::kInvalidArgument) << i << " " << id.substr(0, 20) << got[i];
      EXPECT_LT(got[i].message().size(), 200u) << i;
      EXPECT_THAT(std::string(got[i].message()), HasSubstr("session_id")) << i;
    }
  }
  v1::GenerateRequest long_request_id = Greedy({1}, 2);
  long_request_id.set_request_id(std::string(1000, 'r'));
  absl::Status st = Generate(*h.client, long_request_id).final.status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("request_id is 1000 bytes; the limit is 128"));
}

// An empty stateless prompt is refused for what it is (no session is involved).
TEST(Security, EmptyStatelessPromptNamesNoSession) {
  Harness h;
  absl::Status st = Generate(*h.client, Greedy({}, 2)).final.status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("a request without a session needs at least one prompt token"));
  EXPECT_THAT(std::string(st.message()), Not(HasSubstr("the session has")));
}

// A client that cancels CreateSession while its long prompt runs gets no session.
TEST(Security, CancelledCreateSessionCreatesNothing) {
  SchedulerOptions so;
  so.token_budget = 64;  // The prompt takes many steps.
  Harness h(so);
  v1::Rwkv::Stub stub(h.client->channel());
  std::vector<int32_t> prompt(60000, 7);
  v1::CreateSessionRequest req = Create("cancelled", prompt);
  grpc::ClientContext ctx;
  v1::Session resp;
  std::thread cancel([&] {
    EXPECT_TRUE(h.WaitFor([&] { return h.scheduler->occupancy().running == 1; }));
    ctx.TryCancel();
  });
  const grpc::Status s = stub.CreateSession(&ctx, req, &resp);
  cancel.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(h.WaitFor([&] { return h.scheduler->active() == 0; }));
  EXPECT_EQ(h.client->GetSession("cancelled").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(h.client->ListSessions()->empty());
  EXPECT_EQ(h.Counter("rwkv_requests_total", {{"method", "CreateSession"}, {"code", "cancelled"}}), 1);
}

// A request whose deadline passes is counted as deadline_exceeded, every time.
TEST(Security, PassedDeadlinesAreDeadlineExceeded) {
  Harness h;
  constexpr int kRuns = 8;
  for (int i = 0; i < kRuns; ++i) {
    Stream s = Generate(*h.client, Greedy({1}, 5000), -1, std::chrono::milliseconds(30));
    EXPECT_EQ(s.final.status().code(), absl::StatusCode::kDeadlineExceeded);
  }
  ASSERT_TRUE(h.WaitFor([&] { return h.scheduler->active() == 0; }));
  // An RPC is counted when it finishes, on the thread that starts its last write: wait for it.
  EXPECT_TRUE(h.WaitFor([&] {
    return h.Counter("rwkv_requests_total", {{"method", "Generate"}, {"code", "deadline_exceeded"}}) == kRuns;
  }));
  EXPECT_EQ(h.Counter("rwkv_requests_total", {{"method", "Generate"}, {"code", "deadline_exceeded"}}), kRuns);
  EXPECT_EQ(h.Counter("rwkv_requests_total", {{"method", "Generate"}, {"code", "cancelled"}}), 0);
}

// Every id below the model's vocabulary is valid everywhere (ids without bytes decode to
// nothing: tokenizer_test's IdsWithoutBytesDecodeToNothing); ids past the head are refused by
// prompts and Detokenize alike, naming the vocabulary.
TEST(Security, TokenIdsFollowOneRuleEverywhere) {
  Harness h;
  EXPECT_EQ(*h.client->Detokenize({0, 'a' + 1, 0}), "a");
  absl::Status detok = h.client->Detokenize({257}).status();
  absl::Status prompt = Generate(*h.client, Greedy({257}, 2)).final.status();
  EXPECT_EQ(detok.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(prompt.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(detok.message()), HasSubstr("outside the vocabulary [0, 257)"));
  EXPECT_THAT(std::string(prompt.message()), HasSubstr("outside the vocabulary [0, 257)"));
}

// TLS with a reload: a client trusting only the second CA connects after the stage switches
// to the second certificate; a stream running across the reload completes.
TEST(Security, TlsAndCertificateReloadKeepStreams) {
  TlsMaterial m1{Tls("server1.pem"), Tls("server1.key"), ""};
  absl::StatusOr<std::unique_ptr<TlsStage>> stage = TlsStage::Create(m1);
  ASSERT_TRUE(stage.ok()) << stage.status();
  Harness h({}, {}, 8, "", "", nullptr, (*stage)->Credentials());
  auto connect = [&](const std::string& ca) {
    client::ConnectOptions o;
    o.tls = true;
    o.root_certs_pem = Tls(ca);
    o.server_name = "localhost";
    return client::Client(h.Target(), o);
  };
  client::CallOptions quick;
  quick.timeout = std::chrono::milliseconds(3000);
  client::Client c1 = connect("ca1.pem");
  ASSERT_TRUE(c1.GetModelInfo(quick).ok());
  EXPECT_FALSE(connect("ca2.pem").GetModelInfo(quick).ok());  // Not its CA.
  EXPECT_FALSE(client::Client(h.Target()).GetModelInfo(quick).ok());  // Plaintext to a TLS port.

  auto running = std::async(std::launch::async, [&] { return Generate(c1, Greedy({1}, 4000)); });
  ASSERT_TRUE(h.WaitFor([&] { return h.scheduler->occupancy().running == 1; }));
  ASSERT_TRUE((*stage)->Update({Tls("server2.pem"), Tls("server2.key"), ""}).ok());
  bool switched = false;
  for (int i = 0; i < 100 && !switched; ++i) {  // The watcher looks every second.
    switched = connect("ca2.pem").GetModelInfo(quick).ok();
    if (!switched) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(switched);
  Stream s = running.get();
  EXPECT_TRUE(s.final.ok()) << s.final.status();
  EXPECT_EQ(s.ids.size(), 4000u);
}

TEST(Security, MutualTlsNeedsAClientCertificateFromTheCa) {
  TlsMaterial m{Tls("server1.pem"), Tls("server1.key"), Tls("ca1.pem")};
  absl::StatusOr<std::unique_ptr<TlsStage>> stage = TlsStage::Create(m);
  ASSERT_TRUE(stage.ok()) << stage.status();
  Harness h({}, {}, 8, "", "", nullptr, (*stage)->Credentials());
  client::ConnectOptions o;
  o.tls = true;
  o.root_certs_pem = Tls("ca1.pem");
  o.server_name = "localhost";
  client::CallOptions quick;
  quick.timeout = std::chrono::milliseconds(3000);
  EXPECT_FALSE(client::Client(h.Target(), o).GetModelInfo(quick).ok());  // No client certificate.
  o.cert_chain_pem = Tls("server2.pem");  // A certificate from another CA.
  o.private_key_pem = Tls("server2.key");
  EXPECT_FALSE(client::Client(h.Target(), o).GetModelInfo(quick).ok());
  o.cert_chain_pem = Tls("client1.pem");
  o.private_key_pem = Tls("client1.key");
  EXPECT_TRUE(client::Client(h.Target(), o).GetModelInfo(quick).ok());
}

TEST(Security, TlsFilesAreCheckedBeforeUse) {
  const std::string dir = std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/tls/";
  EXPECT_TRUE(LoadTls({dir + "server1.pem", dir + "server1.key", dir + "ca1.pem"}).ok());
  absl::Status mismatch = LoadTls({dir + "server1.pem", dir + "server2.key", ""}).status();
  EXPECT_EQ(mismatch.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(mismatch.message()), HasSubstr("is not the private key of --tls-cert"));
  EXPECT_THAT(std::string(LoadTls({dir + "server1.key", dir + "server1.key", ""}).status().message()),
              HasSubstr("--tls-cert"));
  EXPECT_THAT(std::string(LoadTls({dir + "nope.pem", dir + "server1.key", ""}).status().message()),
              HasSubstr("cannot read"));
  EXPECT_THAT(std::string(LoadTls({dir + "server1.pem", dir + "server1.key", dir + "server1.key"}).status().message()),
              HasSubstr("--tls-client-ca"));
}

}  // namespace
}  // namespace rwkv::server
