// 16-bit weight matrices on the CPU backend (ModelOptions::matrices, --dtype): the kernel widens
// them exactly, a 16-bit checkpoint loaded as stored computes bitwise what its float32 widening
// computes, and every generation's logits with bf16 or f16 matrices stay within the format's
// error of the float64 reference.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/gemm.h"
#include "engine/model.h"
#include "engine/tensor_file.h"
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
    for (const auto& [rows, n, k] : {std::tuple{1, 100, 33}, {2, 64, 64}, {3, 17, 5}, {6, 48, 96}, {7, 129, 64},
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

// The quantization rule of engine/packed_matrix.h and engine/cpu/gemm.cc, written again from
// their comments in float64: codes per group of 32, the weight's group scale rounded to float16.
struct Quantized {
  std::vector<double> values;  // Dequantized, row-major.
};
Quantized QuantizeWeights(const std::vector<float>& w, int n, int k, MatrixType t) {
  Quantized out{std::vector<double>(w.size())};
  for (int r = 0; r < n; ++r) {
    for (int j0 = 0; j0 < k; j0 += kQuantGroup) {
      const int j1 = std::min(k, j0 + kQuantGroup);
      float extreme = 0;
      for (int j = j0; j < j1; ++j) {
        if (std::fabs(w[r * k + j]) > std::fabs(extreme)) extreme = w[r * k + j];
      }
      const double s = F16ToFloat(FloatToF16(t == MatrixType::kInt4 ? extreme / -8.0f : std::fabs(extreme) / 127.0f));
      for (int j = j0; j < j1; ++j) {
        const double q = s == 0 ? 0
                                : std::clamp<double>(std::nearbyint(w[r * k + j] / s), t == MatrixType::kInt4 ? -8 : -127,
                                                     t == MatrixType::kInt4 ? 7 : 127);
        out.values[r * k + j] = q * s;
      }
    }
  }
  return out;
}
// An activation row as the integer kernel sees it: codes of 8 bits per group of 32, scale max/127.
std::vector<double> QuantizeActivations(const float* x, int k) {
  std::vector<double> out(k);
  for (int j0 = 0; j0 < k; j0 += kQuantGroup) {
    const int j1 = std::min(k, j0 + kQuantGroup);
    double amax = 0;
    for (int j = j0; j < j1; ++j) amax = std::max(amax, std::fabs(double{x[j]}));
    for (int j = j0; j < j1; ++j) out[j] = amax == 0 ? 0 : std::nearbyint(x[j] * 127.0 / amax) * (amax / 127.0);
  }
  return out;
}

// Quantized panels: At() gives the dequantized weights of the rule above, and the integer kernel
// computes sum_g s_w s_x (integer dot) in float32: against the float64 product of the dequantized
// weights and activations, the error is float32 accumulation over k / 32 group terms, each exactly
// an integer times a rounded scale product (relative 2^-24 each): 1e-5 of the row's magnitude is
// ample for k <= 200 and catches a wrong code, nibble, scale or panel offset (errors of O(1)).
TEST(MatrixTypeGemm, QuantizedPanelsComputeTheirDequantizedProduct) {
  for (MatrixType t : {MatrixType::kInt8, MatrixType::kInt4}) {
    for (const auto& [rows, n, k] : {std::tuple{1, 100, 33}, {2, 64, 64}, {3, 17, 5}, {4, 48, 96}, {5, 129, 64},
                                     {7, 70, 200}, {17, 200, 96}, {49, 70, 200}, {64, 33, 96}}) {
      std::mt19937 rng(rows * 31 + n);
      std::normal_distribution<float> dist(0, 1);
      std::vector<float> x(static_cast<size_t>(rows) * k), w(static_cast<size_t>(n) * k);
      for (float& v : x) v = dist(rng);
      for (float& v : w) v = dist(rng);
      x[0] = 0;  // A zero, and a group of zeros in row 0 of the weights.
      for (int j = 0; j < std::min(k, kQuantGroup); ++j) w[j] = 0;
      std::vector<uint8_t> codes(PackedMatrix::CodeBytes(n, k, t));
      std::vector<uint16_t> scales(PackedMatrix::Scales(n, k));
      ASSERT_TRUE(cpu::PackQuantized(w.data(), n, k, t, codes.data(), scales.data()));
      PackedMatrix wq{nullptr, n, k, nullptr, t, codes.data(), scales.data()};
      const Quantized ref = QuantizeWeights(w, n, k, t);
      for (int r = 0; r < n; ++r) {
        for (int j = 0; j < k; ++j) ASSERT_EQ(wq.At(r, j), ref.values[r * k + j]) << MatrixTypeName(t) << " " << r << "," << j;
      }
      for (bool accumulate : {false, true}) {
        std::vector<float> y(static_cast<size_t>(rows) * n, 0.5f);
        cpu::Linear(x.data(), rows, wq, y.data(), n, accumulate, 2);
        for (int m = 0; m < rows; ++m) {
          const std::vector<double> xq = QuantizeActivations(x.data() + m * k, k);
          for (int r = 0; r < n; ++r) {
            double want = accumulate ? 0.5 : 0, mag = 0;
            for (int j = 0; j < k; ++j) {
              want += xq[j] * ref.values[r * k + j];
              mag += std::fabs(xq[j] * ref.values[r * k + j]);
            }
            ASSERT_NEAR(y[m * n + r], want, 1e-5 * (mag + 1)) << MatrixTypeName(t) << " rows " << rows << " n " << n
                                                             << " k " << k << " at " << m << "," << r;
          }
        }
      }
    }
  }
}

// A row's result does not depend on the rows beside it (the batch), bit for bit: 53 rows are
// quantized in parallel and run in blocks of 4 and a remainder, one row alone.
TEST(MatrixTypeGemm, QuantizedRowsDoNotDependOnTheBatch) {
  const int n = 96, k = 1300, rows = 53;
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0, 1);
  std::vector<float> x(static_cast<size_t>(rows) * k), w(static_cast<size_t>(n) * k);
  for (float& v : x) v = dist(rng);
  for (float& v : w) v = dist(rng);
  for (MatrixType t : {MatrixType::kInt8, MatrixType::kInt4}) {
    std::vector<uint8_t> codes(PackedMatrix::CodeBytes(n, k, t));
    std::vector<uint16_t> scales(PackedMatrix::Scales(n, k));
    ASSERT_TRUE(cpu::PackQuantized(w.data(), n, k, t, codes.data(), scales.data()));
    const PackedMatrix wq{nullptr, n, k, nullptr, t, codes.data(), scales.data()};
    std::vector<float> all(static_cast<size_t>(rows) * n);
    cpu::Linear(x.data(), rows, wq, all.data(), n, false, 2);
    for (int m = 0; m < rows; ++m) {
      std::vector<float> one(n);
      cpu::Linear(x.data() + m * k, 1, wq, one.data(), n, false, 1);
      ASSERT_EQ(one, std::vector<float>(all.begin() + m * n, all.begin() + (m + 1) * n)) << MatrixTypeName(t) << " row " << m;
    }
  }
}

// A non-finite activation makes its row's outputs NaN, as a float product would; other rows are
// untouched.
TEST(MatrixTypeGemm, QuantizedProductsOfNonFiniteActivationsAreNaN) {
  const int n = 16, k = 64;
  std::vector<float> w(n * k, 0.25f);
  std::vector<uint8_t> codes(PackedMatrix::CodeBytes(n, k, MatrixType::kInt8));
  std::vector<uint16_t> scales(PackedMatrix::Scales(n, k));
  for (const int rows : {2, 50}) {  // One row block, and several with a remainder.
    std::vector<float> x(rows * k, 1.0f);
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      for (MatrixType t : {MatrixType::kInt8, MatrixType::kInt4}) {
        ASSERT_TRUE(cpu::PackQuantized(w.data(), n, k, t, codes.data(), scales.data()));
        const PackedMatrix wq{nullptr, n, k, nullptr, t, codes.data(), scales.data()};
        x[40] = bad;
        std::vector<float> y(rows * n);
        cpu::Linear(x.data(), rows, wq, y.data(), n, false, 1);
        for (int r = 0; r < n; ++r) {
          EXPECT_TRUE(std::isnan(y[r])) << MatrixTypeName(t) << " " << r;
          // 64 x 1 x 0.25, with 0.25 as q * s: s is float16, relative error up to 2^-11.
          for (int m = 1; m < rows; ++m) {
            EXPECT_NEAR(y[m * n + r], 16.0f, 16.0f * 0x1p-11f) << MatrixTypeName(t) << " rows " << rows << " " << r;
          }
        }
      }
    }
  }
}

