// The service in-process over real gRPC on a loopback port, with the real CPU backend on the tiny
// RWKV-7 fixture and a byte-level vocabulary (so that random output splits UTF-8 characters
// across tokens).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <future>
#include <random>
#include <thread>

#include "engine/start_state.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"
#include "tests/server/grpc_harness.h"

namespace rwkv::server {
namespace {

using ::testing::HasSubstr;

TEST(GrpcService, StreamsChunksThenOneFinalWithUsage) {
  Harness h;
  Stream s = Generate(*h.client, Greedy({1, 2, 3}, 40));
  ASSERT_TRUE(s.final.ok()) << s.final.status();
  EXPECT_EQ(s.ids.size(), 40u);
  EXPECT_EQ(s.final->finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(s.final->usage().generated_tokens(), 40);
  EXPECT_EQ(s.final->usage().prompt_tokens(), 3);
  EXPECT_GT(s.final->usage().total_seconds(), 0);
  EXPECT_GE(s.final->usage().total_seconds(), s.final->usage().first_token_seconds());
  // Every chunk is whole UTF-8 characters, although byte tokens split them.
  for (const v1::Chunk& ch : s.chunks) {
    std::string valid;
    EXPECT_EQ(AppendValidUtf8(ch.text(), &valid), ch.text().size());
    EXPECT_EQ(valid, ch.text());
  }
  // Greedy is deterministic: a second identical request gives the same tokens.
  EXPECT_EQ(Generate(*h.client, Greedy({1, 2, 3}, 40)).ids, s.ids);
}

TEST(GrpcService, ConcurrentStreamsEqualTheirSingleStreamOutput) {
  Harness h;
  std::vector<std::vector<int32_t>> alone;
  for (int i = 0; i < 6; ++i) alone.push_back(Generate(*h.client, Greedy({10 + i, 20}, 8 + 9 * i)).ids);
  std::vector<std::future<Stream>> futures;
  for (int i = 0; i < 6; ++i) {
    futures.push_back(std::async(std::launch::async, [&h, i] { return Generate(*h.client, Greedy({10 + i, 20}, 8 + 9 * i)); }));
  }
  for (int i = 0; i < 6; ++i) EXPECT_EQ(futures[i].get().ids, alone[i]) << i;
}

TEST(GrpcService, CancelMidStreamFreesTheSlot) {
  Harness h;
  Stream s = Generate(*h.client, Greedy({5}, 3000), /*cancel_after=*/3);
  EXPECT_EQ(s.final.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(h.WaitFor([&] { return h.scheduler->backend().pool().used() == 0; }));
  EXPECT_EQ(h.scheduler->active(), 0);
}

TEST(GrpcService, DeadlineEndsTheRequestAndFreesTheSlot) {
  Harness h;
  Stream s = Generate(*h.client, Greedy({5}, 5000), -1, std::chrono::milliseconds(100));
  EXPECT_EQ(s.final.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(h.WaitFor([&] { return h.scheduler->backend().pool().used() == 0; }));
}

TEST(GrpcService, FullQueueIsResourceExhaustedAtOnce) {
  SchedulerOptions so;
  so.max_running = 1;
  so.queue_length = 1;
  Harness h(so);
  auto first = std::async(std::launch::async, [&] { return Generate(*h.client, Greedy({1}, 4000)); });
  ASSERT_TRUE(h.WaitFor([&] { return h.scheduler->occupancy().running == 1; }));
  auto second = std::async(std::launch::async, [&] { return Generate(*h.client, Greedy({2}, 5)); });
  ASSERT_TRUE(h.WaitFor([&] { return h.scheduler->occupancy().waiting == 1; }));
  Stream third = Generate(*h.client, Greedy({3}, 5));
  EXPECT_EQ(third.final.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(third.final.status().message()), HasSubstr("queue_length 1"));
  EXPECT_TRUE(first.get().final.ok());
  EXPECT_TRUE(second.get().final.ok());
}

TEST(GrpcService, SlowReaderPausesOnlyItsOwnSequence) {
  ServiceOptions svc;
  svc.stream_buffer = 2;
  Harness h({}, svc);
  // A raw stream that stops reading after one message; top log-probs make each message large so
  // that the transport's flow-control window fills and the server-side buffer backs up.
  v1::GenerateRequest big = Greedy({9}, 2500);
  big.mutable_output()->set_logprobs(true);
  big.mutable_output()->set_top_logprobs(20);
  grpc::ClientContext ctx;
  // A small, fixed HTTP/2 receive window on this channel, so that an unread stream backs up into
  // the server within a few hundred messages.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  auto stub = v1::Rwkv::NewStub(
      grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(h.port), grpc::InsecureChannelCredentials(), args));
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub->Generate(&ctx, big);
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  // Meanwhile another stream runs to the end.
  Stream fast = Generate(*h.client, Greedy({3}, 300));
  ASSERT_TRUE(fast.final.ok());
  EXPECT_EQ(fast.ids.size(), 300u);
  EXPECT_EQ(h.OnLoop([&] { return h.scheduler->occupancy().running; }), 1) << "the slow one is not finished";
  // It is paused: no tokens are generated while nobody reads, and far fewer than requested were.
  const double before = h.GeneratedTokens();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(h.GeneratedTokens(), before);
  EXPECT_LT(before, 300 + 2500);
  // Reading again resumes it to the end.
  int tokens = static_cast<int>(msg.chunk().token_ids_size());
  bool final_seen = false;
  while (reader->Read(&msg)) {
    tokens += msg.chunk().token_ids_size();
    final_seen = final_seen || msg.has_final();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(final_seen);
  EXPECT_EQ(tokens, 2500);
}

TEST(GrpcService, DrainRefusesNewRequestsAndFinishesRunningOnes) {
  Harness h;
  auto running = std::async(std::launch::async, [&] { return Generate(*h.client, Greedy({4}, 4000)); });
  ASSERT_TRUE(h.WaitFor([&] { return h.scheduler->occupancy().running == 1; }));
  h.frontend->SetDraining();
  h.scheduler->StopAccepting();
  Stream refused = Generate(*h.client, Greedy({4}, 3));
  EXPECT_EQ(refused.final.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(refused.final.status().message()), HasSubstr("draining"));
  v1::CreateSessionRequest cr;
  EXPECT_EQ(h.client->CreateSession(cr).status().code(), absl::StatusCode::kUnavailable);
  Stream done = running.get();
  ASSERT_TRUE(done.final.ok());
  EXPECT_EQ(done.ids.size(), 4000u);
}

TEST(GrpcService, SessionsCreateTurnForkExportImport) {
  Harness h;
  v1::CreateSessionRequest cr;
  cr.set_session_id("conv");
  cr.mutable_token_ids()->add_ids(7);
  cr.mutable_token_ids()->add_ids(8);
  absl::StatusOr<v1::Session> s = h.client->CreateSession(cr);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->token_count(), 2);
  EXPECT_EQ(h.client->CreateSession(cr).status().code(), absl::StatusCode::kAlreadyExists);

  Stream t1 = Generate(*h.client, Greedy({9}, 5, "conv"));
  ASSERT_TRUE(t1.final.ok());
  EXPECT_EQ(t1.final->session_tokens(), 8);
  std::vector<int32_t> all = {7, 8, 9};
  all.insert(all.end(), t1.ids.begin(), t1.ids.end());
  all.push_back(10);
  const std::vector<int32_t> expect = Generate(*h.client, Greedy(all, 6)).ids;

  ASSERT_TRUE(h.client->ForkSession("conv", "branch").ok());
  absl::StatusOr<std::string> exported = h.client->ExportSession("conv");
  ASSERT_TRUE(exported.ok()) << exported.status();
  absl::StatusOr<v1::Session> imported = h.client->ImportSession(*exported, "moved");
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->token_count(), 8);
  for (const char* id : {"conv", "branch", "moved"}) {
    EXPECT_EQ(Generate(*h.client, Greedy({10}, 6, id)).ids, expect) << id;
  }
  std::string corrupt = *exported;
  corrupt[corrupt.size() - 1] ^= 0x40;
  EXPECT_EQ(h.client->ImportSession(corrupt, "bad").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(h.client->GetSession("bad").status().code(), absl::StatusCode::kNotFound);

  absl::StatusOr<std::vector<v1::Session>> list = h.client->ListSessions();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 3u);
  EXPECT_TRUE(h.client->DeleteSession("branch").ok());
  EXPECT_EQ(h.client->DeleteSession("branch").code(), absl::StatusCode::kNotFound);
}

TEST(GrpcService, ModelInfoTokenizeAndErrors) {
  Harness h;
  absl::StatusOr<v1::ModelInfo> info = h.client->GetModelInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->architecture(), "rwkv7");
  EXPECT_EQ(info->vocab_size(), 257);
  EXPECT_EQ(info->state_bytes(), 2 * (2 * 64 + 4 * 16 * 16) * 4);
  EXPECT_EQ(info->limits().state_slots(), 8);
  absl::StatusOr<std::vector<int32_t>> ids = h.client->Tokenize("hi");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{'h' + 1, 'i' + 1}));  // id = byte + 1
  EXPECT_EQ(*h.client->Detokenize({'h' + 1, 'i' + 1, 0xE4 + 1}), "hi\xEF\xBF\xBD");
  EXPECT_EQ(h.client->Detokenize({300}).status().code(), absl::StatusCode::kInvalidArgument);
  Stream bad = Generate(*h.client, Greedy({1, 999}, 3));
  EXPECT_EQ(bad.final.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.final.status().message()), HasSubstr("token_ids.ids[1] is 999"));
  v1::GenerateRequest empty = Greedy({}, 3);
  EXPECT_EQ(Generate(*h.client, empty).final.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrpcService, NotReadyBeforeAttach) {
  Metrics metrics;
  Frontend frontend({});
  RwkvService service({}, &frontend, &metrics);
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&service);
  auto server = b.BuildAndStart();
  client::Client c("127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(c.GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(Generate(c, Greedy({1}, 1)).final.status().message()), HasSubstr("loading"));
  server->Shutdown();
}

