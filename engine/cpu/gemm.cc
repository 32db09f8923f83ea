#include "engine/cpu/gemm.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>
#include <type_traits>

#include "engine/dtype.h"

namespace rwkv::cpu {
namespace {

constexpr int kRowBlock = 6;       // Rows of X per micro-kernel call: 6 x 16 accumulators in 12 ymm.
constexpr int kRowBlockQuant = 4;  // The integer kernel's: 8 int32 + 8 float accumulators.
constexpr int kPanelsPerTask = 4;
constexpr int kPrefetchBytes = 1024;  // Quantized kernel, 1-2 rows: how far ahead in a panel.  // Output rows per parallel task: 64.

// Float weight element types. A Cursor walks one panel: Load(j) widens the panel's 16 weights of
// input j to float32, exactly (bf16 is the top half of a float32; F16C converts binary16 exactly).
struct F32W {
  struct Cursor {
    const float* p = nullptr;
    Cursor() = default;
    Cursor(const PackedMatrix& m, int panel) : p(m.data + int64_t{panel} * m.k * kPanel) {}
    __attribute__((target("avx2,fma,f16c"))) void Load(int j, __m256* w0, __m256* w1) const {
      *w0 = _mm256_loadu_ps(p + int64_t{j} * kPanel);
      *w1 = _mm256_loadu_ps(p + int64_t{j} * kPanel + 8);
    }
  };
};
template <bool kBf16>
struct HalfW {
  struct Cursor {
    const uint16_t* p = nullptr;
    Cursor() = default;
    Cursor(const PackedMatrix& m, int panel) : p(m.half + int64_t{panel} * m.k * kPanel) {}
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

// Writes (or adds) a kernel's accumulators to Y, applying `act`: panels p0.. of n outputs.
template <int MM, int P>
__attribute__((target("avx2,fma,f16c"))) inline void Store(__m256 (&acc)[MM][2 * P], int p0, int n, float* Y, int ldy,
                                                           bool accumulate, Activation act) {
#pragma GCC unroll 8
  for (int m = 0; m < MM; ++m) {
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      const int c0 = (p0 + p) * kPanel;
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

// Quantized matrices (engine/packed_matrix.h) multiply in integers: each row of X is quantized
// per group of kQuantGroup inputs like the weights, to codes xq = round(x / sx) in [-127, 127]
// with sx = max|x| / 127 (the per-group activation scale of llama.cpp's q8_0 dot products), and a
// group's products sum exactly in int32; then y += (sum * (s_w * sx)) in float32, group by group.
// A row's codes depend on that row alone, so results still do not depend on the batch.
// (v + 1.5 * 2^23) - 1.5 * 2^23 rounds |v| < 2^22 to the nearest integer, ties to even (the
// default rounding mode), without a library call.
constexpr float kRoundMagic = 12582912.0f;
static_assert(kQuantGroup == 32, "the int4 kernel sums a group's 8 blocks in int16");

struct QuantRows {
  int kp = 0, groups = 0;
  std::vector<int8_t> q;      // [rows][kp]: codes, zero past k (integer kernel).
  std::vector<uint8_t> mag;   // |q|: the int8 kernel multiplies |x| by w with x's sign.
  std::vector<float> scale;   // [rows][groups]: sx (NaN for a group holding a non-finite x).
  std::vector<int32_t> sum;   // [rows][groups]: sum of q, for int4's code offset of 8.
};

// One group of a row: its scale, and its codes (q, |q|, their sum). The same
// values from the scalar and the AVX2 version: round to nearest even of x * (127 / amax), one
// float multiply each (the scalar one cannot be fused with the rounding: no FMA at baseline).
struct GroupOut {
  int8_t* q = nullptr;
  uint8_t* mag = nullptr;
  float* scale = nullptr;
  int32_t* sum = nullptr;
};

void QuantizeGroupScalar(const float* x, int n, GroupOut o) {
  float amax = 0;
  bool finite = true;
  for (int j = 0; j < n; ++j) {
    amax = std::max(amax, std::fabs(x[j]));
    finite &= std::isfinite(x[j]);
  }
  *o.sum = 0;
  if (!finite) {
    *o.scale = std::numeric_limits<float>::quiet_NaN();  // The output is NaN, as in float.
    return;
  }
  *o.scale = amax / 127.0f;
  if (amax == 0) return;
  const float inv = 127.0f / amax;
  int32_t sum = 0;
  for (int j = 0; j < n; ++j) {
    const int q = std::clamp(static_cast<int>((x[j] * inv + kRoundMagic) - kRoundMagic), -127, 127);
    o.q[j] = static_cast<int8_t>(q);
    o.mag[j] = static_cast<uint8_t>(std::abs(q));
    sum += q;
  }
  *o.sum = sum;
}

__attribute__((target("avx2,fma,f16c"))) void QuantizeGroupAvx2(const float* x, GroupOut o) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256 v[4], m = _mm256_setzero_ps(), finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    const __m256 a = _mm256_and_ps(v[i], abs_mask);
    finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, inf, _CMP_LT_OQ));  // False for inf and NaN.
    m = _mm256_max_ps(m, a);
  }
  *o.sum = 0;
  if (_mm256_movemask_ps(finite) != 0xff) {
    *o.scale = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  const float amax = _mm_cvtss_f32(h);
  *o.scale = amax / 127.0f;
  if (amax == 0) return;
  const __m256 inv = _mm256_set1_ps(127.0f / amax);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  __m256i c[4], total = _mm256_setzero_si256();
  for (int i = 0; i < 4; ++i) {
    const __m256 r = _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_round_ps(_mm256_mul_ps(v[i], inv),
                                                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    c[i] = _mm256_cvtps_epi32(r);
    total = _mm256_add_epi32(total, c[i]);
  }
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
  *o.sum = _mm_cvtsi128_si32(t);
  // int32 -> int8 in input order: packs interleave the 128-bit lanes; a final permute restores them.
  const __m256i w16a = _mm256_packs_epi32(c[0], c[1]), w16b = _mm256_packs_epi32(c[2], c[3]);
  const __m256i b8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w16a, w16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q), b8);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.mag), _mm256_abs_epi8(b8));
}

