// RWKV-7 on the CPU backend against the float64 reference (tests/reference/rwkv7_ref.py).
//
// Tolerance: 1e-5 relative L2 per position (the bound). The engine computes in fp32 from
// weights exactly representable in fp32 (bf16/f16 files are compared with a reference run on the
// same rounded weights), so the only error is fp32 rounding (2^-24 ~ 6e-8 per operation)
// accumulated over the layers and the recurrence; we measure at most 1.9e-6 on these fixtures.
#include "engine/model.h"

#include <algorithm>
#include <memory>
#include <random>

#include "engine/backend.h"
#include "engine/tensor_file.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"

namespace rwkv {
namespace {

using ::rwkv::testing::RelL2;

constexpr double kTol = 1e-5;

struct Case {
  std::string file;
  std::string reference;
};

std::vector<Case> Cases() {
  std::vector<Case> out;
  const nlohmann::json manifest = testing::Manifest();
  for (const auto& f : manifest["fixtures"]) {
    for (const auto& file : f["files"]) out.push_back({file.get<std::string>(), f["reference"].get<std::string>()});
  }
  return out;
}

class ParityTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    auto m = Model::Load(testing::Fixture(GetParam().file));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    tokens_ = testing::ManifestTokens();
    ref_ = testing::ReferenceLogits(GetParam().reference, model_->config().vocab);
    ASSERT_EQ(ref_.size(), tokens_.size());
  }

  std::unique_ptr<Backend> MakeBackend(int slots, int max_step_tokens) {
    BackendOptions o;
    o.pool_slots = slots;
    o.max_step_tokens = max_step_tokens;
    auto b = CreateBackend(model_, o);
    EXPECT_TRUE(b.ok()) << b.status();
    return std::move(*b);
  }

  std::shared_ptr<const Model> model_;
  std::vector<int32_t> tokens_;
  std::vector<std::vector<double>> ref_;
};

// Prompt mode: the sequence in chunks of `chunk` tokens, logits of every position.
TEST_P(ParityTest, ChunkedPromptEveryPosition) {
  for (int chunk : {1, 2, 3, 7, 16, 24}) {
    auto backend = MakeBackend(1, 64);
    const int slot = *backend->pool().Acquire();
    Logits logits;
    for (size_t begin = 0; begin < tokens_.size(); begin += chunk) {
      const size_t n = std::min<size_t>(chunk, tokens_.size() - begin);
      BatchEntry e{slot, std::span<const int32_t>(tokens_).subspan(begin, n), true};
      ASSERT_TRUE(backend->Forward({&e, 1}, &logits).ok());
      for (size_t i = 0; i < n; ++i) {
        EXPECT_LT(RelL2(logits.Row(0, static_cast<int>(i)), ref_[begin + i]), kTol)
            << "chunk " << chunk << " position " << begin + i;
      }
    }
  }
}

// Decode mode: one token per call, last-token logits.
TEST_P(ParityTest, OneTokenAtATime) {
  auto backend = MakeBackend(1, 1);
  const int slot = *backend->pool().Acquire();
  Logits logits;
  for (size_t i = 0; i < tokens_.size(); ++i) {
    BatchEntry e{slot, std::span<const int32_t>(tokens_).subspan(i, 1), false};
    ASSERT_TRUE(backend->Forward({&e, 1}, &logits).ok());
    EXPECT_LT(RelL2(logits.Last(0), ref_[i]), kTol) << "position " << i;
  }
}

// A scratch smaller than the call: the backend splits it into several internal steps.
TEST_P(ParityTest, CallLargerThanScratch) {
  auto backend = MakeBackend(1, 5);
  const int slot = *backend->pool().Acquire();
  Logits logits;
  BatchEntry e{slot, tokens_, true};
  ASSERT_TRUE(backend->Forward({&e, 1}, &logits).ok());
  ASSERT_EQ(logits.rows(0), static_cast<int>(tokens_.size()));
  for (size_t i = 0; i < tokens_.size(); ++i) EXPECT_LT(RelL2(logits.Row(0, static_cast<int>(i)), ref_[i]), kTol) << i;
}