// Greedy tokens of the harness's model from `state` (the engine directly, no server).
std::vector<int32_t> EngineGreedy(const std::vector<float>& state, const std::vector<int32_t>& prompt, int n) {
  std::shared_ptr<const Model> model =
      *Model::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/tiny-rwkv7-v257.safetensors");
  BackendOptions bo;
  bo.pool_slots = 1;
  auto b = *CreateBackend(model, bo);
  const int slot = *b->pool().Acquire();
  EXPECT_TRUE(b->pool().Write(slot, state).ok());
  std::vector<int32_t> feed = prompt, out;
  Logits logits;
  for (int i = 0; i < n; ++i) {
    const BatchEntry e{slot, feed, false};
    EXPECT_TRUE(b->Forward({&e, 1}, &logits).ok());
    const std::span<const float> row = logits.Row(0, 0);
    feed = {static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin())};
    out.push_back(feed[0]);
  }
  return out;
}

// A state-tuning file for the harness's model (2 layers, 4 heads of 16), random values.
std::string WriteTunedState() {
  const std::string path = testing::TempPath("tuned.safetensors");
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0, 0.5f);
  std::vector<testing::F32Tensor> t;
  for (int l = 0; l < 2; ++l) {
    std::vector<float> v(4 * 16 * 16);
    for (float& x : v) x = d(rng);
    t.push_back({"blocks." + std::to_string(l) + ".att.time_state", {4, 16, 16}, v});
  }
  testing::WriteSafetensors(path, t);
  return path;
}

