// The CPU GEMM kernel against a float64 product and against OpenBLAS (the oracle it replaces).
#include "engine/cpu/gemm.h"

#include <cblas.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace rwkv {
namespace {

struct Problem {
  int rows, n, k;
};

// Random X [rows, k] and W [n, k] (row-major and packed), from a seed.
struct RandomGemm {
  RandomGemm(int rows, int n, int k, unsigned seed)
      : x(static_cast<size_t>(rows) * k), w(static_cast<size_t>(n) * k), packed(PackedMatrix::Floats(n, k)) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0, 1);
    for (float& v : x) v = dist(rng);
    for (float& v : w) v = dist(rng);
    cpu::Pack(w.data(), n, k, packed.data());
    W = PackedMatrix{packed.data(), n, k};
  }
  std::vector<float> x, w, packed;
  PackedMatrix W;
};

class GemmTest : public ::testing::TestWithParam<Problem> {};

TEST_P(GemmTest, MatchesFloat64AndOpenBlas) {
  const auto [rows, n, k] = GetParam();
  const RandomGemm g(rows, n, k, rows * 1000 + n * 7 + k);
  const std::vector<float>&x = g.x, &w = g.w;
  const PackedMatrix& W = g.W;
  for (int i = 0; i < n; i += std::max(1, n / 7)) {
    for (int j = 0; j < k; j += std::max(1, k / 5)) ASSERT_EQ(W.At(i, j), w[static_cast<size_t>(i) * k + j]);
  }
  const int ldy = n + 3;  // Y rows need not be contiguous.
  std::vector<float> y(static_cast<size_t>(rows) * ldy, 0.5f), blas(static_cast<size_t>(rows) * n, 0.5f);
  cpu::Linear(x.data(), rows, W, y.data(), ldy, /*accumulate=*/true, 2);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, k, 1.0f, x.data(), k, w.data(), k, 1.0f, blas.data(),
              n);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < n; ++c) {
      double ref = 0.5, mag = 0.5;
      for (int j = 0; j < k; ++j) {
        const double p = double{x[static_cast<size_t>(r) * k + j]} * w[static_cast<size_t>(c) * k + j];
        ref += p;
        mag += std::abs(p);
      }
      // Standard fp32 dot-product bound: each of the k+1 additions rounds by at most 2^-24 of the
      // running magnitude, so |error| <= (k + 1) * 2^-24 * sum|x_j w_j|.
      const double bound = (k + 1) * std::ldexp(1.0, -24) * mag;
      ASSERT_LE(std::abs(y[static_cast<size_t>(r) * ldy + c] - ref), bound) << r << "," << c;
      ASSERT_LE(std::abs(blas[static_cast<size_t>(r) * n + c] - ref), bound) << "OpenBLAS " << r << "," << c;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmTest,
                         ::testing::Values(Problem{1, 16, 8}, Problem{1, 100, 33}, Problem{2, 64, 64},
                                           Problem{3, 17, 5}, Problem{5, 250, 96}, Problem{6, 48, 128},
                                           Problem{7, 129, 64}, Problem{16, 768, 96}, Problem{64, 200, 70},
                                           Problem{65, 33, 64}, Problem{130, 96, 200}),
                         [](const ::testing::TestParamInfo<Problem>& info) {
                           return "r" + std::to_string(info.param.rows) + "_n" + std::to_string(info.param.n) + "_k" +
                                  std::to_string(info.param.k);
                         });

// Every output element is computed the same way whatever else is in the batch: a row alone and
// the same row among others give bitwise-identical results.
TEST(GemmInvarianceTest, RowsDoNotDependOnTheBatch) {
  const int n = 200, k = 96, rows = 17;
  const RandomGemm g(rows, n, k, 9);
  const std::vector<float>& x = g.x;
  const PackedMatrix& W = g.W;
  std::vector<float> all(static_cast<size_t>(rows) * n);
  cpu::Linear(x.data(), rows, W, all.data(), n, false, 2);
  for (int start = 0; start < rows; ++start) {
    for (int len : {1, 2, 3, 5}) {
      if (start + len > rows) continue;
      std::vector<float> part(static_cast<size_t>(len) * n);
      cpu::Linear(x.data() + static_cast<size_t>(start) * k, len, W, part.data(), n, false, 1);
      for (int i = 0; i < len * n; ++i)
        ASSERT_EQ(part[i], all[static_cast<size_t>(start) * n + i]) << start << " " << len;
    }
  }
}

}  // namespace
}  // namespace rwkv

namespace rwkv {
namespace {

// A fused activation equals the product followed by the activation, bitwise.
TEST(GemmActivationTest, FusedEqualsSeparate) {
  const int rows = 7, n = 40, k = 24;
  const RandomGemm g(rows, n, k, 3);
  std::vector<float> plain(static_cast<size_t>(rows) * n), fused(plain.size());
  cpu::Linear(g.x.data(), rows, g.W, plain.data(), n, false, 2);
  const std::vector<std::pair<cpu::Activation, float (*)(float)>> acts = {
      {cpu::Activation::kTanh, [](float v) { return std::tanh(v); }},
      {cpu::Activation::kSigmoid, [](float v) { return 1.0f / (1.0f + std::exp(-v)); }},
      {cpu::Activation::kReluSquare, [](float v) { return v > 0.0f ? v * v : 0.0f; }},
  };
  for (const auto& [act, fn] : acts) {
    cpu::Linear(g.x.data(), rows, g.W, fused.data(), n, false, 2, act);
    for (size_t i = 0; i < plain.size(); ++i) ASSERT_EQ(fused[i], fn(plain[i])) << static_cast<int>(act) << " " << i;
  }
}

}  // namespace
}  // namespace rwkv
