// The CUDA backend against the CPU backend (the oracle), op by op and for the whole model. Every
// test skips itself when no CUDA device is visible.
#include "engine/cuda/cuda_backend.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "absl/strings/match.h"
#include "engine/backend.h"
#include "engine/cpu/kernels.h"
#include "engine/cuda/cuda_device.h"
#include "engine/cuda/cuda_util.h"
#include "engine/cuda/gemv.h"
#include "engine/cuda/ops.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"

namespace rwkv {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device visible"

double RelL2(std::span<const float> got, std::span<const float> want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    den += double{want[i]} * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Device copies of host vectors, freed at the end of the test.
class Dev {
 public:
  ~Dev() {
    for (void* p : ptrs_) cudaFree(p);
  }
  float* Put(const std::vector<float>& v) {
    float* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, v.size() * 4 + 4), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ptrs_.push_back(p);
    return p;
  }
  int32_t* PutInts(const std::vector<int32_t>& v) {
    int32_t* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, v.size() * 4 + 4), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ptrs_.push_back(p);
    return p;
  }
  static std::vector<float> Get(const float* p, size_t n) {
    std::vector<float> v(n);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(v.data(), p, n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }

 private:
  std::vector<void*> ptrs_;
};

std::vector<float> Random(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

TEST(CudaOps, LayerNormMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const int rows = 7, C = 768;
  const auto x = Random(rows * C, -3, 3, 1), w = Random(C, 0.5f, 1.5f, 2), b = Random(C, -1, 1, 3);
  std::vector<float> want(rows * C);
  cpu::LayerNormRows(x.data(), rows, C, w.data(), b.data(), want.data());
  Dev d;
  float* out = d.Put(std::vector<float>(rows * C));
  cuda::LayerNorm(d.Put(x), nullptr, rows, C, d.Put(w), d.Put(b), cpu::kLayerNormEps, out, nullptr);
  // Float sums in another order than the CPU's double accumulators: a few ulps of the output.
  EXPECT_LT(RelL2(Dev::Get(out, rows * C), want), 1e-6);
}

TEST(CudaOps, Wkv7MatchesCpuOverAChunk) {
  SKIP_WITHOUT_GPU();
  const int H = 2, N = 64, C = H * N, T = 5;
  auto r = Random(T * C, -1, 1, 4), dd = Random(T * C, 0.5f, 1, 5), k = Random(T * C, -1, 1, 6),
       v = Random(T * C, -1, 1, 7), a = Random(T * C, -0.2f, 0.2f, 8), bb = Random(T * C, -0.2f, 0.2f, 9);
  std::vector<float> S0 = Random(H * N * N, -0.5f, 0.5f, 10), S = S0, want(T * C);
  for (int h = 0; h < H; ++h) {
    cpu::Wkv7Head(S.data() + h * N * N, N, T, C, r.data() + h * N, dd.data() + h * N, k.data() + h * N,
                  v.data() + h * N, a.data() + h * N, bb.data() + h * N, want.data() + h * N);
  }
  Dev d;
  float* pool = d.Put(S0);
  float* y = d.Put(std::vector<float>(T * C));
  cuda::DeviceTables t;
  t.piece_slot = d.PutInts({0});
  t.piece_row = d.PutInts({0});
  t.piece_count = d.PutInts({T});
  cuda::Wkv7({pool, H * N * N, 0}, t, 1, H, N, C, d.Put(r), d.Put(dd), d.Put(k), d.Put(v), d.Put(a), d.Put(bb), y,
             nullptr);
  // Same operation order per element as the CPU loop; fused multiply-adds differ: 1e-5.
  EXPECT_LT(RelL2(Dev::Get(y, T * C), want), 1e-5);
  EXPECT_LT(RelL2(Dev::Get(pool, H * N * N), S), 1e-5);
}

// RWKV-5/6: a per-token decay (stride C, RWKV-6) and one decay vector for every token (stride 0, RWKV-5).
TEST(CudaOps, Wkv6MatchesCpuOverAChunk) {
  SKIP_WITHOUT_GPU();
  const int H = 2, N = 64, C = H * N, T = 5;
  auto r = Random(T * C, -1, 1, 70), k = Random(T * C, -1, 1, 71), v = Random(T * C, -1, 1, 72),
       u = Random(C, -1, 1, 73);
  for (int d_stride : {C, 0}) {
    const auto dd = Random(d_stride == 0 ? C : T * C, 0.5f, 1, 74);
    std::vector<float> per_token = dd;  // The CPU kernel reads a decay row per token.
    if (d_stride == 0) {
      per_token.clear();
      for (int t = 0; t < T; ++t) per_token.insert(per_token.end(), dd.begin(), dd.end());
    }
    std::vector<float> S0 = Random(H * N * N, -0.5f, 0.5f, 75), S = S0, want(T * C);
    for (int h = 0; h < H; ++h) {
      cpu::Wkv6Head(S.data() + h * N * N, N, T, C, r.data() + h * N, per_token.data() + h * N, k.data() + h * N,
                    v.data() + h * N, u.data() + h * N, want.data() + h * N);
    }
    Dev d;
    float* pool = d.Put(S0);
    float* y = d.Put(std::vector<float>(T * C));
    cuda::DeviceTables t;
    t.piece_slot = d.PutInts({0});
    t.piece_row = d.PutInts({0});
    t.piece_count = d.PutInts({T});
    cuda::Wkv6({pool, H * N * N, 0}, t, 1, H, N, C, d.Put(r), d.Put(dd), d_stride, d.Put(k), d.Put(v), d.Put(u), y,
               nullptr);
    // Same operations per element as the CPU loop; fused multiply-adds differ: 1e-5.
    EXPECT_LT(RelL2(Dev::Get(y, T * C), want), 1e-5) << "d_stride " << d_stride;
    EXPECT_LT(RelL2(Dev::Get(pool, H * N * N), S), 1e-5) << "d_stride " << d_stride;
  }
}

TEST(CudaOps, Wkv4MatchesTheMaxTrickLoopOverTwoPieces) {
  SKIP_WITHOUT_GPU();
  const int C = 200, T = 4, slot_floats = 3 * C + 8;  // Pieces: rows 0-2 in slot 1, row 3 in slot 0.
  auto r = Random(T * C, 0, 1, 80), k = Random(T * C, -3, 3, 81), v = Random(T * C, -1, 1, 82),
       w = Random(C, -2, -0.01f, 83), u = Random(C, -1, 1, 84);
  std::vector<float> pool = Random(2 * slot_floats, 0.1f, 1, 85), want_pool = pool, want(T * C);
  const int slot_of[] = {1, 1, 1, 0};
  for (int row = 0; row < T; ++row) {
    float* st = want_pool.data() + slot_of[row] * slot_floats + 4;
    for (int i = 0; i < C; ++i) {
      float &aa = st[i], &bb = st[C + i], &pp = st[2 * C + i];
      const float kk = k[row * C + i], vv = v[row * C + i];
      float q = std::max(pp, u[i] + kk), e1 = std::exp(pp - q), e2 = std::exp(u[i] + kk - q);
      want[row * C + i] = r[row * C + i] * (e1 * aa + e2 * vv) / (e1 * bb + e2);
      q = std::max(pp + w[i], kk);
      e1 = std::exp(pp + w[i] - q);
      e2 = std::exp(kk - q);
      aa = e1 * aa + e2 * vv;
      bb = e1 * bb + e2;
      pp = q;
    }
  }
  Dev d;
  float* dpool = d.Put(pool);
  float* y = d.Put(std::vector<float>(T * C));
  cuda::DeviceTables t;
  t.piece_slot = d.PutInts({1, 0});
  t.piece_row = d.PutInts({0, 3});
  t.piece_count = d.PutInts({3, 1});
  cuda::Wkv4({dpool, slot_floats, 4}, t, 2, C, d.Put(r), d.Put(k), d.Put(v), d.Put(w), d.Put(u), y,
             cuda::WeightType::kF32, nullptr);
  // The same operations; the device's expf and FMA contraction differ by ulps: 1e-5.
  EXPECT_LT(RelL2(Dev::Get(y, T * C), want), 1e-5);
  EXPECT_LT(RelL2(Dev::Get(dpool, 2 * slot_floats), want_pool), 1e-5);
}

TEST(CudaOps, GroupNormBonusGateMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const int rows = 3, H = 4, N = 16, C = H * N;
  auto y = Random(rows * C, -2, 2, 11), r = Random(rows * C, -1, 1, 12), k = Random(rows * C, -1, 1, 13),
       v = Random(rows * C, -1, 1, 14), g = Random(rows * C, 0, 1, 15), r_k = Random(C, -1, 1, 16),
       w = Random(C, 0.5f, 1.5f, 17), b = Random(C, -0.5f, 0.5f, 18);
  std::vector<float> want = y;
  cpu::GroupNormRows(want.data(), rows, C, N, w.data(), b.data());
  for (int row = 0; row < rows; ++row) {
    for (int h = 0; h < H; ++h) {
      float bonus = 0;
      for (int j = 0; j < N; ++j) bonus += r[row * C + h * N + j] * k[row * C + h * N + j] * r_k[h * N + j];
      for (int j = 0; j < N; ++j) {
        const int o = row * C + h * N + j;
        want[o] = (want[o] + bonus * v[o]) * g[o];
      }
    }
  }
  Dev d;
  float* out = d.Put(std::vector<float>(rows * C));
  cuda::GroupNormBonusGate(d.Put(y), d.Put(r), d.Put(k), d.Put(v), d.Put(g), d.Put(r_k), d.Put(w), d.Put(b),
                           cpu::kGroupNormEps, rows, C, N, out, cuda::WeightType::kF32, nullptr);
  EXPECT_LT(RelL2(Dev::Get(out, rows * C), want), 1e-5);  // Float reductions in another order.
}

TEST(CudaOps, EmbedAndActivationsMatchCpu) {
  SKIP_WITHOUT_GPU();
  const int V = 50, C = 96;
  const auto emb = Random(V * C, -2, 2, 30);
  Dev d;
  float* x = d.Put(std::vector<float>(3 * C));
  cuda::Embed(d.Put(emb), cuda::WeightType::kF32, d.PutInts({7, 0, 49}), 3, C, x, nullptr);
  const std::vector<float> got = Dev::Get(x, 3 * C);
  for (int r = 0; r < 3; ++r) {
    const int t = std::vector<int>{7, 0, 49}[r];
    EXPECT_TRUE(std::equal(got.begin() + r * C, got.begin() + (r + 1) * C, emb.begin() + t * C)) << r;
  }
  const auto in = Random(1000, -4, 4, 31);
  for (cuda::Act act : {cuda::Act::kNone, cuda::Act::kTanh, cuda::Act::kSigmoid, cuda::Act::kReluSquare}) {
    std::vector<float> want(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      const float v = in[i];
      want[i] = act == cuda::Act::kTanh      ? std::tanh(v)
                : act == cuda::Act::kSigmoid ? 1 / (1 + std::exp(-v))
                : act == cuda::Act::kReluSquare ? std::max(v, 0.0f) * std::max(v, 0.0f)
                                                : v;
    }
    float* out = d.Put(std::vector<float>(in.size()));
    cuda::Activate(d.Put(in), static_cast<int64_t>(in.size()), act, out, cuda::WeightType::kF32, nullptr);
    // Fast-math exp in the sigmoid: a few ulps.
    EXPECT_LT(RelL2(Dev::Get(out, in.size()), want), 1e-6) << static_cast<int>(act);
  }
}

TEST(CudaOps, TokenShiftReadsTheSlotForAPiecesFirstRowAndSavesItsLast) {
  SKIP_WITHOUT_GPU();
  const int C = 32, slot_floats = 100, offset = 10;
  // Two pieces: rows 0-2 in slot 1, row 3 in slot 0.
  const auto z = Random(4 * C, -1, 1, 40), mix = Random(C, 0, 1, 41);
  std::vector<float> pool = Random(2 * slot_floats, -1, 1, 42);
  std::vector<float> want(4 * C);
  for (int r = 0; r < 4; ++r) {
    const float* prev = r == 0 ? &pool[1 * slot_floats + offset] : r == 3 ? &pool[0 * slot_floats + offset] : &z[(r - 1) * C];
    for (int i = 0; i < C; ++i) want[r * C + i] = z[r * C + i] + (prev[i] - z[r * C + i]) * mix[i];
  }
  Dev d;
  float* dpool = d.Put(pool);
  float* out = d.Put(std::vector<float>(4 * C));
  cuda::DeviceTables t;
  t.row_piece = d.PutInts({0, 0, 0, 1});
  t.piece_slot = d.PutInts({1, 0});
  t.piece_row = d.PutInts({0, 3});
  t.piece_count = d.PutInts({3, 1});
  const cuda::StateView shift{dpool, slot_floats, offset};
  const float* dz = d.Put(z);
  cuda::TokenShiftMix(dz, 4, C, t, shift, cuda::MixSet{{d.Put(mix)}, {out}, 1}, cuda::WeightType::kF32, nullptr);
  cuda::SaveShift(dz, 2, C, t, shift, nullptr);
  // The same two operations per element; the device may fuse them into one FMA: 1e-6.
  EXPECT_LT(RelL2(Dev::Get(out, 4 * C), want), 1e-6);
  const std::vector<float> saved = Dev::Get(dpool, 2 * slot_floats);
  EXPECT_TRUE(std::equal(z.begin() + 2 * C, z.begin() + 3 * C, saved.begin() + 1 * slot_floats + offset));
  EXPECT_TRUE(std::equal(z.begin() + 3 * C, z.begin() + 4 * C, saved.begin() + 0 * slot_floats + offset));
}

// The decode kernel that fuses LayerNorm, TokenShiftMix and SaveShift equals the three, bit for
// bit (the same arithmetic in the same order), in f32 and f16 outputs, with an `add` term; with
// C = 96 in one block a row and C = 600 spread over three (the last one partly filled).
TEST(CudaOps, NormShiftMixSaveEqualsTheThreeKernelsItFuses) {
  SKIP_WITHOUT_GPU();
  for (int C : {96, 600}) {
    const int rows = 3, offset = 20, slot_floats = C + 2 * offset;
    const auto x = Random(rows * C, -2, 2, 50), w = Random(C, 0.5, 1.5, 51), b = Random(C, -0.1, 0.1, 52);
    const auto mix0 = Random(C, 0, 1, 53), mix1 = Random(C, 0, 1, 54), add = Random(rows * C, -0.2, 0.2, 55);
    const std::vector<float> pool = Random(4 * slot_floats, -1, 1, 56);
    for (cuda::WeightType wt : {cuda::WeightType::kF32, cuda::WeightType::kF16}) {
      Dev d;
      cuda::DeviceTables t;  // Decode: rows 0, 1, 2 are pieces 0, 1, 2 in slots 3, 0, 2.
      t.row_piece = d.PutInts({0, 1, 2});
      t.piece_slot = d.PutInts({3, 0, 2});
      t.piece_row = d.PutInts({0, 1, 2});
      t.piece_count = d.PutInts({1, 1, 1});
      const float* dx = d.Put(x);
      const float *dw = d.Put(w), *db = d.Put(b), *dm0 = d.Put(mix0), *dm1 = d.Put(mix1), *dadd = d.Put(add);
      auto run = [&](bool fused) {
        float* dpool = d.Put(pool);
        float* out0 = d.Put(std::vector<float>(rows * C));  // Room for f32; f16 uses half of it.
        float* out1 = d.Put(std::vector<float>(rows * C));
        cuda::MixSet m{{dm0, dm1}, {out0, out1}, 2};
        m.add[1] = dadd;
        const cuda::StateView shift{dpool, slot_floats, offset};
        if (fused) {
          cuda::NormShiftMixSave(dx, rows, C, dw, db, 1e-5f, t, shift, m, wt, nullptr);
        } else {
          float* z = d.Put(std::vector<float>(rows * C));
          cuda::LayerNorm(dx, nullptr, rows, C, dw, db, 1e-5f, z, nullptr);
          cuda::TokenShiftMix(z, rows, C, t, shift, m, wt, nullptr);
          cuda::SaveShift(z, rows, C, t, shift, nullptr);
        }
        std::vector<float> all = Dev::Get(out0, rows * C), o1 = Dev::Get(out1, rows * C),
                           p = Dev::Get(dpool, 4 * slot_floats);
        all.insert(all.end(), o1.begin(), o1.end());
        all.insert(all.end(), p.begin(), p.end());
        return all;
      };
      const std::vector<float> fused = run(true), separate = run(false);
      ASSERT_EQ(fused.size(), separate.size());
      EXPECT_EQ(0, std::memcmp(fused.data(), separate.data(), fused.size() * 4))
          << cuda::WeightTypeName(wt) << " C " << C;
      EXPECT_NE(fused, std::vector<float>(fused.size(), 0.0f));
    }
  }
}

// Our GEMV (projections of 1 to 8 rows) against float64 over the same operands: one launch of
// six jobs with every output kind and activation, rows with 16-byte loads and without (ldx of
// 1003, k = 8 below a warp), short LoRA-like rows; f32, f16 and bf16; 1, 2, 3, 5 and 8 rows.
// Operands are multiples of 1/256 in [-0.5, 0.5], exact in every type, so the products are exact
// and only the float32 sums and the output rounding differ from float64. Columns between n and
// ldy must be left as they were.
TEST(CudaOps, GemvMatchesFloat64ForEveryOutputAndType) {
  SKIP_WITHOUT_GPU();
  struct Shape {
    int n, k, ldx;
    cuda::Act act;
    cuda::GemvOut out;
  };
  const Shape shapes[] = {{300, 512, 512, cuda::Act::kNone, cuda::GemvOut::kF32},
                          {77, 1000, 1003, cuda::Act::kTanh, cuda::GemvOut::kTyped},
                          {129, 40, 40, cuda::Act::kSigmoid, cuda::GemvOut::kTyped},
                          {64, 256, 264, cuda::Act::kNone, cuda::GemvOut::kF32Add},
                          {200, 64, 64, cuda::Act::kReluSquare, cuda::GemvOut::kTyped},
                          {33, 8, 8, cuda::Act::kSilu, cuda::GemvOut::kF32}};
  auto act = [](double v, cuda::Act a) {
    switch (a) {
      case cuda::Act::kTanh:
        return std::tanh(v);
      case cuda::Act::kSigmoid:
        return 1 / (1 + std::exp(-v));
      case cuda::Act::kSilu:
        return v / (1 + std::exp(-v));
      case cuda::Act::kReluSquare:
        return v > 0 ? v * v : 0.0;
      default:
        return v;
    }
  };
  std::mt19937 rng(91);
  std::uniform_int_distribution<int> q(-128, 128);
  for (cuda::WeightType wt : {cuda::WeightType::kF32, cuda::WeightType::kF16, cuda::WeightType::kBF16}) {
    const size_t eb = cuda::WeightTypeBytes(wt);
    // Host values in the weight type's bytes, and back.
    auto to_bytes = [&](const std::vector<float>& v) {
      std::vector<char> out(v.size() * eb);
      for (size_t i = 0; i < v.size(); ++i) {
        if (wt == cuda::WeightType::kF32) {
          std::memcpy(out.data() + i * 4, &v[i], 4);
        } else if (wt == cuda::WeightType::kF16) {
          const __half h = __float2half_rn(v[i]);
          std::memcpy(out.data() + i * 2, &h, 2);
        } else {
          const __nv_bfloat16 h = __float2bfloat16_rn(v[i]);
          std::memcpy(out.data() + i * 2, &h, 2);
        }
      }
      return out;
    };
    auto from_bytes = [&](const char* p) {
      if (wt == cuda::WeightType::kF32) {
        float f;
        std::memcpy(&f, p, 4);
        return f;
      }
      if (wt == cuda::WeightType::kF16) {
        __half h;
        std::memcpy(&h, p, 2);
        return __half2float(h);
      }
      __nv_bfloat16 h;
      std::memcpy(&h, p, 2);
      return __bfloat162float(h);
    };
    for (int rows : {1, 2, 3, 5, 8}) {
      cuda::GemvBatch b;
      std::vector<void*> bufs;
      auto put = [&](const std::vector<char>& bytes) {
        void* p = nullptr;
        EXPECT_EQ(cudaMalloc(&p, bytes.size()), cudaSuccess);
        EXPECT_EQ(cudaMemcpy(p, bytes.data(), bytes.size(), cudaMemcpyHostToDevice), cudaSuccess);
        bufs.push_back(p);
        return p;
      };
      struct Host {
        std::vector<float> x, w, y0;
        int ldy;
      };
      std::vector<Host> host;
      for (const Shape& sh : shapes) {
        Host h;
        auto fill = [&](size_t n) {
          std::vector<float> v(n);
          for (float& f : v) f = q(rng) / 256.0f;
          return v;
        };
        h.x = fill(static_cast<size_t>(rows) * sh.ldx);
        h.w = fill(static_cast<size_t>(sh.n) * sh.k);
        h.ldy = sh.n + 3;
        h.y0 = fill(static_cast<size_t>(rows) * h.ldy);  // The sentinels and the accumulated term.
        const bool typed = sh.out == cuda::GemvOut::kTyped;
        cuda::GemvJob& j = b.job[b.jobs++];
        j.x = put(to_bytes(h.x));
        j.w = put(to_bytes(h.w));
        std::vector<char> y0(h.y0.size() * 4);
        std::memcpy(y0.data(), h.y0.data(), y0.size());
        j.y = put(typed ? to_bytes(h.y0) : y0);
        j.n = sh.n;
        j.k = sh.k;
        j.ldx = sh.ldx;
        j.ldy = h.ldy;
        j.act = sh.act;
        j.out = sh.out;
        host.push_back(std::move(h));
      }
      ASSERT_TRUE(cuda::PlanGemv(&b, static_cast<int>(eb)).ok());
      cuda::Gemv(b, rows, wt, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      for (int ji = 0; ji < b.jobs; ++ji) {
        const Shape& sh = shapes[ji];
        const Host& h = host[ji];
        const bool typed = sh.out == cuda::GemvOut::kTyped;
        const size_t ob = typed ? eb : 4;
        std::vector<char> got(static_cast<size_t>(rows) * h.ldy * ob);
        ASSERT_EQ(cudaMemcpy(got.data(), b.job[ji].y, got.size(), cudaMemcpyDeviceToHost), cudaSuccess);
        int bad = 0;
        for (int r = 0; r < rows; ++r) {
          for (int o = 0; o < h.ldy; ++o) {
            const size_t at = static_cast<size_t>(r) * h.ldy + o;
            float g;
            if (typed) {
              g = from_bytes(got.data() + at * eb);
            } else {
              std::memcpy(&g, got.data() + at * 4, 4);
            }
            const float before = typed ? from_bytes(to_bytes({h.y0[at]}).data()) : h.y0[at];
            if (o >= sh.n) {
              bad += g != before;  // Past n: untouched.
              continue;
            }
            double dot = 0, mag = 0;
            for (int i = 0; i < sh.k; ++i) {
              const double t =
                  double{h.x[static_cast<size_t>(r) * sh.ldx + i]} * h.w[static_cast<size_t>(o) * sh.k + i];
              dot += t;
              mag += std::abs(t);
            }
            double want = act(dot, sh.act);
            if (sh.out == cuda::GemvOut::kF32Add) want += h.y0[at];
            // float32 sums: at most k / lanes + 5 additions in sequence per term, 2^-24 each, so
            // 1e-5 of the terms' magnitudes bounds them; __expf-based activations: 1e-5 absolute
            // (with the slope of relu^2, 2|v| times the sum's error). A typed result is rounded
            // once more: half an ulp, 2^-11 (f16) or 2^-8 (bf16) relative, plus f16's subnormal step.
            double tol = 1e-5 * mag * (sh.act == cuda::Act::kReluSquare ? 1 + 2 * std::abs(dot) : 1) + 1e-5;
            if (typed && wt == cuda::WeightType::kF16) tol += std::abs(want) * std::ldexp(1.0, -11) + 6e-8;
            if (typed && wt == cuda::WeightType::kBF16) tol += std::abs(want) * std::ldexp(1.0, -8);
            if (!(std::abs(g - want) <= tol)) {
              if (++bad <= 3) {
                ADD_FAILURE() << cuda::WeightTypeName(wt) << " rows " << rows << " job " << ji << " [" << r << "," << o
                              << "]: got " << g << " want " << want << " tol " << tol;
              }
            }
          }
        }
        EXPECT_EQ(bad, 0) << cuda::WeightTypeName(wt) << " rows " << rows << " job " << ji;
      }
      for (void* p : bufs) cudaFree(p);
    }
  }
}

// The decode kernel that fuses the RWKV-7 preparation, recurrence and group norm (with bonus and
// gate) against the three kernels it replaces, run on copies of the same inputs: equal bit for
// bit (the same device code in the same block shape), output and state, in every weight type,
// for layer 0 (no value residual) and later layers, with N = 64 and N = 16 (a block of a whole
// warp with 16 threads off). Three pieces of one row each, in slots 2, 0 and 1.
TEST(CudaOps, Wkv7DecodeEqualsPrepWkvAndGroupNorm) {
  SKIP_WITHOUT_GPU();
  for (int N : {64, 16}) {
    for (cuda::WeightType wt : {cuda::WeightType::kF32, cuda::WeightType::kF16, cuda::WeightType::kBF16}) {
      for (bool layer0 : {true, false}) {
        const int rows = 3, H = 2, C = H * N, slots = 3;
        const int64_t slot_floats = int64_t{H} * N * N + 7;  // An offset inside the slot, as layers have.
        uint32_t seed = 200;
        auto vec = [&](int n, float lo, float hi) { return Random(n, lo, hi, seed++); };
        const auto r = vec(rows * C, -1, 1), v = vec(rows * C, -1, 1), vf = vec(rows * C, -1, 1),
                   vg = vec(rows * C, -1, 1), dd = vec(rows * C, -1, 1), al = vec(rows * C, -1, 1),
                   k = vec(rows * C, -1, 1), g = vec(rows * C, 0, 1), w0 = vec(C, -1, 1), a0 = vec(C, -1, 1),
                   v0 = vec(C, -1, 1), k_k = vec(C, 0.5f, 1.5f), k_a = vec(C, 0, 1), r_k = vec(C, -1, 1),
                   lw = vec(C, 0.5f, 1.5f), lb = vec(C, -1, 1), pool0 = vec(slots * slot_floats, -0.5f, 0.5f);
        auto run = [&](bool fused) {
          Dev d;
          float* pool = d.Put(pool0);
          float *gv = d.Put(v), *gd = d.Put(dd), *ga = d.Put(al), *gk = d.Put(k), *gvg = d.Put(vg), *gr = d.Put(r);
          const cuda::PrepArgs prep{
              gv,        gd,        ga,        gk,         gvg,       layer0 ? nullptr : d.Put(vf),
              d.Put(w0), d.Put(a0), d.Put(v0), d.Put(k_k), d.Put(k_a)};
          cuda::DeviceTables t;
          t.piece_slot = d.PutInts({2, 0, 1});
          t.piece_row = d.PutInts({0, 1, 2});
          t.piece_count = d.PutInts({1, 1, 1});
          const cuda::StateView S{pool, slot_floats, 7};
          float* out = d.Put(std::vector<float>(rows * C));  // Room for any output type.
          float *gg = d.Put(g), *grk = d.Put(r_k), *glw = d.Put(lw), *glb = d.Put(lb);
          if (fused) {
            cuda::Wkv7Decode(S, t, rows, H, N, C, prep, gr, gg, grk, glw, glb, cpu::kGroupNormEps, out, wt, nullptr);
          } else {
            float* y = d.Put(std::vector<float>(rows * C));
            cuda::TimeMixPrep(prep, rows, C, N, nullptr);
            cuda::Wkv7(S, t, rows, H, N, C, gr, gd, gk, gv, ga, gvg, y, nullptr);
            cuda::GroupNormBonusGate(y, gr, gk, gv, gg, grk, glw, glb, cpu::kGroupNormEps, rows, C, N, out, wt,
                                     nullptr);
          }
          EXPECT_EQ(cudaGetLastError(), cudaSuccess);
          std::vector<float> all = Dev::Get(out, rows * C);
          const std::vector<float> state = Dev::Get(pool, slots * slot_floats);
          all.insert(all.end(), state.begin(), state.end());
          return all;
        };
        const std::vector<float> fused = run(true), separate = run(false);
        ASSERT_EQ(fused.size(), separate.size());
        EXPECT_EQ(0, std::memcmp(fused.data(), separate.data(), fused.size() * 4))
            << "N " << N << " " << cuda::WeightTypeName(wt) << (layer0 ? " layer 0" : " layer > 0");
        EXPECT_NE(std::vector<float>(fused.begin(), fused.begin() + rows * C / 2),
                  std::vector<float>(rows * C / 2, 0.0f));
      }
    }
  }
}

TEST(CudaOps, TimeMixPrepMatchesTheCpuBackendsRowLoop) {
  SKIP_WITHOUT_GPU();
  const int rows = 3, H = 2, N = 16, C = H * N;
  auto v = Random(rows * C, -1, 1, 50), vf = Random(rows * C, -1, 1, 51), vg = Random(rows * C, -1, 1, 52),
       dd = Random(rows * C, -1, 1, 53), al = Random(rows * C, -1, 1, 54), k = Random(rows * C, -1, 1, 55);
  const auto w0 = Random(C, -1, 1, 56), a0 = Random(C, -1, 1, 57), v0 = Random(C, -1, 1, 58),
             k_k = Random(C, 0.5f, 1.5f, 59), k_a = Random(C, 0, 1, 60);
  Dev d;
  float *gv = d.Put(v), *gd = d.Put(dd), *ga = d.Put(al), *gk = d.Put(k), *gvg = d.Put(vg);
  cuda::TimeMixPrep({gv, gd, ga, gk, gvg, d.Put(vf), d.Put(w0), d.Put(a0), d.Put(v0), d.Put(k_k), d.Put(k_a)}, rows, C,
                    N, nullptr);
  // The CPU backend's loop (engine/cpu/cpu_backend.cc, TimeMix), layer > 0.
  auto sig = [](float x) { return 1.0f / (1.0f + std::exp(-x)); };
  std::vector<float> b(rows * C), a(rows * C);
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < C; ++i) {
      const int o = r * C + i;
      v[o] += (vf[o] - v[o]) * sig(v0[i] + vg[o]);
      dd[o] = std::exp(-static_cast<float>(std::exp(-0.5)) * sig(w0[i] + dd[o]));
      al[o] = sig(a0[i] + al[o]);
    }
    for (int h = 0; h < H; ++h) {
      float ss = 0;
      for (int j = 0; j < N; ++j) ss += (k[r * C + h * N + j] * k_k[h * N + j]) * (k[r * C + h * N + j] * k_k[h * N + j]);
      const float inv = 1.0f / std::max(std::sqrt(ss), 1e-12f);
      for (int j = 0; j < N; ++j) {
        const int o = r * C + h * N + j, c = h * N + j;
        const float kn = k[o] * k_k[c] * inv;
        a[o] = -kn;
        b[o] = kn * al[o];
        k[o] *= 1.0f + (al[o] - 1.0f) * k_a[c];
      }
    }
  }
  // Reductions and exp in another order: 1e-6.
  EXPECT_LT(RelL2(Dev::Get(gv, rows * C), v), 1e-6);
  EXPECT_LT(RelL2(Dev::Get(gd, rows * C), dd), 1e-6);
  EXPECT_LT(RelL2(Dev::Get(ga, rows * C), a), 1e-6);
  EXPECT_LT(RelL2(Dev::Get(gvg, rows * C), b), 1e-6);
  EXPECT_LT(RelL2(Dev::Get(gk, rows * C), k), 1e-6);
}

struct ModelCase {
  const char* file;
  const char* dtype;
  double tol;  // Relative L2 of the logits against the CPU backend.
};

// The prompt of a fixture's manifest (RWKV-7, or the RWKV-4/5/6 one).
std::vector<int32_t> FixtureTokens(const std::string& file) {
  if (absl::StartsWith(file, "tiny-rwkv7")) return testing::ManifestTokens();
  const nlohmann::json m = nlohmann::json::parse(testing::ReadFile(testing::Fixture("tiny-rwkv456.json")));
  return m["tokens"].get<std::vector<int32_t>>();
}

class CudaModel : public ::testing::TestWithParam<ModelCase> {};

// Logits of every position of the manifest's tokens, fed in `chunk`-token calls.
std::vector<float> AllLogits(Backend& b, const std::vector<int32_t>& tokens, int chunk) {
  const int slot = *b.pool().Acquire();
  std::vector<float> out;
  Logits logits;
  for (size_t i = 0; i < tokens.size(); i += chunk) {
    const size_t n = std::min<size_t>(chunk, tokens.size() - i);
    BatchEntry e{slot, std::span<const int32_t>(tokens).subspan(i, n), true};
    EXPECT_TRUE(b.Forward({&e, 1}, &logits).ok());
    for (int r = 0; r < logits.rows(0); ++r) out.insert(out.end(), logits.Row(0, r).begin(), logits.Row(0, r).end());
  }
  EXPECT_TRUE(b.pool().Release(slot).ok());
  return out;
}

TEST_P(CudaModel, LogitsMatchTheCpuBackendAtEveryPosition) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = *Model::Load(testing::Fixture(GetParam().file));
  BackendOptions cpu_opts;
  cpu_opts.pool_slots = 2;
  BackendOptions gpu_opts = cpu_opts;
  gpu_opts.kind = "cuda";
  gpu_opts.dtype = GetParam().dtype;
  auto cpu = *CreateBackend(model, cpu_opts);
  const std::vector<int32_t> tokens = FixtureTokens(GetParam().file);
  ASSERT_GT(tokens.size(), cuda::kGemvMaxRows);
  const std::vector<float> want = AllLogits(*cpu, tokens, static_cast<int>(tokens.size()));
  // Chunks of 1 and 3 rows go through our GEMV, the whole prompt through cuBLAS; with the GEMV
  // turned off every chunk goes through cuBLAS.
  for (int gemv_rows : {cuda::kGemvMaxRows, 0}) {
    gpu_opts.cuda_gemv_rows = gemv_rows;
    absl::StatusOr<std::unique_ptr<Backend>> gpu = CreateBackend(model, gpu_opts);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    for (int chunk : {1, 3, static_cast<int>(tokens.size())}) {
      const std::vector<float> got = AllLogits(**gpu, tokens, chunk);
      // Tolerances from the issue: fp32 weights 1e-4 (GEMM summation order), fp16/bf16 1e-2
      // (weights and GEMM inputs rounded to 11 or 8 significant bits).
      EXPECT_LT(RelL2(got, want), GetParam().tol)
          << GetParam().file << " " << GetParam().dtype << " chunk " << chunk << " gemv rows " << gemv_rows;
    }
    EXPECT_TRUE((*gpu)->Healthy().ok());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Generations, CudaModel,
    ::testing::Values(
        ModelCase{"tiny-rwkv7-f32.safetensors", "f32", 1e-4}, ModelCase{"tiny-rwkv7-f32.safetensors", "f16", 1e-2},
        ModelCase{"tiny-rwkv7-f32.safetensors", "bf16", 1e-2}, ModelCase{"tiny-rwkv6-f32.safetensors", "f32", 1e-4},
        ModelCase{"tiny-rwkv6-f32.safetensors", "f16", 1e-2}, ModelCase{"tiny-rwkv5.2-f32.safetensors", "f32", 1e-4},
        ModelCase{"tiny-rwkv5.2-f32.safetensors", "f16", 1e-2}, ModelCase{"tiny-rwkv5.1-f32.safetensors", "f32", 1e-4},
        ModelCase{"tiny-rwkv5.0-f32.safetensors", "f32", 1e-4}, ModelCase{"tiny-rwkv4-f32.safetensors", "f32", 1e-4},
        ModelCase{"tiny-rwkv4-f32.safetensors", "f16", 1e-2}),
    [](const auto& info) {
      std::string name = std::string(info.param.file).substr(5) + "_" + info.param.dtype;  // Drop "tiny-".
      for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

TEST(CudaModelGreedy, SixtyFourGreedyTokensEqualTheCpuBackendInFp32) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = *Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors"));
  BackendOptions o;
  o.pool_slots = 4;
  auto cpu = *CreateBackend(model, o);
  o.kind = "cuda";
  o.dtype = "f32";
  auto gpu = *CreateBackend(model, o);
  auto greedy = [](Backend& b) {
    // Two sequences in one batch, so that batching is exercised too.
    const int s0 = *b.pool().Acquire(), s1 = *b.pool().Acquire();
    std::vector<int32_t> t0 = {1, 2, 3}, t1 = {7};
    std::vector<int32_t> out;
    Logits logits;
    for (int step = 0; step < 64; ++step) {
      const BatchEntry batch[] = {{s0, t0, false}, {s1, t1, false}};
      EXPECT_TRUE(b.Forward(batch, &logits).ok());
      for (int e = 0; e < 2; ++e) {
        const auto row = logits.Last(e);
        const int32_t best = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
        out.push_back(best);
        (e == 0 ? t0 : t1) = {best};
      }
    }
    return out;
  };
  EXPECT_EQ(greedy(*gpu), greedy(*cpu));
}

// Device sampling against the host's view of the same logits.
class CudaSampling : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device visible";
    std::shared_ptr<const Model> model = *Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors"));
    BackendOptions o;
    o.kind = "cuda";
    o.dtype = "f32";
    o.pool_slots = 4;
    gpu_ = *CreateBackend(model, o);
    ASSERT_TRUE(gpu_->samples_on_device());
  }
  // Logits of `prompt` (host path) and the token the device samples from the same state.
  std::pair<std::vector<float>, int32_t> Both(const std::vector<int32_t>& prompt, const SamplingParams& p,
                                              double u = 0.5) {
    const int a = *gpu_->pool().Acquire(), b = *gpu_->pool().Acquire();
    Logits logits;
    const BatchEntry host[] = {{a, prompt, false}};
    EXPECT_TRUE(gpu_->Forward(host, &logits).ok());
    std::vector<float> row(logits.Last(0).begin(), logits.Last(0).end());
    const BatchEntry dev[] = {{b, prompt, false}};
    DeviceSample d;
    d.sample = true;
    d.params = &p;
    d.first = true;
    d.uniform = u;
    int32_t token = -1;
    EXPECT_TRUE(gpu_->ForwardSample(dev, {&d, 1}, {&token, 1}, &logits).ok());
    EXPECT_TRUE(gpu_->pool().Release(a).ok());
    EXPECT_TRUE(gpu_->pool().Release(b).ok());
    return {row, token};
  }
  std::unique_ptr<Backend> gpu_;
};