TEST(GrpcStartStates, StateTuningFileStartsStatelessRequestsAndSessions) {
  const std::string tuned = WriteTunedState();
  Harness h({}, {}, 8, "tuned=" + tuned);
  absl::StatusOr<v1::ModelInfo> info = h.client->GetModelInfo();
  ASSERT_TRUE(info.ok());
  ASSERT_EQ(info->initial_states_size(), 1);
  EXPECT_EQ(info->initial_states(0), "tuned");
  EXPECT_EQ(info->default_initial_state(), "");

  const ModelConfig c = h.OnLoop([&] { return h.scheduler->backend().config(); });
  const std::vector<float> state = *LoadStateTuning(tuned, c);
  const std::vector<int32_t> want = EngineGreedy(state, {5, 6}, 12);
  ASSERT_NE(want, EngineGreedy(std::vector<float>(state.size(), 0.0f), {5, 6}, 12)) << "the tuned state matters";

  v1::GenerateRequest r = Greedy({5, 6}, 12);
  r.set_initial_state("tuned");
  Stream s = Generate(*h.client, r);
  ASSERT_TRUE(s.final.ok()) << s.final.status();
  EXPECT_EQ(s.ids, want);

  v1::CreateSessionRequest create;
  create.set_session_id("t");
  create.set_initial_state("tuned");
  ASSERT_TRUE(h.client->CreateSession(create).ok());
  Stream turn = Generate(*h.client, Greedy({5, 6}, 12, "t"));
  ASSERT_TRUE(turn.final.ok()) << turn.final.status();
  EXPECT_EQ(turn.ids, want);

  r.set_initial_state("none");
  Stream zero = Generate(*h.client, r);
  ASSERT_TRUE(zero.final.ok());
  EXPECT_EQ(zero.ids, EngineGreedy(std::vector<float>(state.size(), 0.0f), {5, 6}, 12));

  r.set_initial_state("nope");
  Stream bad = Generate(*h.client, r);
  EXPECT_EQ(bad.final.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.final.status().message(),
              HasSubstr("initial_state 'nope' is not a start state of this server (tuned, none)"));
  r.set_initial_state(std::string(100, 'x'));
  Stream too_long = Generate(*h.client, r);
  EXPECT_THAT(too_long.final.status().message(),
              HasSubstr("initial_state is 100 bytes; start-state names are at most 64"));
  v1::GenerateRequest on_session = Greedy({5}, 2, "t");
  on_session.set_initial_state("tuned");
  Stream refused = Generate(*h.client, on_session);
  EXPECT_EQ(refused.final.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.final.status().message(), HasSubstr("continues from its own state"));
  std::remove(tuned.c_str());
}

