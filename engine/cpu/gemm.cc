#include "engine/cpu/gemm.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "engine/dtype.h"

namespace rwkv::cpu {
namespace {

constexpr int kRowBlock = 6;       // Rows of X per micro-kernel call: 6 x 16 accumulators in 12 ymm.
constexpr int kPanelsPerTask = 4;  // Output rows per parallel task: 64.

// Weight element types: the packed panel's element and how 8 of them become 8 floats.
struct F32W {
  using T = float;
  static float Scalar(T v) { return v; }
};
struct Bf16W {
  using T = uint16_t;
  static float Scalar(T v) { return Bf16ToFloat(v); }
};
struct F16W {
  using T = uint16_t;
  static float Scalar(T v) { return F16ToFloat(v); }
};

// 8 consecutive weights widened to float32: exact for every type (bf16 is the top half of a
// float32; F16C converts binary16 exactly).
template <typename W>
__attribute__((target("avx2,fma,f16c"))) inline __m256 Load8(const typename W::T* p) {
  if constexpr (std::is_same_v<W, F32W>) {
    return _mm256_loadu_ps(p);
  } else if constexpr (std::is_same_v<W, Bf16W>) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

inline float Apply(Activation act, float v) {
  switch (act) {
    case Activation::kNone:
      return v;
    case Activation::kTanh:
      return std::tanh(v);
    case Activation::kSigmoid:
      return 1.0f / (1.0f + std::exp(-v));
    case Activation::kReluSquare:
      return v > 0.0f ? v * v : 0.0f;
  }
  return v;
}

// Y[0..MM) x [P panels] (+)= X[0..MM) . panels p0..p0+P. Each output is one FMA chain over
// j = 0..k-1, then (optionally) added to Y: the same arithmetic for every MM and P, so results do
// not depend on the batch. P > 1 gives short rows (decode) enough independent chains to hide the
// FMA latency. `n` bounds the columns of the last panel.
template <typename W, int MM, int P>
__attribute__((target("avx2,fma,f16c"))) void KernelAvx2(const float* X, int ldx, const typename W::T* panels, int k,
                                                         int col0, int n, float* Y, int ldy, bool accumulate,
                                                         Activation act) {
  // Every loop is unrolled so that acc lives in registers.
  __m256 acc[MM][2 * P];
#pragma GCC unroll 8
  for (int m = 0; m < MM; ++m)
#pragma GCC unroll 8
    for (int q = 0; q < 2 * P; ++q) acc[m][q] = _mm256_setzero_ps();
  const int64_t panel_stride = static_cast<int64_t>(k) * kPanel;
  for (int j = 0; j < k; ++j) {
    if constexpr (P == 1) {
      // 12 accumulators + 2 weights + 1 broadcast at MM = 6: broadcast one row at a time.
      const __m256 w0 = Load8<W>(panels + static_cast<int64_t>(j) * kPanel);
      const __m256 w1 = Load8<W>(panels + static_cast<int64_t>(j) * kPanel + 8);
#pragma GCC unroll 8
      for (int m = 0; m < MM; ++m) {
        const __m256 x = _mm256_broadcast_ss(X + static_cast<int64_t>(m) * ldx + j);
        acc[m][0] = _mm256_fmadd_ps(x, w0, acc[m][0]);
        acc[m][1] = _mm256_fmadd_ps(x, w1, acc[m][1]);
      }
    } else {
      // MM <= 2: the row broadcasts stay live across P panels.
      __m256 x[MM];
#pragma GCC unroll 8
      for (int m = 0; m < MM; ++m) x[m] = _mm256_broadcast_ss(X + static_cast<int64_t>(m) * ldx + j);
#pragma GCC unroll 4
      for (int p = 0; p < P; ++p) {
        const typename W::T* w = panels + p * panel_stride + static_cast<int64_t>(j) * kPanel;
        const __m256 w0 = Load8<W>(w), w1 = Load8<W>(w + 8);
#pragma GCC unroll 8
        for (int m = 0; m < MM; ++m) {
          acc[m][2 * p] = _mm256_fmadd_ps(x[m], w0, acc[m][2 * p]);
          acc[m][2 * p + 1] = _mm256_fmadd_ps(x[m], w1, acc[m][2 * p + 1]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MM; ++m) {
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      const int c0 = col0 + p * kPanel;
      const int cols = std::min(kPanel, n - c0);
      float* y = Y + static_cast<int64_t>(m) * ldy + c0;
      if (cols == kPanel && act == Activation::kNone) {
        __m256 a = acc[m][2 * p], b = acc[m][2 * p + 1];
        if (accumulate) {
          a = _mm256_add_ps(a, _mm256_loadu_ps(y));
          b = _mm256_add_ps(b, _mm256_loadu_ps(y + 8));
        }
        _mm256_storeu_ps(y, a);
        _mm256_storeu_ps(y + 8, b);
      } else {
        alignas(32) float tmp[kPanel];
        _mm256_store_ps(tmp, acc[m][2 * p]);
        _mm256_store_ps(tmp + 8, acc[m][2 * p + 1]);
        for (int c = 0; c < cols; ++c) y[c] = accumulate ? y[c] + tmp[c] : Apply(act, tmp[c]);
      }
    }
  }
}

template <typename W, int MM, int P>
void KernelGeneric(const float* X, int ldx, const typename W::T* panels, int k, int col0, int n, float* Y, int ldy,
                   bool accumulate, Activation act) {
  for (int p = 0; p < P; ++p) {
    const typename W::T* panel = panels + static_cast<int64_t>(p) * k * kPanel;
    float acc[MM][kPanel] = {};
    for (int j = 0; j < k; ++j) {
      for (int m = 0; m < MM; ++m) {
        const float x = X[static_cast<int64_t>(m) * ldx + j];
        for (int c = 0; c < kPanel; ++c) acc[m][c] += x * W::Scalar(panel[static_cast<int64_t>(j) * kPanel + c]);
      }
    }
    const int c0 = col0 + p * kPanel;
    const int cols = std::min(kPanel, n - c0);
    for (int m = 0; m < MM; ++m) {
      float* y = Y + static_cast<int64_t>(m) * ldy + c0;
      for (int c = 0; c < cols; ++c) y[c] = accumulate ? y[c] + acc[m][c] : Apply(act, acc[m][c]);
    }
  }
}

// All rows of X against panels [p0, p1) of `data` (W's elements, of type WT).
template <bool kAvx2, typename WT>
void Task(const float* X, int rows, const PackedMatrix& W, const typename WT::T* data, int p0, int p1, float* Y,
          int ldy, bool accumulate, Activation act) {
  const int k = W.k;
  auto run = [&](int m, auto mm_tag, auto p_tag, int p) {
    constexpr int MM = decltype(mm_tag)::value;
    constexpr int P = decltype(p_tag)::value;
    const float* x = X + static_cast<int64_t>(m) * k;
    const typename WT::T* panels = data + static_cast<int64_t>(p) * k * kPanel;
    float* y = Y + static_cast<int64_t>(m) * ldy;
    if constexpr (kAvx2)
      KernelAvx2<WT, MM, P>(x, k, panels, k, p * kPanel, W.n, y, ldy, accumulate, act);
    else
      KernelGeneric<WT, MM, P>(x, k, panels, k, p * kPanel, W.n, y, ldy, accumulate, act);
  };
  using I1 = std::integral_constant<int, 1>;
  using I2 = std::integral_constant<int, 2>;
  using I4 = std::integral_constant<int, 4>;
  // Wide blocks of panels for 1-2 rows (latency-bound), one panel for 3-6 rows (12 ymm at 6).
  auto rows_block = [&](int m, auto mm_tag) {
    constexpr int MM = decltype(mm_tag)::value;
    int p = p0;
    if constexpr (MM == 1) {
      for (; p + 4 <= p1; p += 4) run(m, mm_tag, I4{}, p);
    } else if constexpr (MM == 2) {
      for (; p + 2 <= p1; p += 2) run(m, mm_tag, I2{}, p);
    }
    for (; p < p1; ++p) run(m, mm_tag, I1{}, p);
  };
  int m = 0;
  for (; m + kRowBlock <= rows; m += kRowBlock) rows_block(m, std::integral_constant<int, 6>{});
  switch (rows - m) {
    case 5:
      rows_block(m, std::integral_constant<int, 5>{});
      break;
    case 4:
      rows_block(m, std::integral_constant<int, 4>{});
      break;
    case 3:
      rows_block(m, std::integral_constant<int, 3>{});
      break;
    case 2:
      rows_block(m, std::integral_constant<int, 2>{});
      break;
    case 1:
      rows_block(m, std::integral_constant<int, 1>{});
      break;
    default:
      break;
  }
}

template <bool kAvx2, typename WT>
void LinearImpl(const float* X, int rows, const PackedMatrix& W, const typename WT::T* data, float* Y, int ldy,
                bool accumulate, int threads, Activation act) {
  const int panels = (W.n + kPanel - 1) / kPanel;
  const int tasks = (panels + kPanelsPerTask - 1) / kPanelsPerTask;
  // Small products (LoRA) are not worth waking the other threads for.
  const bool parallel = tasks > 1 && int64_t{rows} * W.n * W.k > 65536;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (parallel)
  for (int t = 0; t < tasks; ++t) {
    Task<kAvx2, WT>(X, rows, W, data, t * kPanelsPerTask, std::min(panels, (t + 1) * kPanelsPerTask), Y, ldy,
                    accumulate, act);
  }
}

// F16C by cpuid: not every compiler's __builtin_cpu_supports knows it (clang 14 does not).
bool HaveF16c() {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_F16C) != 0;
}

const bool kHaveAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HaveF16c();

template <bool kAvx2>
void Dispatch(const float* X, int rows, const PackedMatrix& W, float* Y, int ldy, bool accumulate, int threads,
              Activation act) {
  switch (W.type) {
    case MatrixType::kF32:
      return LinearImpl<kAvx2, F32W>(X, rows, W, W.data, Y, ldy, accumulate, threads, act);
    case MatrixType::kBF16:
      return LinearImpl<kAvx2, Bf16W>(X, rows, W, W.half, Y, ldy, accumulate, threads, act);
    case MatrixType::kF16:
      return LinearImpl<kAvx2, F16W>(X, rows, W, W.half, Y, ldy, accumulate, threads, act);
  }
}

}  // namespace

void Pack(const float* src, int n, int k, float* dst) {
  const int panels = (n + kPanel - 1) / kPanel;
  for (int p = 0; p < panels; ++p) {
    float* out = dst + static_cast<int64_t>(p) * k * kPanel;
    for (int j = 0; j < k; ++j) {
      for (int c = 0; c < kPanel; ++c) {
        const int row = p * kPanel + c;
        out[static_cast<int64_t>(j) * kPanel + c] = row < n ? src[static_cast<int64_t>(row) * k + j] : 0.0f;
      }
    }
  }
}

void PackHalf(const float* src, int n, int k, MatrixType type, uint16_t* dst) {
  const int panels = (n + kPanel - 1) / kPanel;
  for (int p = 0; p < panels; ++p) {
    uint16_t* out = dst + static_cast<int64_t>(p) * k * kPanel;
    for (int j = 0; j < k; ++j) {
      for (int c = 0; c < kPanel; ++c) {
        const int row = p * kPanel + c;
        const float v = row < n ? src[static_cast<int64_t>(row) * k + j] : 0.0f;
        out[static_cast<int64_t>(j) * kPanel + c] = type == MatrixType::kBF16 ? FloatToBf16(v) : FloatToF16(v);
      }
    }
  }
}

void SetMathThreads(int threads) {
  if (threads <= 0) return;
  omp_set_num_threads(threads);
}

void Linear(const float* X, int rows, const PackedMatrix& W, float* Y, int ldy, bool accumulate, int threads,
            Activation act) {
  if (rows <= 0) return;
  if (threads <= 0) threads = omp_get_max_threads();
  if (kHaveAvx2) {
    Dispatch<true>(X, rows, W, Y, ldy, accumulate, threads, act);
  } else {
    Dispatch<false>(X, rows, W, Y, ldy, accumulate, threads, act);
  }
}

}  // namespace rwkv::cpu