TEST(MatrixTypeGemm, QuantizingRefusesNonFiniteAndOutOfRangeWeights) {
  std::vector<float> w(16 * 32, 0.5f);
  std::vector<uint8_t> codes(PackedMatrix::CodeBytes(16, 32, MatrixType::kInt8));
  std::vector<uint16_t> scales(PackedMatrix::Scales(16, 32));
  w[5] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(cpu::PackQuantized(w.data(), 16, 32, MatrixType::kInt8, codes.data(), scales.data()));
  w[5] = 1e12f;  // Scale 1e12 / 127: beyond float16.
  EXPECT_FALSE(cpu::PackQuantized(w.data(), 16, 32, MatrixType::kInt8, codes.data(), scales.data()));
  w[5] = 1e6f;
  EXPECT_TRUE(cpu::PackQuantized(w.data(), 16, 32, MatrixType::kInt8, codes.data(), scales.data()));
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

// Quantized matrices (group 32, float16 scales; activations quantized per group of 32 to 8 bits
// in the products). An int8 code's rounding is up to s/2 = max|w|/254 per weight, about 2^-8
// relative to the group's largest, the same order as bf16's 2^-9 per weight but relative to the
// group maximum, plus the 8-bit activation codes: a small multiple of bf16's error. int4 keeps 16
// levels, rounding up to max|w|/16: 16x int8's step. Measured here (worst position of each fixture,
// 24 positions, 2-4 layers of width 64-128 with uniform random weights, the hardest case for a
// max-scaled code): int8 1.6e-2 (v4) .. 5.9e-2 (v5.0), int4 (head int8) 0.14 (v4) .. 0.60 (v7).
// int8's bound is 2x its worst. int4's is 1.5x: logits of unrelated models differ by rel L2 ~1.4,
// so the bound says "the same model, coarsely"; the kernel's exactness over the quantized values
// is pinned by QuantizedPanelsComputeTheirDequantizedProduct above.
constexpr double kTolInt8 = 0.12;
constexpr double kTolInt4 = 0.9;

// Greedy agreement over 256 steps: the float32 model's greedy continuation of the fixture prompt
// is fed to both models, and at each step the top token of the quantized model's logits is
// compared with the float32 one's (the teacher-forced top-1 agreement, which does not let one early
// divergence decide the rest). Fixture models are random and tiny, so their logits are flatter
// than a trained model's (close runners-up): a strict test of the ordering.
struct Agreement {
  int agree = 0, steps = 0;
  double rate() const { return steps ? double(agree) / steps : 0; }
};
int ArgMax(std::span<const float> row) { return static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin()); }
Agreement GreedyAgreement(std::shared_ptr<const Model> ref, std::shared_ptr<const Model> test,
                          const std::vector<int32_t>& prompt, int steps) {
  BackendOptions o;
  o.pool_slots = 1;
  o.max_step_tokens = 64;
  std::unique_ptr<Backend> a = *CreateBackend(ref, o), b = *CreateBackend(test, o);
  const int sa = *a->pool().Acquire(), sb = *b->pool().Acquire();
  Logits la, lb;
  std::vector<int32_t> next = prompt;
  Agreement out;
  for (int i = 0; i <= steps; ++i) {
    const BatchEntry ea{sa, std::span<const int32_t>(next), false}, eb{sb, std::span<const int32_t>(next), false};
    EXPECT_TRUE(a->Forward({&ea, 1}, &la).ok());
    EXPECT_TRUE(b->Forward({&eb, 1}, &lb).ok());
    if (i == steps) break;
    const int ta = ArgMax(la.Row(0, 0)), tb = ArgMax(lb.Row(0, 0));
    out.agree += ta == tb;
    ++out.steps;
    next = {ta};
  }
  return out;
}