TEST(GrpcStartStates, AnExportedSessionAsTheDefaultStartContinuesThatConversation) {
  const std::string path = testing::TempPath("conv.rwkvstate");
  std::vector<int32_t> turn_ids;
  {
    Harness h;
    v1::CreateSessionRequest create;
    create.set_session_id("conv");
    create.mutable_token_ids()->add_ids(9);
    ASSERT_TRUE(h.client->CreateSession(create).ok());
    ASSERT_TRUE(Generate(*h.client, Greedy({10, 11}, 4, "conv")).final.ok());
    absl::StatusOr<std::string> bytes = h.client->ExportSession("conv");
    ASSERT_TRUE(bytes.ok());
    testing::WriteFile(path, *bytes);
    Stream next = Generate(*h.client, Greedy({12}, 8, "conv"));
    ASSERT_TRUE(next.final.ok());
    turn_ids = next.ids;
  }
  Harness h({}, {}, 8, "conv=" + path, "conv");
  Stream s = Generate(*h.client, Greedy({12}, 8));  // No initial_state: the default.
  ASSERT_TRUE(s.final.ok()) << s.final.status();
  EXPECT_EQ(s.ids, turn_ids);
  std::remove(path.c_str());
}

TEST(StartStatesLoad, BadSpecsNameTheFlagAndTheEntry) {
  std::shared_ptr<const Model> model =
      *Model::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/tiny-rwkv7-v257.safetensors");
  const StateCodec codec{ModelFingerprint(*model), model->config()};
  const std::string tuned = WriteTunedState();
  auto err = [&](const std::string& spec, const std::string& def = "") {
    return std::string(StartStates::Load(spec, def, codec).status().message());
  };
  EXPECT_THAT(err("tuned"), HasSubstr("--states entry 'tuned' is not NAME=PATH"));
  EXPECT_THAT(err("none=" + tuned), HasSubstr("not 'none'"));
  EXPECT_THAT(err("a=" + tuned + ",a=" + tuned), HasSubstr("names 'a' twice"));
  EXPECT_THAT(err("a=/nonexistent"), HasSubstr("--states a: cannot open /nonexistent"));
  EXPECT_THAT(err("a=" + tuned, "b"), HasSubstr("--default-state 'b' is not one of --states (a)"));
  EXPECT_THAT(err("a=" + std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/tiny-rwkv7-state.safetensors"),
              HasSubstr("unexpected tensor blocks.2.att.time_state"));  // A 3-layer model's file.
  // An export of another model is refused.
  std::shared_ptr<const Model> other =
      *Model::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/tiny-rwkv7-f32.safetensors");
  const StateCodec other_codec{ModelFingerprint(*other), other->config()};
  const std::string path = testing::TempPath("other.rwkvstate");
  testing::WriteFile(path, other_codec.Encode(std::vector<float>(other->config().StateFloats()), {}));
  EXPECT_THAT(err("x=" + path), HasSubstr("--states x: " + path));
  EXPECT_TRUE(StartStates::Load("a=" + tuned, "a", codec).ok());
  std::remove(path.c_str());
  std::remove(tuned.c_str());
}

}  // namespace
}  // namespace rwkv::server
