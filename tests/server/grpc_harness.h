// The service in-process over real gRPC on a loopback port, with the real CPU backend on the tiny
// RWKV-7 fixture and a byte-level vocabulary; shared by the gRPC and security tests.
#ifndef RWKV_TESTS_SERVER_GRPC_HARNESS_H_
#define RWKV_TESTS_SERVER_GRPC_HARNESS_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "gtest/gtest.h"
#include "server/core/auth.h"
#include "server/metrics.h"
#include "server/core/scheduler.h"
#include "server/grpc/service.h"
#include "server/core/start_states.h"

namespace rwkv::server {

struct Harness {
  explicit Harness(SchedulerOptions so = {}, ServiceOptions svc = {}, int slots = 8, std::string states = "",
                   std::string default_state = "", std::shared_ptr<const ApiKeys> keys = nullptr,
                   std::shared_ptr<grpc::ServerCredentials> creds = nullptr, std::string vocab = "") {
    tokenizer = *Tokenizer::Load(vocab.empty() ? std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/byte-vocab.txt" : vocab);
    std::shared_ptr<const Model> model = *Model::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/tiny-rwkv7-v257.safetensors");
    BackendOptions bo;
    bo.pool_slots = slots;
    bo.threads = 1;
    so.max_running = std::min(so.max_running, slots);
    StateCodec codec{ModelFingerprint(*model), model->config()};
    scheduler = std::make_unique<Scheduler>(*CreateBackend(model, bo), tokenizer.get(), so, &metrics);
    FrontendOptions fo;
    fo.limits.max_tokens = 5000;
    frontend = std::make_unique<Frontend>(fo);
    service = std::make_unique<RwkvService>(svc, frontend.get(), &metrics);
    grpc::ServerBuilder b;
    frontend->SetApiKeys(std::move(keys));
    b.AddListeningPort("127.0.0.1:0", creds != nullptr ? creds : grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service.get());
    server = b.BuildAndStart();
    absl::StatusOr<StartStates> start = StartStates::Load(states, default_state, codec);
    EXPECT_TRUE(start.ok()) << start.status();
    frontend->Attach(scheduler.get(), tokenizer.get(), codec, "cpu", start.ok() ? std::move(*start) : StartStates());
    scheduler->Start();
    client = std::make_unique<client::Client>("127.0.0.1:" + std::to_string(port));
  }
  ~Harness() {
    scheduler->AbortAll(absl::UnavailableError("test over"));
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    scheduler.reset();
  }
  // Runs `fn` on the scheduler loop and returns its result.
  template <typename F>
  auto OnLoop(F fn) {
    std::promise<decltype(fn())> p;
    scheduler->Post([&] { p.set_value(fn()); });
    return p.get_future().get();
  }
  int SlotsUsed() {
    return OnLoop([&] { return scheduler->backend().pool().used(); });
  }
  double GeneratedTokens() {
    for (const prometheus::MetricFamily& f : metrics.registry().Collect()) {
      if (f.name == "rwkv_generated_tokens_total") return f.metric.at(0).counter.value;
    }
    return -1;
  }
  // A counter's value for the series with all of `labels` (0 when absent).
  double Counter(const std::string& name, const std::map<std::string, std::string>& labels) {
    for (const prometheus::MetricFamily& f : metrics.registry().Collect()) {
      if (f.name != name) continue;
      for (const prometheus::ClientMetric& m : f.metric) {
        size_t hit = 0;
        for (const prometheus::ClientMetric::Label& l : m.label) hit += labels.count(l.name) && labels.at(l.name) == l.value;
        if (hit == labels.size()) return m.counter.value;
      }
    }
    return 0;
  }
  std::string Target() const { return "127.0.0.1:" + std::to_string(port); }
  // Polls until `pred` holds on the loop (bounded).
  template <typename F>
  bool WaitFor(F pred) {
    for (int i = 0; i < 500; ++i) {
      if (OnLoop(pred)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  Metrics metrics;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<Frontend> frontend;
  std::unique_ptr<RwkvService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<client::Client> client;
  int port = 0;
};

inline v1::GenerateRequest Greedy(std::vector<int32_t> prompt, int max_tokens, const std::string& session = "") {
  v1::GenerateRequest r;
  r.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  r.mutable_sampling()->set_temperature(0);
  r.mutable_stop()->set_max_tokens(max_tokens);
  r.mutable_stop()->set_ignore_eos(true);
  r.mutable_output()->set_token_ids(true);
  r.set_session_id(session);
  return r;
}

struct Stream {
  std::vector<v1::Chunk> chunks;
  std::vector<int32_t> ids;
  std::string text;
  absl::StatusOr<v1::Final> final = absl::UnknownError("not run");
};

inline Stream Generate(client::Client& c, const v1::GenerateRequest& r, int cancel_after = -1,
           std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
  Stream s;
  client::CallOptions o;
  o.timeout = timeout;
  s.final = c.Generate(
      r,
      [&](const v1::Chunk& ch) {
        s.chunks.push_back(ch);
        s.ids.insert(s.ids.end(), ch.token_ids().begin(), ch.token_ids().end());
        s.text += ch.text();
        return cancel_after < 0 || static_cast<int>(s.chunks.size()) < cancel_after;
      },
      o);
  return s;
}

}  // namespace rwkv::server

#endif  // RWKV_TESTS_SERVER_GRPC_HARNESS_H_