// The target sequence shares every call with other sequences (decode tokens and prompt chunks of
// random lengths, in random entry order): its logits do not depend on its neighbours.
TEST_P(ParityTest, IndependentOfWhatSharesTheBatch) {
  for (int max_step : {7, 64}) {
    auto backend = MakeBackend(6, max_step);
    std::vector<int> slots;
    for (int i = 0; i < 6; ++i) slots.push_back(*backend->pool().Acquire());
    std::mt19937 rng(42 + max_step);
    std::vector<std::vector<int32_t>> other(6);
    Logits logits;
    size_t pos = 0;
    while (pos < tokens_.size()) {
      std::vector<BatchEntry> batch;
      const size_t n = std::min<size_t>(1 + rng() % 4, tokens_.size() - pos);
      BatchEntry target{slots[3], std::span<const int32_t>(tokens_).subspan(pos, n), true};
      for (int s = 0; s < 6; ++s) {
        if (s == 3) continue;
        other[s].resize(1 + rng() % 9);
        for (int32_t& t : other[s]) t = static_cast<int32_t>(rng() % model_->config().vocab);
        if (rng() % 3) batch.push_back({slots[s], other[s], static_cast<bool>(rng() % 2)});
      }
      batch.insert(batch.begin() + rng() % (batch.size() + 1), target);
      ASSERT_TRUE(backend->Forward(batch, &logits).ok());
      int e = 0;
      while (batch[e].slot != slots[3]) ++e;
      for (size_t i = 0; i < n; ++i) {
        EXPECT_LT(RelL2(logits.Row(e, static_cast<int>(i)), ref_[pos + i]), kTol)
            << "max_step " << max_step << " position " << pos + i;
      }
      pos += n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ParityTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string n = info.param.file;
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

class BackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors"));
    ASSERT_TRUE(m.ok()) << m.status();
    BackendOptions o;
    o.pool_slots = 4;
    o.max_step_tokens = 16;
    auto b = CreateBackend(std::shared_ptr<const Model>(std::move(*m)), o);
    ASSERT_TRUE(b.ok());
    backend_ = std::move(*b);
    tokens_ = testing::ManifestTokens();
  }
  std::vector<float> State(int slot) {
    std::vector<float> s(backend_->pool().slot_floats());
    EXPECT_TRUE(backend_->pool().Read(slot, s).ok());
    return s;
  }
  std::vector<float> Step(int slot, std::span<const int32_t> tokens) {
    BatchEntry e{slot, tokens, false};
    EXPECT_TRUE(backend_->Forward({&e, 1}, &logits_).ok());
    return {logits_.Last(0).begin(), logits_.Last(0).end()};
  }
  std::unique_ptr<Backend> backend_;
  std::vector<int32_t> tokens_;
  Logits logits_;
};

// Fork: a copied state continues exactly like the original; a state read out and written back
// (after a reset) does too.
TEST_F(BackendTest, CopyAndHostRoundTripContinueIdentically) {
  StatePool& pool = backend_->pool();
  const int a = *pool.Acquire(), b = *pool.Acquire();
  std::span<const int32_t> t(tokens_);
  Step(a, t.subspan(0, 10));
  ASSERT_TRUE(pool.Copy(a, b).ok());
  EXPECT_EQ(State(a), State(b));
  const std::vector<float> saved = State(a);
  const std::vector<float> la = Step(a, t.subspan(10, 6));
  const std::vector<float> lb = Step(b, t.subspan(10, 6));
  EXPECT_EQ(la, lb);
  ASSERT_TRUE(pool.Reset(b).ok());
  EXPECT_EQ(State(b), std::vector<float>(pool.slot_floats(), 0.0f));
  ASSERT_TRUE(pool.Write(b, saved).ok());
  EXPECT_EQ(Step(b, t.subspan(10, 6)), la);
}

TEST_F(BackendTest, BadBatchesChangeNothing) {
  StatePool& pool = backend_->pool();
  const int a = *pool.Acquire(), b = *pool.Acquire();
  std::span<const int32_t> t(tokens_);
  Step(a, t.subspan(0, 4));
  Step(b, t.subspan(0, 3));
  const std::vector<float> sa = State(a), sb = State(b);
  const int32_t bad_token[] = {1, 256};
  const int32_t negative[] = {-1};
  struct Bad {
    std::vector<BatchEntry> batch;
    std::string expect;
  };
  std::vector<Bad> cases = {
      {{{a, t.subspan(0, 2)}, {3, t.subspan(0, 1)}}, "slot 3 is not an acquired slot"},
      {{{a, t.subspan(0, 2)}, {a, t.subspan(0, 1)}}, "appears twice"},
      {{{a, t.subspan(0, 2)}, {b, bad_token}}, "token 256 at position 1 is outside the vocabulary [0, 256)"},
      {{{a, negative}}, "token -1"},
      {{{a, t.subspan(0, 2)}, {b, {}}}, "no tokens"},
      {{{99, t.subspan(0, 2)}}, "slot 99"},
  };
  for (const Bad& c : cases) {
    absl::Status st = backend_->Forward(c.batch, &logits_);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.expect;
    EXPECT_NE(std::string(st.message()).find(c.expect), std::string::npos) << st;
  }
  EXPECT_EQ(State(a), sa);
  EXPECT_EQ(State(b), sb);
}

TEST_F(BackendTest, LogitsLayout) {
  StatePool& pool = backend_->pool();
  const int a = *pool.Acquire(), b = *pool.Acquire(), c = *pool.Acquire();
  std::span<const int32_t> t(tokens_);
  std::vector<BatchEntry> batch = {{a, t.subspan(0, 3), true}, {b, t.subspan(0, 5), false}, {c, t.subspan(0, 1), true}};
  ASSERT_TRUE(backend_->Forward(batch, &logits_).ok());
  EXPECT_EQ(logits_.entries(), 3);
  EXPECT_EQ(logits_.rows(0), 3);
  EXPECT_EQ(logits_.rows(1), 1);
  EXPECT_EQ(logits_.rows(2), 1);
  EXPECT_EQ(logits_.vocab(), 256);
  // Entry c saw only token 0 of the sequence, like entry a's first row: bitwise the same logits.
  EXPECT_EQ(std::vector<float>(logits_.Row(0, 0).begin(), logits_.Row(0, 0).end()),
            std::vector<float>(logits_.Row(2, 0).begin(), logits_.Row(2, 0).end()));
}

// Embedding rows (image features) enter through blocks.0.ln0 like table rows: feeding a token's raw
// (unfolded) embedding row in its place gives the token's logits and state bit for bit, over a
// prompt longer than a step (16 tokens a step here), so rows follow the chunking; any other row
// changes them.
TEST_F(BackendTest, EmbeddingRowsEnterThroughLn0LikeTableRows) {
  auto file = TensorFile::Open(testing::Fixture("tiny-rwkv7-f32.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* emb = (*file)->Find("emb.weight");
  ASSERT_NE(emb, nullptr);
  std::vector<float> raw(emb->numel());
  CopyToFloat(*emb, raw.data());
  const int C = static_cast<int>(emb->shape[1]);
  StatePool& pool = backend_->pool();
  const int a = *pool.Acquire(), b = *pool.Acquire(), c = *pool.Acquire();
  std::span<const int32_t> t(tokens_);
  const std::span<const int32_t> prompt = t.subspan(0, 20);
  std::vector<const float*> rows(prompt.size(), nullptr);
  for (size_t i = 1; i < rows.size(); i += 3) rows[i] = raw.data() + static_cast<size_t>(prompt[i]) * C;
  BatchEntry plain{a, prompt, true};
  ASSERT_TRUE(backend_->Forward({&plain, 1}, &logits_).ok());
  const std::vector<float> want(logits_.Row(0, 0).begin(), logits_.Row(0, 19).end());
  BatchEntry with_rows{b, prompt, true, rows};
  ASSERT_TRUE(backend_->Forward({&with_rows, 1}, &logits_).ok());
  EXPECT_EQ(std::vector<float>(logits_.Row(0, 0).begin(), logits_.Row(0, 19).end()), want);
  EXPECT_EQ(State(a), State(b));
  // Another row at position 7: the logits from there on differ, those before do not.
  std::vector<float> other(C, 0.5f);
  rows[7] = other.data();
  BatchEntry changed{c, prompt, true, rows};
  ASSERT_TRUE(backend_->Forward({&changed, 1}, &logits_).ok());
  EXPECT_EQ(std::vector<float>(logits_.Row(0, 0).begin(), logits_.Row(0, 6).end()),
            std::vector<float>(want.begin(), want.begin() + 7 * 256));
  EXPECT_NE(std::vector<float>(logits_.Row(0, 7).begin(), logits_.Row(0, 7).end()),
            std::vector<float>(want.begin() + 7 * 256, want.begin() + 8 * 256));
  // One row per token, or none.
  const float* two[] = {nullptr, nullptr};
  BatchEntry wrong{a, t.subspan(0, 3), false, two};
  const absl::Status st = backend_->Forward({&wrong, 1}, &logits_);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "batch entry 0: 2 embedding rows for 3 tokens; one per token (or none)");
}

TEST(BackendFactoryTest, UnknownOrMissingBackends) {
  auto m = Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors"));
  std::shared_ptr<const Model> model = std::move(*m);
  BackendOptions o;
  o.kind = "tpu";
  EXPECT_EQ(CreateBackend(model, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.kind = "cuda";
  // Without a device (or without CUDA in the build) this is an error, never a crash.
  EXPECT_FALSE(CreateBackend(model, o).ok());
  o.kind = "cpu";
  o.pool_slots = 0;
  EXPECT_EQ(CreateBackend(model, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.pool_slots = kMaxPoolSlots + 1;
  auto too_many = CreateBackend(model, o);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(too_many.status().message()).find("pool_slots is 1048577; it must be in [1, 1048576]"),
            std::string::npos);
  o.pool_slots = 1;
  o.max_step_tokens = kMaxStepTokens + 1;
  EXPECT_EQ(CreateBackend(model, o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RandomModelTest, RealShapeRunsAndIsFinite) {
  ModelConfig c;
  c.arch = Architecture::kRwkv7;
  c.n_layer = 2;
  c.n_embd = c.n_att = 128;
  c.n_head = 2;
  c.head_size = 64;
  c.ffn_dim = 512;
  c.vocab = 1000;
  c.lora_decay = c.lora_iclr = 16;
  c.lora_value = 8;
  c.lora_gate = 32;
  auto backend = CreateBackend(Model::Random(c, 1), BackendOptions{});
  ASSERT_TRUE(backend.ok());
  const int slot = *(*backend)->pool().Acquire();
  const int32_t tokens[] = {1, 2, 3, 999};
  Logits logits;
  BatchEntry e{slot, tokens, true};
  ASSERT_TRUE((*backend)->Forward({&e, 1}, &logits).ok());
  for (int r = 0; r < 4; ++r) {
    for (float v : logits.Row(0, r)) ASSERT_TRUE(std::isfinite(v));
  }
}

}  // namespace
}  // namespace rwkv

namespace rwkv {
namespace {

// Every product computes each output element in one fixed order, and every other step is per row
// or sequential per sequence: a sequence's logits are bitwise the same whatever the chunking,
// the neighbours in the batch, or the thread count. (Greedy output does not change under load.)
TEST(BitwiseInvarianceTest, ChunkingBatchingAndThreads) {
  auto loaded = Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors"));
  ASSERT_TRUE(loaded.ok());
  std::shared_ptr<const Model> model = std::move(*loaded);
  const std::vector<int32_t> tokens = testing::ManifestTokens();
  const int V = model->config().vocab;

  auto run = [&](int threads, int max_step, int chunk, bool neighbours) {
    BackendOptions o;
    o.pool_slots = 4;
    o.max_step_tokens = max_step;
    o.threads = threads;
    auto backend = *CreateBackend(model, o);
    std::vector<int> slots;
    for (int i = 0; i < 4; ++i) slots.push_back(*backend->pool().Acquire());
    std::vector<float> all;
    Logits logits;
    std::mt19937 rng(chunk * 31 + threads);
    std::vector<std::vector<int32_t>> other(4);
    for (size_t begin = 0; begin < tokens.size(); begin += chunk) {
      const size_t n = std::min<size_t>(chunk, tokens.size() - begin);
      std::vector<BatchEntry> batch;
      if (neighbours) {
        for (int s = 1; s < 4; ++s) {
          other[s].assign(1 + rng() % 6, 0);
          for (int32_t& t : other[s]) t = static_cast<int32_t>(rng() % V);
          batch.push_back({slots[s], other[s], s == 2});
        }
      }
      batch.insert(batch.begin() + (neighbours ? 1 : 0),
                   {slots[0], std::span<const int32_t>(tokens).subspan(begin, n), true});
      EXPECT_TRUE(backend->Forward(batch, &logits).ok());
      const int e = neighbours ? 1 : 0;
      for (int r = 0; r < logits.rows(e); ++r) all.insert(all.end(), logits.Row(e, r).begin(), logits.Row(e, r).end());
    }
    return all;
  };
  const std::vector<float> base = run(1, 64, 1, false);
  ASSERT_EQ(base.size(), tokens.size() * V);
  EXPECT_EQ(run(2, 64, 24, false), base);
  EXPECT_EQ(run(2, 5, 24, false), base);
  EXPECT_EQ(run(2, 64, 7, true), base);
  EXPECT_EQ(run(1, 6, 3, true), base);
}

}  // namespace
}  // namespace rwkv
