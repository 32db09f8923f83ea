// RWKV-4, RWKV-5.0/5.1/5.2 (Eagle) and RWKV-6 (Finch) on the CPU backend against the float64 references
// (tests/reference/rwkv456_ref.py, cross-checked against the official package), from the .pth and
// the .safetensors fixtures.
#include "engine/backend.h"
#include "engine/model.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"

namespace rwkv {
namespace {

using ::rwkv::testing::RelL2;

// The engine computes in float32 with float accumulators in other orders than the float64
// reference: 1e-5 relative L2 per position, as for RWKV-7.
constexpr double kTol = 1e-5;

struct Case {
  std::string file, reference;
  Architecture arch;
};

class GenerationParity : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const nlohmann::json manifest = nlohmann::json::parse(testing::ReadFile(testing::Fixture("tiny-rwkv456.json")));
    tokens_ = manifest["tokens"].get<std::vector<int32_t>>();
    auto m = Model::Load(testing::Fixture(GetParam().file));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    ASSERT_EQ(model_->config().arch, GetParam().arch);
    ref_ = testing::ReferenceLogits(GetParam().reference, model_->config().vocab);
    ASSERT_EQ(ref_.size(), tokens_.size());
    BackendOptions o;
    o.pool_slots = 3;
    o.max_step_tokens = 16;  // Smaller than the prompt: calls split internally too.
    backend_ = *CreateBackend(model_, o);
  }
  std::shared_ptr<const Model> model_;
  std::unique_ptr<Backend> backend_;
  std::vector<int32_t> tokens_;
  std::vector<std::vector<double>> ref_;
};

TEST_P(GenerationParity, ChunkedAndOneTokenEveryPosition) {
  for (int chunk : {1, 5, static_cast<int>(tokens_.size())}) {
    const int slot = *backend_->pool().Acquire();
    Logits logits;
    for (size_t begin = 0; begin < tokens_.size(); begin += chunk) {
      const size_t n = std::min<size_t>(chunk, tokens_.size() - begin);
      const BatchEntry e{slot, std::span<const int32_t>(tokens_).subspan(begin, n), true};
      ASSERT_TRUE(backend_->Forward({&e, 1}, &logits).ok());
      for (size_t i = 0; i < n; ++i) {
        EXPECT_LT(RelL2(logits.Row(0, static_cast<int>(i)), ref_[begin + i]), kTol)
            << "chunk " << chunk << " position " << begin + i;
      }
    }
    ASSERT_TRUE(backend_->pool().Release(slot).ok());
  }
}

TEST_P(GenerationParity, BatchedWithAnotherSequence) {
  const int a = *backend_->pool().Acquire(), b = *backend_->pool().Acquire();
  Logits logits;
  // Entry 0: the fixture's prompt in 3-token pieces; entry 1: something else, one token per call.
  for (size_t begin = 0; begin < tokens_.size(); begin += 3) {
    const int32_t other = static_cast<int32_t>(begin % 7);
    const BatchEntry batch[] = {{a, std::span<const int32_t>(tokens_).subspan(begin, 3), false},
                                {b, std::span<const int32_t>(&other, 1), false}};
    ASSERT_TRUE(backend_->Forward(batch, &logits).ok());
    EXPECT_LT(RelL2(logits.Last(0), ref_[begin + 2]), kTol) << begin;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Files, GenerationParity,
    ::testing::Values(Case{"tiny-rwkv4-f32.pth", "tiny-rwkv4-f32.ref.f64", Architecture::kRwkv4},
                      Case{"tiny-rwkv4-f32.safetensors", "tiny-rwkv4-f32.ref.f64", Architecture::kRwkv4},
                      Case{"tiny-rwkv6-f32.pth", "tiny-rwkv6-f32.ref.f64", Architecture::kRwkv6},
                      Case{"tiny-rwkv6-f32.safetensors", "tiny-rwkv6-f32.ref.f64", Architecture::kRwkv6},
                      Case{"tiny-rwkv5.2-f32.pth", "tiny-rwkv5.2-f32.ref.f64", Architecture::kRwkv5_2},
                      Case{"tiny-rwkv5.2-f32.safetensors", "tiny-rwkv5.2-f32.ref.f64", Architecture::kRwkv5_2},
                      Case{"tiny-rwkv5.1-f32.pth", "tiny-rwkv5.1-f32.ref.f64", Architecture::kRwkv5_1},
                      Case{"tiny-rwkv5.1-f32.safetensors", "tiny-rwkv5.1-f32.ref.f64", Architecture::kRwkv5_1},
                      Case{"tiny-rwkv5.0-f32.pth", "tiny-rwkv5.0-f32.ref.f64", Architecture::kRwkv5_0},
                      Case{"tiny-rwkv5.0-f32.safetensors", "tiny-rwkv5.0-f32.ref.f64", Architecture::kRwkv5_0}),
    [](const auto& info) {
      std::string n = info.param.file.substr(5);  // Drop "tiny-".
      for (char& ch : n) {
        if (ch == '-' || ch == '.') ch = '_';
      }
      return n;
    });

}  // namespace
}  // namespace rwkv