class MatrixTypeParity : public ::testing::TestWithParam<Case> {};

TEST_P(MatrixTypeParity, EveryMatrixTypeStaysWithinItsFormatsError) {
  const std::vector<int32_t> tokens = Tokens(GetParam().manifest);
  for (const auto& [type, tol] : {std::pair{MatrixType::kBF16, kTolBf16}, std::pair{MatrixType::kF16, kTolF16},
                                  std::pair{MatrixType::kInt8, kTolInt8}, std::pair{MatrixType::kInt4, kTolInt4}}) {
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

// Minimum teacher-forced greedy agreement with float32 over 256 steps. Measured here (worst
// fixture): bf16 0.984, f16 1.000, int8 0.941, int4 0.543 (v5.0; v4 0.820). Bounds below the worst
// by a margin for other CPUs' rounding; a broken kernel agrees at about chance (1 / vocab).
constexpr double kAgreeHalf = 0.9;
constexpr double kAgreeInt8 = 0.85;
constexpr double kAgreeInt4 = 0.4;

TEST_P(MatrixTypeParity, GreedyAgreementOver256Tokens) {
  const std::vector<int32_t> prompt = Tokens(GetParam().manifest);
  std::shared_ptr<const Model> f32 = *Model::Load(Fixture(GetParam().file), {MatrixType::kF32});
  for (const auto& [type, min_rate] : {std::pair{MatrixType::kBF16, kAgreeHalf}, std::pair{MatrixType::kF16, kAgreeHalf},
                                       std::pair{MatrixType::kInt8, kAgreeInt8}, std::pair{MatrixType::kInt4, kAgreeInt4}}) {
    std::shared_ptr<const Model> m = *Model::Load(Fixture(GetParam().file), {type});
    const Agreement a = GreedyAgreement(f32, m, prompt, 256);
    EXPECT_GE(a.rate(), min_rate) << MatrixTypeName(type) << ": " << a.agree << " of " << a.steps;
    RecordProperty(std::string("greedy_agreement_") + MatrixTypeName(type), std::to_string(a.rate()));
    std::printf("%s %s: greedy agreement %d of %d (%.3f)\n", GetParam().file.c_str(), MatrixTypeName(type), a.agree,
                a.steps, a.rate());
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

// A checkpoint whose weight int8 cannot hold (a float16 scale overflows) is refused at load,
// naming the tensor; the same file loads as f32.
TEST(MatrixTypeModel, AWeightBeyondTheQuantizedRangeIsRefusedNamingTheTensor) {
  absl::StatusOr<std::unique_ptr<TensorFile>> f = TensorFile::Open(Fixture("tiny-rwkv7-f32.safetensors"));
  ASSERT_TRUE(f.ok());
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const TensorInfo& t : (*f)->tensors()) {
    std::vector<float> v(t.numel());
    CopyToFloat(t, v.data());
    if (t.name == "blocks.1.ffn.value.weight") v[7] = 1e12f;
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + v.size() * 4}}};
    data.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  }
  const std::string text = header.dump();
  const uint64_t len = text.size();
  const std::string path = ::testing::TempDir() + "/huge-weight.safetensors";
  testing::WriteFile(path, std::string(reinterpret_cast<const char*>(&len), 8) + text + data);
  absl::StatusOr<std::unique_ptr<Model>> q = Model::Load(path, {MatrixType::kInt8});
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(q.status().message().find("tensor blocks.1.ffn.value.weight: a weight in rows [0, 16)"), std::string::npos)
      << q.status();
  EXPECT_TRUE(Model::Load(path, {MatrixType::kF32}).ok());
  std::remove(path.c_str());
}

TEST(MatrixTypeModel, ParseAndOptionsForBackends) {
  EXPECT_FALSE(ParseMatrixType("auto", "--dtype")->has_value());
  EXPECT_EQ(**ParseMatrixType("bf16", "--dtype"), MatrixType::kBF16);
  EXPECT_EQ(ParseMatrixType("int3", "--dtype").status().message(), "--dtype is 'int3'; it must be auto, f32, bf16, f16, int8 or int4");
  BackendOptions o;
  o.dtype = "f16";
  EXPECT_EQ(ModelOptionsFor(o)->matrices, MatrixType::kF16);
  o.kind = "cuda";  // The CUDA backend converts on upload: it loads float32.
  EXPECT_EQ(ModelOptionsFor(o)->matrices, MatrixType::kF32);
  o.dtype = "int4";  // Quantized matrices are the CPU kernel's.
  EXPECT_EQ(ModelOptionsFor(o).status().message(), "dtype int4 runs on the cpu backend only; cuda takes f32, f16 or bf16");
  o.kind = "cpu";
  EXPECT_EQ(ModelOptionsFor(o)->matrices, MatrixType::kInt4);
}

}  // namespace
}  // namespace rwkv