TEST_F(CudaSampling, GreedyAndTopKOneTakeTheArgmax) {
  SamplingParams greedy;
  greedy.temperature = 0;
  auto [row, token] = Both({1, 2, 3}, greedy);
  const int32_t argmax = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
  EXPECT_EQ(token, argmax);
  SamplingParams top1;
  top1.top_k = 1;
  for (double u : {0.01, 0.5, 0.99}) EXPECT_EQ(Both({1, 2, 3}, top1, u).second, argmax) << u;
}

TEST_F(CudaSampling, BansAndBiasAreApplied) {
  SamplingParams p;
  p.temperature = 0;
  auto [row, argmax_token] = Both({4, 5}, p);
  p.banned_tokens = {argmax_token};
  EXPECT_NE(Both({4, 5}, p).second, argmax_token);
  p.banned_tokens.clear();
  p.logit_bias = {{7, 100.0f}};
  EXPECT_EQ(Both({4, 5}, p).second, 7);
}

TEST_F(CudaSampling, TopPKeepsTheDrawInsideTheNucleus) {
  SamplingParams p;
  p.top_p = 0.3f;
  auto [row, token] = Both({9}, p, 0.0);
  // The host's nucleus of the same logits (with float slack at the edge).
  std::vector<double> prob(row.size());
  const double mx = *std::max_element(row.begin(), row.end());
  double z = 0;
  for (size_t i = 0; i < row.size(); ++i) z += prob[i] = std::exp(row[i] - mx);
  std::vector<int> order(row.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return prob[a] > prob[b]; });
  double mass = 0;
  std::vector<int> nucleus;
  for (int i : order) {
    nucleus.push_back(i);
    mass += prob[i] / z;
    if (mass >= 0.3 + 1e-4) break;
  }
  for (double u : {0.0, 0.3, 0.7, 0.999}) {
    const int32_t t = Both({9}, p, u).second;
    EXPECT_NE(std::find(nucleus.begin(), nucleus.end(), t), nucleus.end()) << "u " << u << " token " << t;
  }
}

