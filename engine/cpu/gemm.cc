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

// Weight element types. A Cursor walks one panel: Group(g) readies group g's scales (quantized
// types; a no-op otherwise), Load(j) widens the panel's 16 weights of input j to float32, exactly:
// bf16 is the top half of a float32, F16C converts binary16 exactly, and a quantized weight q * s
// is exact in float32 (engine/packed_matrix.h).
struct F32W {
  static constexpr bool kQuant = false;
  struct Cursor {
    const float* p = nullptr;
    Cursor() = default;
    Cursor(const PackedMatrix& m, int panel) : p(m.data + int64_t{panel} * m.k * kPanel) {}
    void Group(int) {}
    __attribute__((target("avx2,fma,f16c"))) void Load(int j, __m256* w0, __m256* w1) const {
      *w0 = _mm256_loadu_ps(p + int64_t{j} * kPanel);
      *w1 = _mm256_loadu_ps(p + int64_t{j} * kPanel + 8);
    }
  };
};
template <bool kBf16>
struct HalfW {
  static constexpr bool kQuant = false;
  struct Cursor {
    const uint16_t* p = nullptr;
    Cursor() = default;
    Cursor(const PackedMatrix& m, int panel) : p(m.half + int64_t{panel} * m.k * kPanel) {}
    void Group(int) {}
    __attribute__((target("avx2,fma,f16c"))) static __m256 Widen(const uint16_t* q) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
      if constexpr (kBf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
      return _mm256_cvtph_ps(h);
    }
    __attribute__((target("avx2,fma,f16c"))) void Load(int j, __m256* w0, __m256* w1) const {
      *w0 = Widen(p + int64_t{j} * kPanel);
      *w1 = Widen(p + int64_t{j} * kPanel + 8);
    }
  };
};
using Bf16W = HalfW<true>;
using F16W = HalfW<false>;

// The 16 float16 scales of group g of a panel, widened.
__attribute__((target("avx2,fma,f16c"))) inline void LoadScales(const uint16_t* s, __m256* s0, __m256* s1) {
  *s0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  *s1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 8)));
}

struct Int8W {
  static constexpr bool kQuant = true;
  struct Cursor {
    const uint8_t* p = nullptr;
    const uint16_t* scales = nullptr;
    __m256 s0, s1;
    Cursor() = default;
    Cursor(const PackedMatrix& m, int panel)
        : p(m.codes + int64_t{panel} * m.k * kPanel),
          scales(m.scales + int64_t{panel} * PackedMatrix::Groups(m.k) * kPanel) {}
    __attribute__((target("avx2,fma,f16c"))) void Group(int g) { LoadScales(scales + g * kPanel, &s0, &s1); }
    __attribute__((target("avx2,fma,f16c"))) void Load(int j, __m256* w0, __m256* w1) const {
      const uint8_t* q = p + int64_t{j} * kPanel;
      const __m256i a = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
      const __m256i b = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8)));
      *w0 = _mm256_mul_ps(_mm256_cvtepi32_ps(a), s0);
      *w1 = _mm256_mul_ps(_mm256_cvtepi32_ps(b), s1);
    }
  };
};

struct Int4W {
  static constexpr bool kQuant = true;
  struct Cursor {
    const uint8_t* p = nullptr;
    const uint16_t* scales = nullptr;
    __m256 s0, s1, o0, o1;  // s and -8 s: (u - 8) s = fma(u, s, -8 s), exact.
    Cursor() = default;
    Cursor(const PackedMatrix& m, int panel)
        : p(m.codes + int64_t{panel} * m.k * (kPanel / 2)),
          scales(m.scales + int64_t{panel} * PackedMatrix::Groups(m.k) * kPanel) {}
    __attribute__((target("avx2,fma,f16c"))) void Group(int g) {
      LoadScales(scales + g * kPanel, &s0, &s1);
      const __m256 m8 = _mm256_set1_ps(-8.0f);
      o0 = _mm256_mul_ps(s0, m8);
      o1 = _mm256_mul_ps(s1, m8);
    }
    __attribute__((target("avx2,fma,f16c"))) void Load(int j, __m256* w0, __m256* w1) const {
      const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + int64_t{j} * 8)));
      const __m256i lo = _mm256_and_si256(b, _mm256_set1_epi32(15));
      const __m256i hi = _mm256_srli_epi32(b, 4);
      *w0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), s0, o0);
      *w1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), s1, o1);
    }
  };
};

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

