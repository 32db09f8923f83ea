#include "engine/cuda/ops.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

__device__ __forceinline__ float Sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// One block per (row, head), one thread per channel of the head; blocks have a whole number of
// warps (threads past N only add zeros to the reduction).
__global__ void TimeMixPrepKernel(PrepArgs a, int C, int N) {
  const int r = blockIdx.x, h = blockIdx.y, j = threadIdx.x;
  const bool on = j < N;
  const int64_t o = static_cast<int64_t>(r) * C + h * N + j;
  const int c = h * N + j;
  float kk = 0.0f, alpha = 0.0f;
  if (on) {
    if (a.v_first != nullptr) a.v[o] += (a.v_first[o] - a.v[o]) * Sigmoid(a.v0[c] + a.vg[o]);
    a.d[o] = expf(-0.6065306597126334f * Sigmoid(a.w0[c] + a.d[o]));  // e^{-1/2} (spec 6.2)
    alpha = Sigmoid(a.a0[c] + a.alpha[o]);
    kk = a.k[o] * a.k_k[c];
  }
  const float norm = fmaxf(sqrtf(BlockSum(kk * kk)), 1e-12f);
  if (!on) return;
  const float kn = kk / norm;
  a.alpha[o] = -kn;      // a
  a.vg[o] = kn * alpha;  // b
  a.k[o] *= 1.0f + (alpha - 1.0f) * a.k_a[c];
}

}  // namespace

void TimeMixPrep(PrepArgs a, int rows, int C, int N, cudaStream_t s) {
  if (rows == 0) return;
  TimeMixPrepKernel<<<dim3(rows, C / N), (N + 31) / 32 * 32, 0, s>>>(a, C, N);
}

}  // namespace rwkv::cuda