// Quantizes every row of X, rows in parallel when there are many (scalar and on one thread, this
// took about a third of a 512-token prefill's time).
template <bool kAvx2>
void QuantizeRows(const float* X, int rows, int k, int threads, QuantRows* out) {
  out->kp = PackedMatrix::PaddedK(k);
  out->groups = PackedMatrix::Groups(k);
  const size_t codes = static_cast<size_t>(rows) * out->kp;
  out->q.assign(codes, 0);
  out->mag.assign(codes, 0);
  out->scale.resize(static_cast<size_t>(rows) * out->groups);
  out->sum.resize(out->scale.size());
  QuantRows& r = *out;
#pragma omp parallel for schedule(static) num_threads(threads) if (int64_t{rows} * k >= 65536)
  for (int m = 0; m < rows; ++m) {
    const float* x = X + static_cast<int64_t>(m) * k;
    for (int g = 0; g < r.groups; ++g) {
      const int j0 = g * kQuantGroup, n = std::min(k, j0 + kQuantGroup) - j0;
      const size_t ci = static_cast<size_t>(m) * r.kp + j0, gi = static_cast<size_t>(m) * r.groups + g;
      GroupOut o;
      o.q = r.q.data() + ci;
      o.mag = r.mag.data() + ci;
      o.scale = &r.scale[gi];
      o.sum = &r.sum[gi];
      if (kAvx2 && n == kQuantGroup) {
        QuantizeGroupAvx2(x + j0, o);
      } else {
        QuantizeGroupScalar(x + j0, n, o);
      }
    }
  }
}

inline int32_t Load4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Y[0..MM) x [panels p0..p0+P) (+)= rows row0.. of xr . W for a quantized W.
template <bool kInt4, int MM, int P>
__attribute__((target("avx2,fma,f16c"))) void KernelQuant(const QuantRows& xr, int row0, const PackedMatrix& M,
                                                          int p0, float* Y, int ldy, bool accumulate, Activation act) {
  const int kp = xr.kp, groups = xr.groups;
  const int64_t panel_bytes = kInt4 ? int64_t{kp} * (kPanel / 2) : int64_t{kp} * kPanel;
  const uint8_t* w[P];
  const uint16_t* sw[P];
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p) {
    w[p] = M.codes + (p0 + p) * panel_bytes;
    sw[p] = M.scales + int64_t{p0 + p} * groups * kPanel;
  }
  const int8_t* xq[MM];
  const uint8_t* xa[MM];
