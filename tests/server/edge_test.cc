// The gRPC edge without a server: request validation, the status map, configuration and the
// state export format.
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/config.h"
#include "server/core/auth.h"
#include "server/core/log.h"
#include "server/core/session_store.h"
#include "server/core/state_codec.h"
#include "server/grpc/status_map.h"
#include "server/grpc/validation.h"
#include "server/grpc/write_pump.h"

namespace rwkv::server {
namespace {

using ::testing::HasSubstr;

class ValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tok_ = *Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/engine/vocab/rwkv_vocab_v20230424.txt");
    limits_.vocab = 65536;
    limits_.max_prompt_tokens = 100;
    limits_.max_tokens = 50;
  }
  absl::Status Check(const v1::GenerateRequest& r) { return ToSequenceRequest(r, *tok_, limits_, ChatTemplate::World()).status(); }
  std::unique_ptr<Tokenizer> tok_;
  RequestLimits limits_;
};

TEST_F(ValidationTest, DefaultsAreTheDocumentedOnesAndStopAtEndOfText) {
  v1::GenerateRequest r;
  r.set_text("Hello");
  absl::StatusOr<SequenceRequest> s = ToSequenceRequest(r, *tok_, limits_, ChatTemplate::World());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->prompt, tok_->Encode("Hello"));
  // docs/server.md lists these; DefaultSampling() is the one place they are set (rwkv-cli too).
  EXPECT_FLOAT_EQ(s->sampling.top_p, 0.85f);
  EXPECT_FLOAT_EQ(s->sampling.temperature, 1.0f);
  EXPECT_EQ(s->sampling.top_k, 0);
  EXPECT_FLOAT_EQ(s->sampling.min_p, 0.0f);
  EXPECT_FLOAT_EQ(s->sampling.presence_penalty, 0.0f);
  EXPECT_FLOAT_EQ(s->sampling.frequency_penalty, 0.0f);
  EXPECT_FLOAT_EQ(s->sampling.penalty_decay, 1.0f);
  const SamplingParams d = DefaultSampling();
  EXPECT_EQ(d.top_p, s->sampling.top_p);
  EXPECT_EQ(d.presence_penalty, s->sampling.presence_penalty);
  EXPECT_EQ(d.penalty_decay, s->sampling.penalty_decay);
  EXPECT_EQ(s->max_tokens, 50) << "min(256, the server limit)";
  EXPECT_EQ(s->stop_tokens, std::vector<int32_t>{0});
}

TEST_F(ValidationTest, EveryFieldIsCheckedAndNamedWithItsLimit) {
  struct Row {
    std::function<void(v1::GenerateRequest&)> set;
    std::string message;
  };
  const std::vector<Row> rows = {
      {[](auto& r) { r.mutable_token_ids()->add_ids(70000); }, "token_ids.ids[0] is 70000, outside the vocabulary [0, 65536)"},
      {[](auto& r) { for (int i = 0; i < 101; ++i) r.mutable_token_ids()->add_ids(1); }, "prompt is 101 tokens; max_prompt_tokens is 100"},
      {[](auto& r) { r.mutable_stop()->set_max_tokens(51); }, "stop.max_tokens is 51; it must be in [1, 50]"},
      {[](auto& r) { r.mutable_stop()->set_max_tokens(0); }, "stop.max_tokens is 0"},
      {[](auto& r) { r.mutable_sampling()->set_temperature(-1); }, "sampling.temperature"},
      {[](auto& r) { r.mutable_sampling()->set_top_p(2); }, "sampling.top_p"},
      {[](auto& r) { (*r.mutable_sampling()->mutable_logit_bias())[99999] = 1; }, "sampling.logit_bias"},
      {[](auto& r) { r.mutable_stop()->add_stop_strings(""); }, "stop.stop_strings[0] is 0 bytes; it must be 1..256"},
      {[](auto& r) { r.mutable_stop()->add_stop_strings("\xff"); }, "stop.stop_strings[0] is not valid UTF-8"},
      {[](auto& r) { for (int i = 0; i < 17; ++i) r.mutable_stop()->add_stop_strings("x"); }, "stop.stop_strings has 17 entries; the limit is 16"},
      {[](auto& r) { r.mutable_stop()->add_stop_token_ids(-1); }, "stop.stop_token_ids[0] is -1"},
      {[](auto& r) { r.mutable_output()->set_logprobs(true); r.mutable_output()->set_top_logprobs(21); }, "output.top_logprobs is 21; it must be in [0, 20]"},
      {[](auto& r) { r.mutable_output()->set_top_logprobs(2); }, "output.top_logprobs needs output.logprobs"},
      {[](auto& r) { r.set_session_id("bad id!"); }, "session_id may contain only"},
  };
  for (const Row& row : rows) {
    v1::GenerateRequest r;
    r.set_text("Hi");
    row.set(r);
    const absl::Status st = Check(r);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << row.message;
    EXPECT_THAT(std::string(st.message()), HasSubstr(row.message));
  }
}

