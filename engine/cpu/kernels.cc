#include "engine/cpu/kernels.h"

#include <cmath>

namespace rwkv::cpu {

namespace {

// out = (x - mean) / sqrt(biased var + eps) * w + b over n values. `out` may alias `x`. Double
// accumulators: cheap at these widths and they keep the statistics exact to fp32 rounding.
void Normalize(const float* x, int n, const float* w, const float* b, float eps, float* out) {
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += x[i];
  const double mean = sum / n;
  double var = 0;
  for (int i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  const float inv = static_cast<float>(1.0 / std::sqrt(var / n + eps));
  const float m = static_cast<float>(mean);
  for (int i = 0; i < n; ++i) out[i] = (x[i] - m) * inv * w[i] + b[i];
}

}  // namespace

void LayerNormRows(const float* in, int rows, int width, const float* w, const float* b, float* out) {
  for (int r = 0; r < rows; ++r) {
    Normalize(in + static_cast<int64_t>(r) * width, width, w, b, kLayerNormEps, out + static_cast<int64_t>(r) * width);
  }
}

void GroupNormRows(float* y, int rows, int width, int group, const float* w, const float* b) {
  for (int r = 0; r < rows; ++r) {
    float* row = y + static_cast<int64_t>(r) * width;
    for (int g0 = 0; g0 < width; g0 += group) Normalize(row + g0, group, w + g0, b + g0, kGroupNormEps, row + g0);
  }
}

void Wkv7Head(float* S, int N, int steps, int64_t stride, const float* r, const float* d, const float* k,
              const float* v, const float* a, const float* b, float* y) {
  for (int t = 0; t < steps; ++t) {
    const int64_t o = t * stride;
    const float* __restrict rt = r + o;
    const float* __restrict dt = d + o;
    const float* __restrict kt = k + o;
    const float* __restrict at = a + o;
    const float* __restrict bt = b + o;
    const float* vt = v + o;
    float* yt = y + o;
    for (int i = 0; i < N; ++i) {
      float* __restrict row = S + static_cast<int64_t>(i) * N;
      float sa = 0.0f;
#pragma omp simd reduction(+ : sa)
      for (int j = 0; j < N; ++j) sa += row[j] * at[j];
      const float vi = vt[i];
      float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
      for (int j = 0; j < N; ++j) {
        const float s = row[j] * dt[j] + sa * bt[j] + vi * kt[j];
        row[j] = s;
        acc += s * rt[j];
      }
      yt[i] = acc;
    }
  }
}

void Wkv6Head(float* S, int N, int steps, int64_t stride, const float* r, const float* d, const float* k,
              const float* v, const float* u, float* y) {
  for (int t = 0; t < steps; ++t) {
    const int64_t o = t * stride;
    const float* rt = r + o;
    const float* dt = d + o;
    const float* kt = k + o;
    const float* __restrict vt = v + o;
    float* __restrict yt = y + o;
    for (int j = 0; j < N; ++j) yt[j] = 0.0f;
    for (int i = 0; i < N; ++i) {
      float* __restrict row = S + static_cast<int64_t>(i) * N;
      const float ri = rt[i], ki = kt[i], di = dt[i], bonus = u[i] * ki;
#pragma omp simd
      for (int j = 0; j < N; ++j) {
        const float kv = ki * vt[j];
        yt[j] += ri * (row[j] + bonus * vt[j]);
        row[j] = di * row[j] + kv;
      }
    }
  }
}

}  // namespace rwkv::cpu