#pragma GCC unroll 8
  for (int m = 0; m < MM; ++m) {
    xq[m] = xr.q.data() + static_cast<int64_t>(row0 + m) * kp;
    xa[m] = xr.mag.data() + static_cast<int64_t>(row0 + m) * kp;
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i nibble = _mm256_set1_epi8(15);
  __m256 acc[MM][2 * P];
#pragma GCC unroll 8
  for (int m = 0; m < MM; ++m)
#pragma GCC unroll 8
    for (int q = 0; q < 2 * P; ++q) acc[m][q] = _mm256_setzero_ps();
  for (int g = 0; g < groups; ++g) {
    __m256i iacc[MM][2 * P];
#pragma GCC unroll 8
    for (int m = 0; m < MM; ++m)
#pragma GCC unroll 8
      for (int q = 0; q < 2 * P; ++q) iacc[m][q] = _mm256_setzero_si256();
    for (int b = g * (kQuantGroup / 4); b < (g + 1) * (kQuantGroup / 4); ++b) {
      __m256i xs[MM], xm[MM];
#pragma GCC unroll 8
      for (int m = 0; m < MM; ++m) {
        xs[m] = _mm256_set1_epi32(Load4(xq[m] + 4 * b));
        if constexpr (!kInt4) xm[m] = _mm256_set1_epi32(Load4(xa[m] + 4 * b));
      }
#pragma GCC unroll 4
      for (int p = 0; p < P; ++p) {
        if constexpr (MM <= 2) {  // Few rows: the loads are the time; fetch a group ahead.
          _mm_prefetch(reinterpret_cast<const char*>(w[p] + int64_t{b} * (kInt4 ? 32 : 64) + kPrefetchBytes), _MM_HINT_T0);
        }
        if constexpr (kInt4) {
          // Codes q + 8 in [0, 15]: unsigned times x's signed codes, no sign trick needed.
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[p] + int64_t{b} * 32));
          const __m256i lo = _mm256_and_si256(v, nibble);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
          // Pairs are at most 2 * 15 * 127 and a group's 8 blocks sum to at most 30480: int16
          // holds the group's partial sums; one widening to int32 per group.
#pragma GCC unroll 8
          for (int m = 0; m < MM; ++m) {
            iacc[m][2 * p] = _mm256_add_epi16(iacc[m][2 * p], _mm256_maddubs_epi16(lo, xs[m]));
            iacc[m][2 * p + 1] = _mm256_add_epi16(iacc[m][2 * p + 1], _mm256_maddubs_epi16(hi, xs[m]));
          }
        } else {
          // |x| (unsigned) times w with x's sign: pairs stay within int16 (2 * 127 * 127).
          const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[p] + int64_t{b} * 64));
          const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[p] + int64_t{b} * 64 + 32));
#pragma GCC unroll 8
          for (int m = 0; m < MM; ++m) {
            iacc[m][2 * p] = _mm256_add_epi32(
                iacc[m][2 * p], _mm256_madd_epi16(_mm256_maddubs_epi16(xm[m], _mm256_sign_epi8(w0, xs[m])), ones));
            iacc[m][2 * p + 1] = _mm256_add_epi32(
                iacc[m][2 * p + 1],
                _mm256_madd_epi16(_mm256_maddubs_epi16(xm[m], _mm256_sign_epi8(w1, xs[m])), ones));
          }
        }
      }
    }
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      const __m256 s0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sw[p] + g * kPanel)));
      const __m256 s1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sw[p] + g * kPanel + 8)));