TEST(StatusMap, KeepsCodeAndMessage) {
  const grpc::Status g = ToGrpcStatus(absl::ResourceExhaustedError("queue full (queue_length 2)"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(g.error_message(), "queue full (queue_length 2)");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  for (auto [a, b] : std::vector<std::pair<absl::Status, grpc::StatusCode>>{
           {absl::InvalidArgumentError("x"), grpc::StatusCode::INVALID_ARGUMENT},
           {absl::NotFoundError("x"), grpc::StatusCode::NOT_FOUND},
           {absl::FailedPreconditionError("x"), grpc::StatusCode::FAILED_PRECONDITION},
           {absl::DeadlineExceededError("x"), grpc::StatusCode::DEADLINE_EXCEEDED},
           {absl::CancelledError("x"), grpc::StatusCode::CANCELLED},
           {absl::UnavailableError("x"), grpc::StatusCode::UNAVAILABLE},
           {absl::DataLossError("x"), grpc::StatusCode::DATA_LOSS}}) {
    EXPECT_EQ(ToGrpcStatus(a).error_code(), b);
  }
  EXPECT_STREQ(CodeLabel(grpc::StatusCode::RESOURCE_EXHAUSTED), "resource_exhausted");
}

absl::StatusOr<ServerConfig> Parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  bool help;
  return ParseServerConfig(
      args, [&](const char* n) -> const char* { auto it = env.find(n); return it == env.end() ? nullptr : it->second.c_str(); },
      &help);
}

TEST(Config, FlagsOverEnvironment) {
  absl::StatusOr<ServerConfig> c = Parse({"--model", "m.pth", "--vocab=v.txt", "--port", "7000"},
                                         {{"RWKV_PORT", "6000"}, {"RWKV_METRICS_PORT", "9100"}, {"RWKV_STATE_MEMORY", "2GiB"},
                                          {"RWKV_SESSION_TTL", "90s"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->port, 7000);
  EXPECT_EQ(c->metrics_port, 9100);
  EXPECT_EQ(c->state_memory, 2LL << 30);
  EXPECT_DOUBLE_EQ(c->session_ttl, 90);
  EXPECT_EQ(c->model, "m.pth");
}

TEST(Config, DiskTierFlags) {
  absl::StatusOr<ServerConfig> c = Parse({"--model", "m", "--vocab", "v", "--persist-interval", "0"},
                                         {{"RWKV_STATE_DIR", "/var/lib/rwkv"}, {"RWKV_STATE_DISK_BYTES", "18GiB"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state_dir, "/var/lib/rwkv");
  EXPECT_DOUBLE_EQ(c->persist_interval, 0);
  EXPECT_EQ(c->state_disk_bytes, 18LL << 30);
  c = Parse({"--model", "m", "--vocab", "v"});
  EXPECT_TRUE(c->state_dir.empty()) << "memory only by default";
  EXPECT_DOUBLE_EQ(c->persist_interval, 5);
  EXPECT_THAT(std::string(Parse({"--model", "m", "--vocab", "v", "--persist-interval", "-1"}).status().message()),
              HasSubstr("--persist-interval"));
}

TEST(Config, SecurityFlags) {
  absl::StatusOr<ServerConfig> c =
      Parse({"--model", "m", "--vocab", "v", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem",
             "--tenant-max-streams", "4", "--metrics-tenant-label", "true"},
            {{"RWKV_API_KEYS", "/etc/rwkv/keys"}, {"RWKV_TENANT_TOKENS_PER_MINUTE", "60000"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->api_keys, "/etc/rwkv/keys");
  EXPECT_EQ(c->tls_client_ca, "ca.pem");
  EXPECT_EQ(c->tenant_max_streams, 4);
  EXPECT_EQ(c->tenant_tokens_per_minute, 60000);
  EXPECT_TRUE(c->metrics_tenant_label);
  EXPECT_THAT(std::string(Parse({"--model", "m", "--vocab", "v", "--tls-cert", "c.pem"}).status().message()),
              HasSubstr("--tls-cert and --tls-key go together"));
  EXPECT_THAT(std::string(Parse({"--model", "m", "--vocab", "v", "--tls-client-ca", "ca.pem"}).status().message()),
              HasSubstr("--tls-client-ca needs --tls-cert"));
  EXPECT_THAT(std::string(Parse({"--model", "m", "--vocab", "v", "--tenant-max-sessions", "-1"}).status().message()),
              HasSubstr("--tenant-max-sessions"));
}

TEST(ApiKeysFile, EntriesLimitsAndErrorsNamingTheLine) {
  const std::string hashed = "sha256:" + absl::BytesToHexString(Sha256("a-hashed-key-0123456789"));
  absl::StatusOr<std::shared_ptr<const ApiKeys>> k =
      ApiKeys::Parse("# tenants\nplain-key-0123456789 acme streams=2\n" + hashed + " acme streams=2\n\n"
                     "other-key-0123456789 bravo sessions=5 tokens_per_minute=100\n",
                     "keys.txt", TenantLimits{10, 3, 0});
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ((*k)->size(), 3u);
  EXPECT_EQ((*k)->tenants(), 2u);
  ASSERT_NE((*k)->Find("plain-key-0123456789"), nullptr);
  EXPECT_EQ((*k)->Find("plain-key-0123456789")->name, "acme");
  EXPECT_EQ((*k)->Find("a-hashed-key-0123456789")->name, "acme");
  EXPECT_EQ((*k)->Find("plain-key-0123456789")->limits.max_streams, 2);
  EXPECT_EQ((*k)->Find("plain-key-0123456789")->limits.max_sessions, 10) << "the default";
  EXPECT_EQ((*k)->LimitsOf("bravo")->tokens_per_minute, 100);
  EXPECT_EQ((*k)->Find("plain-key-012345678"), nullptr);
  EXPECT_EQ((*k)->Find(""), nullptr);

  struct Bad {
    std::string text, message;
  };
  for (const Bad& b : std::vector<Bad>{
           {"", "no API keys listed"},
           {"lonely-key-0123456789\n", "keys.txt:1: expected KEY TENANT"},
           {"short acme\n", "keys.txt:1: a key must be 16..256 printable characters"},
           {"\nsha256:abc acme\n", "keys.txt:2: a sha256: key needs 64 hex digits"},
           {"good-key-0123456789 bad/tenant\n", "keys.txt:1: tenant may contain only"},
           {"good-key-0123456789 acme speed=3\n", "keys.txt:1: unknown limit 'speed'"},
           {"good-key-0123456789 acme streams=-1\n", "keys.txt:1: 'streams' needs a non-negative integer"},
           {"good-key-0123456789 acme\ngood-key-0123456789 bravo\n", "keys.txt:2: this key is already listed"},
           // Found by fuzz_api_keys: a long limit name was echoed whole (now 32 bytes, printable).
           {"good-key-0123456789 acme " + std::string(300, 's') + std::string(1, '\0') + "\n",
            "keys.txt:1: 'ssssssssssssssssssssssssssssssss...' needs a non-negative integer"},
           {"good-key-0123456789 acme\nkey-two-0123456789 acme streams=1\n", "keys.txt:2: tenant acme has other limits"},
       }) {
    absl::StatusOr<std::shared_ptr<const ApiKeys>> r = ApiKeys::Parse(b.text, "keys.txt", {});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << b.text;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(b.message)) << b.text;
    EXPECT_THAT(std::string(r.status().message()), ::testing::Not(HasSubstr("0123456789"))) << "never the key";
    EXPECT_LT(r.status().message().size(), 160u) << "never unbounded input";
  }
}

TEST(TenantUsageTest, StreamsAndASlidingMinuteOfTokens) {
  TenantUsage u;
  const Tenant t{"acme", TenantLimits{0, 2, 100}};
  const auto t0 = TenantUsage::Clock::time_point(std::chrono::seconds(1000));
  ASSERT_TRUE(u.BeginStream(t, t0).ok());
  ASSERT_TRUE(u.BeginStream(t, t0).ok());
  EXPECT_THAT(std::string(u.BeginStream(t, t0).message()), HasSubstr("concurrent stream limit is 2 (streams)"));
  u.EndStream("acme");
  u.AddTokens("acme", 60, t0);
  u.AddTokens("acme", 40, t0 + std::chrono::seconds(30));
  EXPECT_EQ(u.TokensLastMinute("acme", t0 + std::chrono::seconds(59)), 100);
  EXPECT_EQ(u.BeginStream(t, t0 + std::chrono::seconds(59)).code(), absl::StatusCode::kResourceExhausted);
  // The first 60 leave the window a minute after they were generated.
  EXPECT_EQ(u.TokensLastMinute("acme", t0 + std::chrono::seconds(60)), 40);
  EXPECT_TRUE(u.BeginStream(t, t0 + std::chrono::seconds(60)).ok());
  EXPECT_EQ(u.Streams("acme"), 2);
  EXPECT_EQ(u.TokensLastMinute("acme", t0 + std::chrono::seconds(91)), 0);
}

TEST(ScopedIds, TenantsNamespaceTheStore) {
  EXPECT_EQ(ScopedSessionId("acme", "chat"), "acme:chat");
  EXPECT_EQ(ScopedSessionId("", "chat"), "chat");
  EXPECT_EQ(SessionOwner("acme:chat"), "acme");
  EXPECT_EQ(SessionOwner("chat"), "");
  EXPECT_EQ(UnscopedSessionId("acme", "acme:chat"), "chat");
  EXPECT_TRUE(SessionStore::ValidateKey("acme:chat").ok());
  EXPECT_FALSE(SessionStore::ValidateKey("acme:chat:x").ok());
  EXPECT_FALSE(SessionStore::ValidateKey(":chat").ok());
  EXPECT_FALSE(SessionStore::ValidateId("acme:chat", "session_id").ok()) << "a client cannot name a scope";
}

TEST(LogValueTest, EscapesEveryControlCharacter) {
  EXPECT_EQ(LogValue("plain-1"), "plain-1");
  EXPECT_EQ(LogValue("a b"), "\"a b\"");
  EXPECT_EQ(LogValue("x\ny"), "\"x\\ny\"");
  EXPECT_EQ(LogValue(std::string("a\x1b[2Jb\x7f\r\0", 9)), "\"a\\x1b[2Jb\\x7f\\r\\x00\"");
  EXPECT_EQ(LogValue("q\"\\"), "\"q\\\"\\\\\"");
  EXPECT_EQ(LogValue(""), "\"\"");
}

TEST(Config, ErrorsNameTheFlagAndTheLimit) {
  EXPECT_THAT(std::string(Parse({"--vocab", "v"}).status().message()), HasSubstr("--model is required"));
  EXPECT_THAT(std::string(Parse({"--model", "m", "--vocab", "v", "--port", "70000"}).status().message()),
              HasSubstr("--port is '70000'; it must be an integer in [0, 65535]"));
  EXPECT_THAT(std::string(Parse({"--model", "m", "--vocab", "v", "--bogus", "1"}).status().message()),
              HasSubstr("unknown flag --bogus"));
  EXPECT_THAT(std::string(Parse({"--model", "m", "--vocab", "v"}, {{"RWKV_STEP_TOKENS", "0"}}).status().message()),
              HasSubstr("(from RWKV_STEP_TOKENS)"));
  EXPECT_THAT(std::string(Parse({"--model", "m", "--vocab", "v", "--state-memory", "12XB"}).status().message()),
              HasSubstr("--state-memory"));
  EXPECT_THAT(std::string(Parse({"--model", "m", "--vocab", "v", "--backend", "tpu"}).status().message()),
              HasSubstr("cpu or cuda"));
}

StateHeader Meta(std::optional<int32_t> pending, int64_t token_count) {
  StateHeader h;
  h.pending = pending;
  h.token_count = token_count;
  return h;
}

class CodecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    codec_.fingerprint = "rwkv7-0123";
    codec_.config.arch = Architecture::kRwkv7;
    codec_.config.n_layer = 1;
    codec_.config.n_embd = 4;
    codec_.config.n_att = 4;
    codec_.config.n_head = 1;
    codec_.config.head_size = 4;
    codec_.config.vocab = 100;
    state_.resize(codec_.config.StateFloats());
    for (size_t i = 0; i < state_.size(); ++i) state_[i] = 0.5f * i - 3;
  }
  StateCodec codec_;
  std::vector<float> state_;
};

TEST_F(CodecTest, RoundTrip) {
  const std::string bytes = codec_.Encode(state_, Meta(42, 17));
  absl::StatusOr<ExportedState> d = codec_.Decode(bytes);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->state, state_);
  EXPECT_EQ(d->pending, 42);
  EXPECT_EQ(d->token_count, 17);
  EXPECT_FALSE(codec_.Decode(codec_.Encode(state_, Meta(std::nullopt, 0)))->pending.has_value());
}

TEST_F(CodecTest, RefusesAnotherModelAndCorruptData) {
  std::string bytes = codec_.Encode(state_, Meta(1, 2));
  StateCodec other = codec_;
  other.fingerprint = "rwkv7-ffff";
  EXPECT_EQ(other.Decode(bytes).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(other.Decode(bytes).status().message()), HasSubstr("belongs to model rwkv7-0123"));
  std::string flipped = bytes;
  flipped.back() ^= 1;
  EXPECT_EQ(codec_.Decode(flipped).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(codec_.Decode(flipped).status().message()), HasSubstr("checksum"));
  EXPECT_EQ(codec_.Decode(bytes.substr(0, bytes.size() - 4)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(codec_.Decode("not a state").status().code(), absl::StatusCode::kInvalidArgument);
  std::string bad_header = bytes;
  bad_header[12] = '!';
  EXPECT_EQ(codec_.Decode(bad_header).status().code(), absl::StatusCode::kDataLoss);
}

// The header's own bytes: a change inside it that parses and passes the field checks still fails
// the checksum, which covers the header.
TEST_F(CodecTest, ChecksumCoversTheHeader) {
  std::string bytes = codec_.Encode(state_, Meta(1, 17));
  const size_t at = bytes.find("\"token_count\":17");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 15] = '3';  // 17 -> 37: a valid count, not the written one.
  EXPECT_EQ(codec_.Decode(bytes).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(codec_.Decode(bytes).status().message()), HasSubstr("checksum"));
}

TEST_F(CodecTest, TruncatedAtEveryLengthIsDataLoss) {
  const std::string bytes = codec_.Encode(state_, {5, 9, "sess", 1, 2});
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_EQ(codec_.Decode(bytes.substr(0, n)).status().code(), absl::StatusCode::kDataLoss) << n << " bytes";
  }
  EXPECT_EQ(codec_.Decode(bytes + "x").status().code(), absl::StatusCode::kDataLoss) << "trailing bytes";
}

// Replaces `field`'s value in an encoded header (fixing the header length; the checksum is
// checked after the fields, so it need not match).
std::string WithField(const std::string& bytes, const std::string& field, const std::string& value) {
  uint32_t len;
  std::memcpy(&len, bytes.data() + 8, 4);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(12, len));
  if (value.empty()) {
    h.erase(field);
  } else {
    h[field] = nlohmann::json::parse(value);
  }
  const std::string header = h.dump();
  const uint32_t n = static_cast<uint32_t>(header.size());
  return bytes.substr(0, 8) + std::string(reinterpret_cast<const char*>(&n), 4) + header + bytes.substr(12 + len);
}

TEST_F(CodecTest, RefusesEveryHeaderFieldOutOfRange) {
  const std::string bytes = codec_.Encode(state_, Meta(1, 2));
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"token_count", "-1"},          {"token_count", "1.5"},         {"token_count", "\"5\""},
      {"token_count", "1e30"},        {"token_count", "9223372036854775808"},
      {"token_count", "18446744073709551616"},                         {"token_count", "9007199254740993"},
      {"pending_token", "100"},       {"pending_token", "-1"},        {"pending_token", "2.0"},
      {"n_layer", "2"},               {"n_embd", "4.0"},              {"head_size", "-4"},
      {"payload_bytes", "8"},         {"payload_bytes", "1e3"},       {"format", "3"},
      {"format", "2.5"},              {"dtype", "\"float16\""},       {"model_fingerprint", "7"},
      {"session", "{\"id\":\"\",\"created_unix_ms\":0,\"last_used_unix_ms\":0}"},
      {"session", "{\"id\":\"a\",\"created_unix_ms\":-5,\"last_used_unix_ms\":0}"},
      {"session", "[]"},
  };
  for (const auto& [field, value] : bad) {
    const absl::Status st = codec_.Decode(WithField(bytes, field, value)).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << field << "=" << value << ": " << st;
  }
  for (const char* field : {"token_count", "pending_token", "payload_bytes", "model_fingerprint", "n_head"}) {
    EXPECT_EQ(codec_.Decode(WithField(bytes, field, "")).status().code(), absl::StatusCode::kDataLoss) << field;
  }
}

