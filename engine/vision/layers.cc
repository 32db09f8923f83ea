#include "engine/vision/layers.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/cpu/gemm.h"
#include "engine/packed_matrix.h"
#include "engine/status.h"

namespace rwkv::vision {

absl::StatusOr<const TensorInfo*> GetTensor(const TensorFile& f, const std::string& what, const std::string& name,
                                            std::vector<int64_t> shape) {
  const TensorInfo* t = f.Find(name);
  if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat(what, ": tensor ", name, " is missing"));
  if (!IsFloat(t->dtype)) return absl::InvalidArgumentError(absl::StrCat(what, ": tensor ", name, " is not floating point"));
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) shape[i] = i < t->shape.size() ? t->shape[i] : -1;
  }
  if (t->shape != shape) {
    TensorInfo want;
    want.shape = shape;
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": tensor ", name, " is ", t->ShapeString(), "; expected ", want.ShapeString()));
  }
  return t;
}

std::vector<float> ReadFloats(const TensorInfo& t) {
  std::vector<float> v(t.numel());
  CopyToFloat(t, v.data());
  return v;
}

absl::StatusOr<std::vector<float>> ReadVector(const TensorFile& f, const std::string& what, const std::string& name,
                                              int n) {
  RWKV_ASSIGN_OR_RETURN(const TensorInfo* t, GetTensor(f, what, name, {n}));
  return ReadFloats(*t);
}

void Dense::Apply(const float* x, int rows, float* y, int threads) const {
  cpu::Linear(x, rows, PackedMatrix{packed.data(), n, k}, y, n, false, threads);
  if (bias.empty()) return;
  for (int r = 0; r < rows; ++r) {
    float* yr = y + static_cast<int64_t>(r) * n;
    for (int i = 0; i < n; ++i) yr[i] += bias[i];
  }
}

absl::StatusOr<Dense> LoadDense(const TensorFile& f, const std::string& what, const std::string& name, int n, int k,
                                bool bias, const TensorInfo* weight) {
  if (weight == nullptr) {
    RWKV_ASSIGN_OR_RETURN(weight, GetTensor(f, what, name + ".weight", {n, k}));
  }
  Dense d;
  d.n = n;
  d.k = k;
  const std::vector<float> rows = ReadFloats(*weight);
  d.packed.resize(PackedMatrix::Floats(n, k));
  cpu::Pack(rows.data(), n, k, d.packed.data());
  if (bias) {
    RWKV_ASSIGN_OR_RETURN(d.bias, ReadVector(f, what, name + ".bias", n));
  }
  return d;
}

void RowLayerNorm(const float* x, int rows, int d, const std::vector<float>& w, const std::vector<float>& b, float eps,
                  float* y) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * d;
    float* yr = y + static_cast<int64_t>(r) * d;
    double mean = 0, var = 0;
    for (int i = 0; i < d; ++i) mean += xr[i];
    mean /= d;
    for (int i = 0; i < d; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    const float inv = static_cast<float>(1.0 / std::sqrt(var / d + eps));
    const float m = static_cast<float>(mean);
    for (int i = 0; i < d; ++i) yr[i] = (xr[i] - m) * inv * w[i] + b[i];
  }
}

float Gelu(float x, bool tanh_form) {
  if (tanh_form) return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
}

std::vector<float> PatchRows(const float* pixels, int S, int P) {
  const int G = S / P, kp = 3 * P * P;
  std::vector<float> cols(static_cast<size_t>(G) * G * kp);
  for (int gy = 0; gy < G; ++gy) {
    for (int gx = 0; gx < G; ++gx) {
      float* row = cols.data() + static_cast<size_t>(gy * G + gx) * kp;
      for (int c = 0; c < 3; ++c) {
        for (int py = 0; py < P; ++py) {
          const float* src = pixels + (static_cast<size_t>(c) * S + gy * P + py) * S + gx * P;
          std::copy(src, src + P, row + (c * P + py) * P);
        }
      }
    }
  }
  return cols;
}

namespace {

bool HaveAvx2Fma() {
  static const bool have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return have;
}

// exp of 8 floats: x = n ln2 + r (ln2 in two parts, Cody-Waite), a degree-6 polynomial for exp(r)
// on |r| <= ln2/2 (Cephes expf's coefficients), times 2^n built in the exponent bits.
__attribute__((target("avx2,fma"))) inline __m256 Exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.33654f);  // exp(lo) = 2^-126, the smallest normal float.
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), lo);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i pow2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(pow2)));
}