#pragma GCC unroll 8
      for (int m = 0; m < MM; ++m) {
        const int64_t gi = static_cast<int64_t>(row0 + m) * groups + g;
        const __m256 sx = _mm256_set1_ps(xr.scale[gi]);
        __m256i i0 = iacc[m][2 * p], i1 = iacc[m][2 * p + 1];
        if constexpr (kInt4) {  // int16 pair sums to int32; sum (u - 8) x = sum u x - 8 sum x.
          const __m256i off = _mm256_set1_epi32(8 * xr.sum[gi]);
          i0 = _mm256_sub_epi32(_mm256_madd_epi16(i0, ones), off);
          i1 = _mm256_sub_epi32(_mm256_madd_epi16(i1, ones), off);
        }
        acc[m][2 * p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm256_mul_ps(s0, sx), acc[m][2 * p]);
        acc[m][2 * p + 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), _mm256_mul_ps(s1, sx), acc[m][2 * p + 1]);
      }
    }
  }
  Store<MM, P>(acc, p0, M.n, Y, ldy, accumulate, act);
}

// Without AVX2: the same integer sums and float32 steps, scalar.
template <int MM>
void KernelQuantGeneric(const QuantRows& xr, int row0, const PackedMatrix& M, int panel, float* Y, int ldy,
                        bool accumulate, Activation act) {
  const int c0 = panel * kPanel;
  const int cols = std::min(kPanel, M.n - c0);
  for (int m = 0; m < MM; ++m) {
    float* y = Y + static_cast<int64_t>(m) * ldy + c0;
    const int8_t* xq = xr.q.data() + static_cast<int64_t>(row0 + m) * xr.kp;
    for (int c = 0; c < cols; ++c) {
      float acc = 0;
      for (int g = 0; g < xr.groups; ++g) {
        int32_t sum = 0;
        for (int j = g * kQuantGroup; j < std::min(M.k, (g + 1) * kQuantGroup); ++j) {
          const uint8_t byte = M.codes[M.CodeIndex(c0 + c, j)];
          const int q = M.type == MatrixType::kInt4 ? (c < 8 ? byte & 15 : byte >> 4) - 8 : static_cast<int8_t>(byte);
          sum += q * xq[j];
        }
        const float sw = F16ToFloat(M.scales[M.ScaleIndex(c0 + c, g * kQuantGroup)]);
        acc = std::fma(static_cast<float>(sum), sw * xr.scale[static_cast<int64_t>(row0 + m) * xr.groups + g], acc);
      }
      y[c] = accumulate ? y[c] + acc : Apply(act, acc);
    }
  }
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
  for (int j = 0; j < k; ++j) {
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
  Store<MM, P>(acc, p0, M.n, Y, ldy, accumulate, act);
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

// Rows [0, rows) against panels [p0, p1): run(m, MM, P, p) computes rows m..m+MM-1 against
// panels p..p+P-1. Wide blocks of panels for 1-2 rows (latency-bound), one panel for more.
template <int kMaxRows, typename Run>
void Blocks(int rows, int p0, int p1, Run run) {
  using I1 = std::integral_constant<int, 1>;
  using I2 = std::integral_constant<int, 2>;
  using I4 = std::integral_constant<int, 4>;
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
  for (; m + kMaxRows <= rows; m += kMaxRows) rows_block(m, std::integral_constant<int, kMaxRows>{});
  switch (rows - m) {
    case 5:
      if constexpr (kMaxRows > 5) rows_block(m, std::integral_constant<int, 5>{});
      break;
    case 4:
      if constexpr (kMaxRows > 4) rows_block(m, std::integral_constant<int, 4>{});
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
  const int k = W.k;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (parallel)
  for (int t = 0; t < tasks; ++t) {
    Blocks<kRowBlock>(rows, t * kPanelsPerTask, std::min(panels, (t + 1) * kPanelsPerTask),
                      [&](int m, auto mm_tag, auto p_tag, int p) {
                        constexpr int MM = decltype(mm_tag)::value;
                        constexpr int P = decltype(p_tag)::value;
                        const float* x = X + static_cast<int64_t>(m) * k;
                        float* y = Y + static_cast<int64_t>(m) * ldy;
                        if constexpr (kAvx2) {
                          KernelAvx2<WT, MM, P>(x, k, W, p, y, ldy, accumulate, act);
                        } else {
                          for (int q = 0; q < P; ++q) KernelGeneric<MM>(x, k, W, p + q, y, ldy, accumulate, act);
                        }
                      });
  }
}

template <bool kAvx2, bool kInt4>
void LinearQuant(const float* X, int rows, const PackedMatrix& W, float* Y, int ldy, bool accumulate, int threads,
                 Activation act) {
  // Reused by the calling thread; the workers read it through `xr` (a name of the thread_local
  // itself would be each worker's own).
  thread_local QuantRows quantized;
  QuantRows& xr = quantized;
  QuantizeRows<kAvx2>(X, rows, W.k, threads, &xr);
  const int panels = (W.n + kPanel - 1) / kPanel;
  const int tasks = (panels + kPanelsPerTask - 1) / kPanelsPerTask;
  const bool parallel = tasks > 1 && int64_t{rows} * W.n * W.k > 65536;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (parallel)
  for (int t = 0; t < tasks; ++t) {
    Blocks<kRowBlockQuant>(rows, t * kPanelsPerTask, std::min(panels, (t + 1) * kPanelsPerTask),
                           [&](int m, auto mm_tag, auto p_tag, int p) {
                             constexpr int MM = decltype(mm_tag)::value;
                             constexpr int P = decltype(p_tag)::value;
                             float* y = Y + static_cast<int64_t>(m) * ldy;
                             if constexpr (kAvx2) {
                               KernelQuant<kInt4, MM, P>(xr, m, W, p, y, ldy, accumulate, act);
                             } else {
                               for (int q = 0; q < P; ++q) KernelQuantGeneric<MM>(xr, m, W, p + q, y, ldy, accumulate, act);
                             }
                           });
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
      return LinearQuant<kAvx2, false>(X, rows, W, Y, ldy, accumulate, threads, act);
    case MatrixType::kInt4:
      return LinearQuant<kAvx2, true>(X, rows, W, Y, ldy, accumulate, threads, act);
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
  const PackedMatrix layout{nullptr, n, k, nullptr, type};
  const int rows = (n + kPanel - 1) / kPanel * kPanel;
  const float lo = int4 ? -8.0f : -127.0f, hi = int4 ? 7.0f : 127.0f;
  float v[kQuantGroup];
  for (int r = 0; r < rows; ++r) {
    const float* row = r < n ? src + static_cast<int64_t>(r) * k : nullptr;
    const int c = r % kPanel;
    for (int g = 0; g < groups; ++g) {
      const int j0 = g * kQuantGroup, j1 = row == nullptr ? j0 : std::min(k, j0 + kQuantGroup);
      float extreme = 0;  // The group's weight of largest magnitude (the first of equals).
      for (int j = j0; j < j1; ++j) {
        if (!std::isfinite(row[j])) return false;
        if (std::fabs(row[j]) > std::fabs(extreme)) extreme = row[j];
      }
      const uint16_t s16 = FloatToF16(int4 ? extreme / -8.0f : std::fabs(extreme) / 127.0f);
      const float s = F16ToFloat(s16);
      if (!std::isfinite(s)) return false;
      scales[layout.ScaleIndex(r, j0)] = s16;
      // q = round-to-nearest-even(w / s), clamped (the same as clamping first: the bounds are
      // integers); past k and in an all-zero group, 0.
      for (int i = 0; i < kQuantGroup; ++i) {
        const float x = (j0 + i < j1 && s != 0.0f) ? row[j0 + i] / s : 0.0f;
        v[i] = (std::clamp(x, lo, hi) + kRoundMagic) - kRoundMagic;
      }
      uint8_t* out = codes + layout.CodeIndex(r, j0);  // 4 codes per block, blocks 4 (int4) or 16 rows apart.
      const int64_t block_stride = int4 ? 32 : 64;
      for (int i = 0; i < kQuantGroup; ++i) {
        const int q = static_cast<int>(v[i]);
        uint8_t& byte = out[(i / 4) * block_stride + i % 4];
        if (!int4) {
          byte = static_cast<uint8_t>(static_cast<int8_t>(q));
        } else {
          const uint8_t u = static_cast<uint8_t>(q + 8);
          byte = c < 8 ? static_cast<uint8_t>((byte & 0xf0) | u) : static_cast<uint8_t>((byte & 0x0f) | (u << 4));
        }
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