TEST_F(CodecTest, BiggerModelIsFailedPreconditionNamingBothBeforeAnySizeCheck) {
  StateCodec big = codec_;
  big.fingerprint = "rwkv7-bigg";
  big.config.n_layer = 24;
  big.config.n_embd = 64;
  big.config.n_head = 4;
  big.config.head_size = 16;
  const std::string bytes = big.Encode(std::vector<float>(big.config.StateFloats()), {});
  ASSERT_GT(bytes.size(), codec_.MaxBytes());
  for (const absl::Status& st : {codec_.Decode(bytes).status(), codec_.DecodeHeader(bytes).status(),
                                 codec_.Decode(bytes.substr(0, bytes.size() / 2)).status()}) {
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("rwkv7-bigg"));
    EXPECT_THAT(std::string(st.message()), HasSubstr("rwkv7-0123"));
    EXPECT_THAT(std::string(st.message()), HasSubstr("L24"));
  }
}

TEST_F(CodecTest, SessionFieldsRoundTrip) {
  const ExportedState d = *codec_.Decode(codec_.Encode(state_, {7, 70, "chat-1", 1700000000123, 1700000009999}));
  EXPECT_EQ(d.session_id, "chat-1");
  EXPECT_EQ(d.created_unix_ms, 1700000000123);
  EXPECT_EQ(d.last_used_unix_ms, 1700000009999);
  EXPECT_EQ(d.pending, 7);
  EXPECT_EQ(d.token_count, 70);
}

// The threads that start gRPC stream writes: tasks run off the posting thread, in order on one
// thread, and every task posted before the pump is destroyed runs (a stream's last write and its
// finish are never dropped at shutdown).
TEST(WritePumpTest, RunsEveryTaskOffThePostingThreadInOrder) {
  std::vector<int> order;
  std::mutex mu;
  std::atomic<int> on_caller{0};
  const std::thread::id caller = std::this_thread::get_id();
  {
    WritePump pump(1);
    for (int i = 0; i < 1000; ++i) {
      pump.Post([&, i] {
        if (std::this_thread::get_id() == caller) ++on_caller;
        std::lock_guard<std::mutex> lock(mu);
        order.push_back(i);
      });
    }
  }
  EXPECT_EQ(on_caller.load(), 0);
  ASSERT_EQ(order.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(order[i], i);
  // Several threads: each task once.
  std::atomic<int> runs{0};
  {
    WritePump pump(3);
    for (int i = 0; i < 5000; ++i) pump.Post([&] { ++runs; });
  }
  EXPECT_EQ(runs.load(), 5000);
}

}  // namespace
}  // namespace rwkv::server
