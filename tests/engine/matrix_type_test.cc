// 16-bit weight matrices on the CPU backend (ModelOptions::matrices, --dtype): the kernel widens
// them exactly, a 16-bit checkpoint loaded as stored computes bitwise what its float32 widening
// computes, and every generation's logits with bf16 or f16 matrices stay within the format's
// error of the float64 reference.
#include <cmath>
#include <random>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/gemm.h"
#include "engine/model.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"

namespace rwkv {
namespace {

using ::rwkv::testing::Fixture;
using ::rwkv::testing::RelL2;

float Round(MatrixType t, float v) {
  return t == MatrixType::kBF16 ? Bf16ToFloat(FloatToBf16(v)) : F16ToFloat(FloatToF16(v));
}

// The 16-bit kernels equal the float32 kernel on the same (rounded) values, bit for bit: the
// widening is exact and the arithmetic is the float32 kernel's.
TEST(MatrixTypeGemm, SixteenBitPanelsEqualFloat32PanelsOfTheSameValues) {
  for (MatrixType t : {MatrixType::kBF16, MatrixType::kF16}) {
    for (const auto [rows, n, k] : {std::tuple{1, 100, 33}, {2, 64, 64}, {3, 17, 5}, {6, 48, 96}, {7, 129, 64},
                                    {17, 200, 96}}) {
      std::mt19937 rng(rows * 31 + n);
      std::normal_distribution<float> dist(0, 1);
      std::vector<float> x(static_cast<size_t>(rows) * k), w(static_cast<size_t>(n) * k);
      for (float& v : x) v = dist(rng);
      for (float& v : w) v = Round(t, dist(rng));
      std::vector<float> packed(PackedMatrix::Floats(n, k));
      std::vector<uint16_t> half(PackedMatrix::Floats(n, k));
      cpu::Pack(w.data(), n, k, packed.data());
      cpu::PackHalf(w.data(), n, k, t, half.data());
      const PackedMatrix wf{packed.data(), n, k};
      PackedMatrix wh{nullptr, n, k, half.data(), t};
      for (int i = 0; i < n; i += 7) ASSERT_EQ(wh.At(i, k / 2), w[static_cast<size_t>(i) * k + k / 2]);
      for (bool accumulate : {false, true}) {
        std::vector<float> yf(static_cast<size_t>(rows) * n, 0.5f), yh = yf;
        cpu::Linear(x.data(), rows, wf, yf.data(), n, accumulate, 2);
        cpu::Linear(x.data(), rows, wh, yh.data(), n, accumulate, 2);
        ASSERT_EQ(yf, yh) << MatrixTypeName(t) << " rows " << rows << " n " << n << " k " << k;
      }
    }
  }
}

// Logits of every position of `tokens`, one token per call.
std::vector<std::vector<float>> AllLogits(std::shared_ptr<const Model> model, const std::vector<int32_t>& tokens) {
  BackendOptions o;
  o.pool_slots = 1;
  o.max_step_tokens = 16;
  std::unique_ptr<Backend> backend = *CreateBackend(model, o);
  const int slot = *backend->pool().Acquire();
  Logits logits;
  const BatchEntry e{slot, std::span<const int32_t>(tokens), true};
  EXPECT_TRUE(backend->Forward({&e, 1}, &logits).ok());
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::span<const float> row = logits.Row(0, static_cast<int>(i));
    out.emplace_back(row.begin(), row.end());
  }
  return out;
}

std::vector<int32_t> Tokens(const std::string& manifest) {
  return nlohmann::json::parse(testing::ReadFile(Fixture(manifest)))["tokens"].get<std::vector<int32_t>>();
}

TEST(MatrixTypeModel, ASixteenBitCheckpointAsStoredComputesItsFloat32WideningBitwise) {
  const std::string file = Fixture("tiny-rwkv7-bf16.safetensors");
  absl::StatusOr<std::unique_ptr<Model>> stored = Model::Load(file);
  absl::StatusOr<std::unique_ptr<Model>> widened = Model::Load(file, {MatrixType::kF32});
  ASSERT_TRUE(stored.ok() && widened.ok());
  EXPECT_EQ((*stored)->matrix_type(), MatrixType::kBF16);
  EXPECT_EQ((*widened)->matrix_type(), MatrixType::kF32);
  EXPECT_LT((*stored)->weight_bytes(), (*widened)->weight_bytes());
  const std::vector<int32_t> tokens = testing::ManifestTokens();
  EXPECT_EQ(AllLogits(std::move(*stored), tokens), AllLogits(std::move(*widened), tokens));
}

struct Case {
  std::string file, reference, manifest;
};

// Tolerances, relative L2 of a position's logits against the float64 reference (float32
// matrices: 1e-5). A bf16 weight keeps 8 significand bits (relative rounding up to 2^-9 ~ 2e-3),
// an f16 one 11 (2^-12 ~ 2.4e-4). Rounding errors of independent weights add in quadrature in each
// product, and each layer hands its error to the next, so a position's logits are off by a small
// multiple of the per-weight rounding. Measured here (worst position of each fixture, 24
// positions, 2-4 layers of width 64-128): bf16 3.6e-3 (v4) .. 1.04e-2 (v7), f16 4.3e-4 (v4) ..
// 1.7e-3 (v7), the 8x between them the 3 bits the formats differ by. The bounds are about 3x the
// worst: a wrong widening (byte order, exponent bias, a panel offset) is off by O(1).
constexpr double kTolBf16 = 3e-2;
constexpr double kTolF16 = 5e-3;

class MatrixTypeParity : public ::testing::TestWithParam<Case> {};

TEST_P(MatrixTypeParity, SixteenBitMatricesStayWithinTheFormatsError) {
  const std::vector<int32_t> tokens = Tokens(GetParam().manifest);
  for (const auto [type, tol] : {std::pair{MatrixType::kBF16, kTolBf16}, std::pair{MatrixType::kF16, kTolF16}}) {
    absl::StatusOr<std::unique_ptr<Model>> m = Model::Load(Fixture(GetParam().file), {type});
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_EQ((*m)->matrix_type(), type);
    const std::vector<std::vector<double>> ref = testing::ReferenceLogits(GetParam().reference, (*m)->config().vocab);
    const std::vector<std::vector<float>> got = AllLogits(std::move(*m), tokens);
    ASSERT_EQ(got.size(), ref.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, RelL2(got[i], ref[i]));
    EXPECT_LT(worst, tol) << MatrixTypeName(type);
    RecordProperty(std::string("worst_rel_l2_") + MatrixTypeName(type), std::to_string(worst));
    std::printf("%s %s: worst relative L2 %.3g over %zu positions\n", GetParam().file.c_str(), MatrixTypeName(type),
                worst, got.size());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Generations, MatrixTypeParity,
    ::testing::Values(Case{"tiny-rwkv7-f32.safetensors", "tiny-rwkv7-f32.ref.f64", "tiny-rwkv7.json"},
                      Case{"tiny-rwkv6-f32.safetensors", "tiny-rwkv6-f32.ref.f64", "tiny-rwkv456.json"},
                      Case{"tiny-rwkv5.2-f32.safetensors", "tiny-rwkv5.2-f32.ref.f64", "tiny-rwkv456.json"},
                      Case{"tiny-rwkv5.1-f32.safetensors", "tiny-rwkv5.1-f32.ref.f64", "tiny-rwkv456.json"},
                      Case{"tiny-rwkv5.0-f32.safetensors", "tiny-rwkv5.0-f32.ref.f64", "tiny-rwkv456.json"},
                      Case{"tiny-rwkv4-f32.safetensors", "tiny-rwkv4-f32.ref.f64", "tiny-rwkv456.json"}),
    [](const auto& info) {
      std::string s = info.param.file.substr(5, info.param.file.find("-f32") - 5);
      for (char& c : s) c = c == '.' ? '_' : c;
      return s;
    });

TEST(MatrixTypeModel, ParseAndOptionsForBackends) {
  EXPECT_FALSE(ParseMatrixType("auto", "--dtype")->has_value());
  EXPECT_EQ(**ParseMatrixType("bf16", "--dtype"), MatrixType::kBF16);
  EXPECT_EQ(ParseMatrixType("int3", "--dtype").status().message(), "--dtype is 'int3'; it must be auto, f32, bf16, f16, int8 or int4");
  BackendOptions o;
  o.dtype = "f16";
  EXPECT_EQ(ModelOptionsFor(o)->matrices, MatrixType::kF16);
  o.kind = "cuda";  // The CUDA backend converts on upload: it loads float32.
  EXPECT_EQ(ModelOptionsFor(o)->matrices, MatrixType::kF32);
}

}  // namespace
}  // namespace rwkv