// One definition of the draw (engine/sampler.h): 128 parameter combinations side by side in one
// batch for 256 steps, run once sampling on the device and once copying the logits to the host
// Sampler, with the same seeds (same batch shapes both times: the same kernels, the same logits).
// Token for token; the only admissible difference is a float exp rounding (device expf against
// the host's) moving a probability across a cut or the draw's target, about 1e-6 a step.
TEST(CudaSamplingParity, DeviceAndHostDrawTheSameTokensOnEveryCombination) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = *Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors"));
  const int V = model->config().vocab;
  SamplingParams lists;
  lists.logit_bias = {{1, 2.5f}, {V / 2, -1.0f}};
  lists.banned_tokens = {0, V - 1};
  std::vector<SamplingParams> combos =
      testing::SamplingCombinations({0.0f, 0.6f, 1.0f, 1.4f}, {1.0f, 0.5f}, {0, 5}, {0.0f, 0.05f}, lists, 77);
  for (const SamplingParams& p : combos) ASSERT_TRUE(ValidateSamplingParams(p, V).ok());
  const int n = static_cast<int>(combos.size());
  auto run = [&](bool on_device) {
    BackendOptions o;
    o.kind = "cuda";
    o.dtype = "f32";
    o.pool_slots = n;
    auto b = *CreateBackend(model, o);
    std::vector<int> slots;
    std::vector<Sampler> samplers;
    std::vector<int32_t> next;
    for (int e = 0; e < n; ++e) {
      slots.push_back(*b->pool().Acquire());
      samplers.emplace_back(combos[e], V);
      next.push_back(1 + e % (V - 1));
    }
    std::vector<std::vector<int32_t>> out(n);
    Logits logits;
    for (int step = 0; step < 256; ++step) {
      std::vector<BatchEntry> batch;
      for (int e = 0; e < n; ++e) batch.push_back({slots[e], std::span<const int32_t>(&next[e], 1), false});
      std::vector<int32_t> tokens(n, -1);
      if (on_device) {
        std::vector<DeviceSample> ds(n);
        for (int e = 0; e < n; ++e) {
          ds[e].sample = true;
          ds[e].params = &combos[e];
          ds[e].first = step == 0;
          ds[e].uniform = samplers[e].Uniform();
        }
        EXPECT_TRUE(b->ForwardSample(batch, ds, tokens, &logits).ok());
      } else {
        EXPECT_TRUE(b->Forward(batch, &logits).ok());
        for (int e = 0; e < n; ++e) tokens[e] = samplers[e].Sample(logits.Last(e));
      }
      for (int e = 0; e < n; ++e) out[e].push_back(next[e] = tokens[e]);
    }
    return out;
  };
  const auto device = run(true), host = run(false);
  int differing = 0;
  for (int e = 0; e < n; ++e) {
    const auto d = std::mismatch(device[e].begin(), device[e].end(), host[e].begin());
    if (d.first == device[e].end()) continue;
    const SamplingParams& p = combos[e];
    ADD_FAILURE() << "T " << p.temperature << " top_p " << p.top_p << " top_k " << p.top_k << " min_p " << p.min_p
                  << " presence " << p.presence_penalty << " bias " << p.logit_bias.size() << ": step "
                  << (d.first - device[e].begin()) << " device " << *d.first << " host " << *d.second;
    ++differing;
  }
  EXPECT_EQ(differing, 0) << "of " << n << " combinations";
}