// Y[0..MM) x [panels p0..p0+P) (+)= X[0..MM) . W. Each output is one FMA chain over j = 0..k-1,
// then (optionally) added to Y: the same arithmetic for every MM and P, so results do not depend
// on the batch. P > 1 gives short rows (decode) enough independent chains to hide the FMA
// latency. Quantized types walk k a group at a time, reloading the scales between groups.
template <typename W, int MM, int P>
__attribute__((target("avx2,fma,f16c"))) void KernelAvx2(const float* X, int ldx, const PackedMatrix& M, int p0,
                                                         float* Y, int ldy, bool accumulate, Activation act) {
  const int k = M.k;
  // Every loop is unrolled so that acc lives in registers.
  __m256 acc[MM][2 * P];
#pragma GCC unroll 8
  for (int m = 0; m < MM; ++m)
#pragma GCC unroll 8
    for (int q = 0; q < 2 * P; ++q) acc[m][q] = _mm256_setzero_ps();
  typename W::Cursor cur[P];
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p) cur[p] = typename W::Cursor(M, p0 + p);
  const int group = W::kQuant ? kQuantGroup : k;
  for (int j0 = 0, g = 0; j0 < k; j0 += group, ++g) {
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) cur[p].Group(g);
    const int j1 = std::min(k, j0 + group);
    for (int j = j0; j < j1; ++j) {
      if constexpr (P == 1) {
        // 12 accumulators + 2 weights + 1 broadcast at MM = 6: broadcast one row at a time.
        __m256 w0, w1;
        cur[0].Load(j, &w0, &w1);
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
          __m256 w0, w1;
          cur[p].Load(j, &w0, &w1);
#pragma GCC unroll 8
          for (int m = 0; m < MM; ++m) {
            acc[m][2 * p] = _mm256_fmadd_ps(x[m], w0, acc[m][2 * p]);
            acc[m][2 * p + 1] = _mm256_fmadd_ps(x[m], w1, acc[m][2 * p + 1]);
          }
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MM; ++m) {
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      const int c0 = (p0 + p) * kPanel;
      const int cols = std::min(kPanel, M.n - c0);
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

// Without AVX2: the same sums in the same order over PackedMatrix::At, the same values.
template <int MM>
void KernelGeneric(const float* X, int ldx, const PackedMatrix& M, int panel, float* Y, int ldy, bool accumulate,
                   Activation act) {
  const int c0 = panel * kPanel;
  const int cols = std::min(kPanel, M.n - c0);
  float acc[MM][kPanel] = {};
  for (int j = 0; j < M.k; ++j) {
    for (int c = 0; c < cols; ++c) {
      const float w = M.At(c0 + c, j);
      for (int m = 0; m < MM; ++m) acc[m][c] = std::fma(X[static_cast<int64_t>(m) * ldx + j], w, acc[m][c]);
    }
  }
  for (int m = 0; m < MM; ++m) {
    float* y = Y + static_cast<int64_t>(m) * ldy + c0;
    for (int c = 0; c < cols; ++c) y[c] = accumulate ? y[c] + acc[m][c] : Apply(act, acc[m][c]);
  }
}

// All rows of X against panels [p0, p1) of W.
template <bool kAvx2, typename WT>
void Task(const float* X, int rows, const PackedMatrix& W, int p0, int p1, float* Y, int ldy, bool accumulate,
          Activation act) {
  const int k = W.k;
  auto run = [&](int m, auto mm_tag, auto p_tag, int p) {
    constexpr int MM = decltype(mm_tag)::value;
    constexpr int P = decltype(p_tag)::value;
    const float* x = X + static_cast<int64_t>(m) * k;
    float* y = Y + static_cast<int64_t>(m) * ldy;
    if constexpr (kAvx2) {
      KernelAvx2<WT, MM, P>(x, k, W, p, y, ldy, accumulate, act);
    } else {
      for (int q = 0; q < P; ++q) KernelGeneric<MM>(x, k, W, p + q, y, ldy, accumulate, act);
    }
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
void LinearImpl(const float* X, int rows, const PackedMatrix& W, float* Y, int ldy, bool accumulate, int threads,
                Activation act) {
  const int panels = (W.n + kPanel - 1) / kPanel;
  const int tasks = (panels + kPanelsPerTask - 1) / kPanelsPerTask;
  // Small products (LoRA) are not worth waking the other threads for.
  const bool parallel = tasks > 1 && int64_t{rows} * W.n * W.k > 65536;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (parallel)
  for (int t = 0; t < tasks; ++t) {
    Task<kAvx2, WT>(X, rows, W, t * kPanelsPerTask, std::min(panels, (t + 1) * kPanelsPerTask), Y, ldy, accumulate,
                    act);
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
      return LinearImpl<kAvx2, F32W>(X, rows, W, Y, ldy, accumulate, threads, act);
    case MatrixType::kBF16:
      return LinearImpl<kAvx2, Bf16W>(X, rows, W, Y, ldy, accumulate, threads, act);
    case MatrixType::kF16:
      return LinearImpl<kAvx2, F16W>(X, rows, W, Y, ldy, accumulate, threads, act);
    case MatrixType::kInt8:
      return LinearImpl<kAvx2, Int8W>(X, rows, W, Y, ldy, accumulate, threads, act);
    case MatrixType::kInt4:
      return LinearImpl<kAvx2, Int4W>(X, rows, W, Y, ldy, accumulate, threads, act);
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

bool PackQuantized(const float* src, int n, int k, MatrixType type, uint8_t* codes, uint16_t* scales) {
  const bool int4 = type == MatrixType::kInt4;
  const int groups = PackedMatrix::Groups(k);
  const PackedMatrix layout{nullptr, n, k};
  const int rows = static_cast<int>((n + kPanel - 1) / kPanel) * kPanel;
  for (int r = 0; r < rows; ++r) {
    const float* row = r < n ? src + static_cast<int64_t>(r) * k : nullptr;
    for (int g = 0; g < groups; ++g) {
      const int j0 = g * kQuantGroup, j1 = std::min(k, j0 + kQuantGroup);
      float extreme = 0;  // The group's weight of largest magnitude (the first of equals).
      if (r < n) {
        for (int j = j0; j < j1; ++j) {
          if (!std::isfinite(row[j])) return false;
          if (std::fabs(row[j]) > std::fabs(extreme)) extreme = row[j];
        }
      }
      const float ideal = int4 ? extreme / -8.0f : std::fabs(extreme) / 127.0f;
      const uint16_t s16 = FloatToF16(ideal);
      const float s = F16ToFloat(s16);
      if (!std::isfinite(s)) return false;
      scales[layout.ScaleIndex(r, j0)] = s16;
      const int lo = int4 ? -8 : -127, hi = int4 ? 7 : 127;
      for (int j = j0; j < j1; ++j) {
        const int q = (r >= n || s == 0.0f)
                          ? 0
                          : static_cast<int>(std::clamp(std::nearbyint(row[j] / s), static_cast<float>(lo),
                                                        static_cast<float>(hi)));
        const int64_t i = layout.Index(r, j);
        if (!int4) {
          codes[i] = static_cast<uint8_t>(static_cast<int8_t>(q));
          continue;
        }
        const int c = r % kPanel;
        uint8_t& byte = codes[(int64_t{r / kPanel} * k + j) * (kPanel / 2) + c % 8];
        const uint8_t u = static_cast<uint8_t>(q + 8);
        byte = c < 8 ? static_cast<uint8_t>((byte & 0xf0) | u) : static_cast<uint8_t>((byte & 0x0f) | (u << 4));
      }
    }
  }
  return true;
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
