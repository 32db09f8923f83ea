// State-tuning files as initial states (spec section 7) against the float64 references started
// from the same file (tests/reference/make_state_fixtures.py), and the loader's errors.
#include "engine/start_state.h"

#include "engine/backend.h"
#include "engine/model.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"

namespace rwkv {
namespace {

using ::rwkv::testing::RelL2;

struct Case {
  std::string model, manifest, arch;
};

class StateTuning : public ::testing::TestWithParam<Case> {};

TEST_P(StateTuning, LogitsFromTheTunedStateMatchTheReferenceAtEveryPosition) {
  const Case& c = GetParam();
  std::shared_ptr<const Model> model = *Model::Load(testing::Fixture(c.model));
  const std::vector<int32_t> tokens =
      nlohmann::json::parse(testing::ReadFile(testing::Fixture(c.manifest)))["tokens"].get<std::vector<int32_t>>();
  absl::StatusOr<std::vector<float>> start =
      LoadStateTuning(testing::Fixture("tiny-" + c.arch + "-state.safetensors"), model->config());
  ASSERT_TRUE(start.ok()) << start.status();
  const auto ref = testing::ReferenceLogits("tiny-" + c.arch + "-state.ref.f64", model->config().vocab);
  const auto plain = testing::ReferenceLogits("tiny-" + c.arch + "-f32.ref.f64", model->config().vocab);
  ASSERT_EQ(ref.size(), tokens.size());
  // The tuned state changes the output: a loader that dropped it could not pass below.
  std::vector<float> plain_last(plain.back().begin(), plain.back().end());
  EXPECT_GT(RelL2(plain_last, ref.back()), 0.01);
  BackendOptions o;
  o.pool_slots = 2;
  auto backend = *CreateBackend(model, o);
  for (int chunk : {1, 5, static_cast<int>(tokens.size())}) {
    const int slot = *backend->pool().Acquire();
    ASSERT_TRUE(backend->pool().Write(slot, *start).ok());
    Logits logits;
    for (size_t begin = 0; begin < tokens.size(); begin += chunk) {
      const size_t n = std::min<size_t>(chunk, tokens.size() - begin);
      const BatchEntry e{slot, std::span<const int32_t>(tokens).subspan(begin, n), true};
      ASSERT_TRUE(backend->Forward({&e, 1}, &logits).ok());
      for (size_t i = 0; i < n; ++i) {
        // float32 engine against the float64 reference, as for the zero state: 1e-5.
        EXPECT_LT(RelL2(logits.Row(0, static_cast<int>(i)), ref[begin + i]), 1e-5)
            << c.arch << " chunk " << chunk << " position " << begin + i;
      }
    }
    ASSERT_TRUE(backend->pool().Release(slot).ok());
  }
}

INSTANTIATE_TEST_SUITE_P(Generations, StateTuning,
                         ::testing::Values(Case{"tiny-rwkv7-f32.safetensors", "tiny-rwkv7.json", "rwkv7"},
                                           Case{"tiny-rwkv6-f32.safetensors", "tiny-rwkv456.json", "rwkv6"}),
                         [](const auto& info) { return info.param.arch; });

TEST(StateTuningErrors, NameTheFileTheTensorAndTheExpectation) {
  const ModelConfig c = (*Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors")))->config();
  const int64_t H = c.n_head, N = c.head_size;
  const std::string path = testing::TempPath("state.safetensors");
  auto layers = [&](int n, std::vector<int64_t> shape) {
    std::vector<testing::F32Tensor> t;
    for (int l = 0; l < n; ++l) t.push_back({"blocks." + std::to_string(l) + ".att.time_state", shape, {}});
    return t;
  };
  testing::WriteSafetensors(path, layers(c.n_layer - 1, {H, N, N}));
  absl::Status st = LoadStateTuning(path, c).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("blocks." + std::to_string(c.n_layer - 1) + ".att.time_state is missing"),
            std::string::npos)
      << st;

  testing::WriteSafetensors(path, layers(c.n_layer, {H, N, N + 1}));
  st = LoadStateTuning(path, c).status();
  EXPECT_NE(st.message().find("has shape [" + std::to_string(H) + ", " + std::to_string(N) + ", " +
                              std::to_string(N + 1) + "], expected"),
            std::string::npos)
      << st;

  auto extra = layers(c.n_layer, {H, N, N});
  extra.push_back({"emb.weight", {4, 4}, {}});
  testing::WriteSafetensors(path, extra);
  st = LoadStateTuning(path, c).status();
  EXPECT_NE(st.message().find("unexpected tensor emb.weight"), std::string::npos) << st;

  const ModelConfig v4 = (*Model::Load(testing::Fixture("tiny-rwkv4-f32.safetensors")))->config();
  st = LoadStateTuning(testing::Fixture("tiny-rwkv7-state.safetensors"), v4).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("rwkv6 and rwkv7"), std::string::npos) << st;
  std::remove(path.c_str());
}

}  // namespace
}  // namespace rwkv