// The CUDA backend with fp32 weights and `slots` state slots.
BackendOptions CudaF32(int slots, bool graphs = true) {
  BackendOptions o;
  o.kind = "cuda";
  o.dtype = "f32";
  o.pool_slots = slots;
  o.cuda_graphs = graphs;
  return o;
}

// Decode graphs are captured at creation for the ladder of batch sizes up to the pool's capacity.
// Batches of 1 to 8 (our GEMV, whose per-row sums do not depend on the batch, so padding changes
// no bit) replayed as graphs give the tokens eager steps give, with one entry sampled on the
// host every third step (its logits copied out after the graph) and the others on the device.
TEST(CudaGraphs, ReplayedDecodeStepsEqualEagerOnes) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = *Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors"));
  auto decode = [&](bool graphs) {
    auto b = *CreateBackend(model, CudaF32(12, graphs));
    auto* cb = dynamic_cast<cuda::CudaBackend*>(b.get());
    EXPECT_EQ(cb->graph_sizes(), graphs ? std::vector<int>({1, 2, 3, 4, 5, 6, 7, 8, 10, 12}) : std::vector<int>());
    SamplingParams greedy;
    greedy.temperature = 0;
    std::vector<int> slots;
    for (int i = 0; i < 5; ++i) slots.push_back(*b->pool().Acquire());
    std::vector<int32_t> next = {1, 2, 3, 4, 5}, out;
    Logits logits;
    for (int step = 0; step < 16; ++step) {
      const int n = std::vector<int>{3, 2, 5, 1}[step % 4];
      std::vector<BatchEntry> batch;
      std::vector<DeviceSample> ds(n);
      for (int e = 0; e < n; ++e) {
        batch.push_back({slots[e], std::span<const int32_t>(&next[e], 1), false});
        ds[e].sample = !(e == 1 && step % 3 == 0);
        ds[e].params = &greedy;
        ds[e].first = step < 4;
      }
      std::vector<int32_t> tokens(n);
      EXPECT_TRUE(b->ForwardSample(batch, ds, tokens, &logits).ok());
      if (graphs) {
        EXPECT_GT(cb->last_step_launches(), 0);
      }
      for (int e = 0; e < n; ++e) {
        if (!ds[e].sample) {
          EXPECT_EQ(tokens[e], -1) << "a row sampled on the host gets no device token";
          const auto row = logits.Last(e);
          tokens[e] = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
        }
        next[e] = tokens[e];
      }
      out.insert(out.end(), tokens.begin(), tokens.end());
    }
    return out;
  };
  EXPECT_EQ(decode(true), decode(false));
}