__attribute__((target("avx2,fma"))) void SoftmaxRowAvx2(float* row, int n) {
  int j = 0;
  __m256 vmx = _mm256_set1_ps(row[0]);
  for (; j + 8 <= n; j += 8) vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(row + j));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmx);
  float mx = lanes[0];
  for (int i = 1; i < 8; ++i) mx = std::max(mx, lanes[i]);
  for (; j < n; ++j) mx = std::max(mx, row[j]);
  const __m256 vm = _mm256_set1_ps(mx);
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
    _mm256_storeu_ps(row + j, e);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double d[4];
  _mm256_store_pd(d, _mm256_add_pd(s0, s1));
  double sum = d[0] + d[1] + d[2] + d[3];
  if (j < n) {  // The tail through the same exp.
    alignas(32) float tail[8];
    for (int i = 0; i < 8; ++i) tail[i] = j + i < n ? row[j + i] - mx : -1e30f;
    _mm256_store_ps(tail, Exp8(_mm256_load_ps(tail)));
    for (int i = 0; j + i < n; ++i) sum += row[j + i] = tail[i];
  }
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / sum));
  j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), inv));
  for (; j < n; ++j) row[j] *= static_cast<float>(1.0 / sum);
}

}  // namespace

void SoftmaxRow(float* row, int n) {
  if (n <= 0) return;
  if (HaveAvx2Fma()) return SoftmaxRowAvx2(row, n);
  SoftmaxRowScalar(row, n);
}

void SoftmaxRowScalar(float* row, int n) {
  if (n <= 0) return;
  float mx = row[0];
  for (int j = 1; j < n; ++j) mx = std::max(mx, row[j]);
  double sum = 0;
  for (int j = 0; j < n; ++j) sum += row[j] = std::exp(row[j] - mx);
  const float inv = static_cast<float>(1.0 / sum);
  for (int j = 0; j < n; ++j) row[j] *= inv;
}

void HeadAttention(const float* q, const float* k, const float* v, int ld, int T, int hd, float scale,
                   const std::function<void(float* scores)>& add_to_scores, float* out, int ld_out, int threads,
                   AttentionScratch* s) {
  s->q.resize(static_cast<size_t>(T) * hd);
  s->k.resize(s->q.size());
  s->vt.resize(s->q.size());
  s->out.resize(s->q.size());
  s->kpack.resize(PackedMatrix::Floats(T, hd));
  s->vpack.resize(PackedMatrix::Floats(hd, T));
  s->scores.resize(static_cast<size_t>(T) * T);
  // Rows are independent everywhere below: the scalar passes run on the GEMM's threads too (each
  // row's arithmetic is the same whichever thread does it).
#pragma omp parallel for schedule(static) num_threads(threads) if (T >= 16)
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < hd; ++i) {
      s->q[static_cast<size_t>(t) * hd + i] = q[static_cast<size_t>(t) * ld + i] * scale;  // q scaled first.
      s->k[static_cast<size_t>(t) * hd + i] = k[static_cast<size_t>(t) * ld + i];
      s->vt[static_cast<size_t>(i) * T + t] = v[static_cast<size_t>(t) * ld + i];
    }
  }
  // k as the "weight" (T outputs of hd inputs), then the probabilities against v^T.
  cpu::Pack(s->k.data(), T, hd, s->kpack.data());
  cpu::Linear(s->q.data(), T, PackedMatrix{s->kpack.data(), T, hd}, s->scores.data(), T, false, threads);
  if (add_to_scores) add_to_scores(s->scores.data());
#pragma omp parallel for schedule(static) num_threads(threads) if (T >= 16)
  for (int t = 0; t < T; ++t) SoftmaxRow(s->scores.data() + static_cast<size_t>(t) * T, T);
  cpu::Pack(s->vt.data(), hd, T, s->vpack.data());
  cpu::Linear(s->scores.data(), T, PackedMatrix{s->vpack.data(), hd, T}, s->out.data(), hd, false, threads);
  for (int t = 0; t < T; ++t) {
    std::copy(s->out.begin() + static_cast<size_t>(t) * hd, s->out.begin() + static_cast<size_t>(t + 1) * hd,
              out + static_cast<size_t>(t) * ld_out);
  }
}

}  // namespace rwkv::vision