// Programmatic dependent launch (on an sm_90+ device) only lets a kernel be scheduled before the
// previous one ends; every kernel waits for it before touching memory. So logits of decode steps
// at batch 1 and 6 (replayed graphs, fp16) are bit-equal with it on and off, and eager steps too.
TEST(CudaGraphs, ProgrammaticLaunchChangesNoBit) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = *Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors"));
  auto run = [&](bool programmatic, bool graphs) {
    BackendOptions o = CudaF32(8, graphs);
    o.dtype = "f16";
    o.cuda_programmatic_launch = programmatic;
    auto b = *CreateBackend(model, o);
    EXPECT_EQ(cuda::ProgrammaticLaunch(), programmatic && CudaComputeCapabilityMajor(0) >= 9);
    std::vector<int> slots;
    for (int i = 0; i < 6; ++i) slots.push_back(*b->pool().Acquire());
    std::vector<int32_t> next = {1, 2, 3, 4, 5, 6};
    std::vector<float> all;
    Logits logits;
    for (int step = 0; step < 8; ++step) {
      const int n = step % 2 == 0 ? 6 : 1;
      std::vector<BatchEntry> batch;
      for (int e = 0; e < n; ++e) batch.push_back({slots[e], std::span<const int32_t>(&next[e], 1), false});
      EXPECT_TRUE(b->Forward(batch, &logits).ok());
      for (int e = 0; e < n; ++e) {
        const auto row = logits.Last(e);
        all.insert(all.end(), row.begin(), row.end());
        next[e] = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      }
    }
    return all;
  };
  for (bool graphs : {true, false}) {
    const std::vector<float> on = run(true, graphs), off = run(false, graphs);
    ASSERT_EQ(on.size(), off.size());
    EXPECT_EQ(0, std::memcmp(on.data(), off.data(), on.size() * 4)) << (graphs ? "graphs" : "eager");
  }
}

// Past 8 rows the projections are cuBLAS GEMMs, whose algorithm may change with the row count: a
// batch of 9 padded to the ladder's 10 gives the eager step's logits within float32 summation
// order (1e-5 relative L2), and the padding rows leave every slot in use as eager steps do.
TEST(CudaGraphs, APaddedBatchMatchesTheEagerStep) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = *Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors"));
  auto run = [&](bool graphs) {
    auto b = *CreateBackend(model, CudaF32(12, graphs));
    std::vector<BatchEntry> batch;
    std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    std::vector<float> all;
    for (int step = 0; step < 3; ++step) {
      batch.clear();
      for (int e = 0; e < 9; ++e) batch.push_back({e, std::span<const int32_t>(&tokens[e], 1), false});
      if (step == 0) {
        for (int e = 0; e < 9; ++e) EXPECT_EQ(*b->pool().Acquire(), e);
      }
      Logits logits;
      EXPECT_TRUE(b->Forward(batch, &logits).ok());
      for (int e = 0; e < 9; ++e) all.insert(all.end(), logits.Last(e).begin(), logits.Last(e).end());
    }
    std::vector<float> state(b->pool().slot_floats());
    for (int e = 0; e < 9; ++e) {
      EXPECT_TRUE(b->pool().Read(e, state).ok());
      all.insert(all.end(), state.begin(), state.end());
    }
    return all;
  };
  const std::vector<float> graphed = run(true), eager = run(false);
  ASSERT_EQ(graphed.size(), eager.size());
  EXPECT_LT(RelL2(graphed, eager), 1e-5);
}

// Embedding rows (a VisualRWKV image's rows) through blocks.0.ln0 on the device backend: the
// tiny VisualRWKV-7's language model with 4 rows, then 6 tokens, against the CPU backend at every
// position and chunking (fp32 weights: 1e-4, the GEMM summation order, as the text-only parity).
// Then one-token steps that carry a row and sample on the device, of a size that has a captured
// graph: a step with rows must run eagerly (a replayed graph would drop the copy).
TEST(CudaRows, ImageRowsMatchTheCpuBackend) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = *Model::Load(testing::Fixture("vision/tiny-visualrwkv7.safetensors"));
  const int C = model->config().n_embd;
  std::vector<float> image(4 * C);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& v : image) v = nd(rng);
  std::vector<int32_t> tokens(4, 0);
  const std::vector<int32_t> text = testing::ManifestTokens();
  tokens.insert(tokens.end(), text.begin(), text.begin() + 6);
  std::vector<const float*> rows(tokens.size(), nullptr);
  for (int i = 0; i < 4; ++i) rows[i] = image.data() + i * C;
  BackendOptions cpu_opts;
  cpu_opts.pool_slots = 2;
  BackendOptions gpu_opts = cpu_opts;
  gpu_opts.kind = "cuda";
  gpu_opts.dtype = "f32";
  auto cpu = *CreateBackend(model, cpu_opts);
  auto gpu = *CreateBackend(model, gpu_opts);
  ASSERT_TRUE(gpu->takes_embedding_rows());
  auto all = [&](Backend& b, int chunk) {
    const int slot = *b.pool().Acquire();
    std::vector<float> out;
    Logits logits;
    for (size_t i = 0; i < tokens.size(); i += chunk) {
      const size_t n = std::min<size_t>(chunk, tokens.size() - i);
      BatchEntry e{slot, std::span<const int32_t>(tokens).subspan(i, n), true,
                   std::span<const float* const>(rows).subspan(i, n)};
      EXPECT_TRUE(b.Forward({&e, 1}, &logits).ok());
      for (int r = 0; r < logits.rows(0); ++r) out.insert(out.end(), logits.Row(0, r).begin(), logits.Row(0, r).end());
    }
    EXPECT_TRUE(b.pool().Release(slot).ok());
    return out;
  };
  const std::vector<float> want = all(*cpu, static_cast<int>(tokens.size()));
  for (int chunk : {1, 3, static_cast<int>(tokens.size())}) {
    EXPECT_LT(RelL2(all(*gpu, chunk), want), 1e-4) << "chunk " << chunk;
  }

  // One-row steps with a row each, sampled greedily on the device, three times over.
  SamplingParams greedy;
  greedy.temperature = 0;
  for (int round = 0; round < 3; ++round) {
    const int cs = *cpu->pool().Acquire(), gs = *gpu->pool().Acquire();
    for (int i = 0; i < 4; ++i) {
      BatchEntry ce{cs, std::span<const int32_t>(tokens).subspan(i, 1), false, std::span<const float* const>(rows).subspan(i, 1)};
      BatchEntry ge = ce;
      ge.slot = gs;
      Logits cl, gl;
      ASSERT_TRUE(cpu->Forward({&ce, 1}, &cl).ok());
      DeviceSample d;
      d.sample = true;
      d.params = &greedy;
      d.first = true;
      std::vector<int32_t> got(1);
      ASSERT_TRUE(gpu->ForwardSample({&ge, 1}, {&d, 1}, got, &gl).ok());
      const std::span<const float> l = cl.Last(0);
      EXPECT_EQ(got[0], std::max_element(l.begin(), l.end()) - l.begin()) << "round " << round << " row " << i;
    }
    EXPECT_TRUE(cpu->pool().Release(cs).ok());
    EXPECT_TRUE(gpu->pool().Release(gs).ok());
  }
}

TEST(CudaPool, CopyReadWriteRoundTrip) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = *Model::Load(testing::Fixture("tiny-rwkv7-f32.safetensors"));
  BackendOptions o;
  o.kind = "cuda";
  o.pool_slots = 3;
  auto gpu = *CreateBackend(model, o);
  StatePool& pool = gpu->pool();
  const int a = *pool.Acquire(), b = *pool.Acquire();
  std::vector<float> in = Random(pool.slot_floats(), -1, 1, 21), out(pool.slot_floats());
  ASSERT_TRUE(pool.Write(a, in).ok());
  ASSERT_TRUE(pool.Copy(a, b).ok());
  ASSERT_TRUE(pool.Read(b, out).ok());
  EXPECT_EQ(in, out);
  ASSERT_TRUE(pool.Reset(b).ok());
  ASSERT_TRUE(pool.Read(b, out).ok());
  EXPECT_EQ(out, std::vector<float>(pool.slot_floats(), 0.0f));
}

}  // namespace
}  // namespace rwkv
