#include "engine/cuda/ops.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

// One block per (row, head), one thread per channel, whole warps (threads past N add zeros).
template <typename T>
__global__ void GroupNormBonusGateKernel(const float* y, const float* r, const float* k, const float* v, const float* g,
                                         const float* r_k, const float* w, const float* b, float eps, int C, int N,
                                         T* out) {
  const int row = blockIdx.x, h = blockIdx.y, j = threadIdx.x;
  const bool on = j < N;
  const int c = h * N + j;
  const int64_t o = static_cast<int64_t>(row) * C + c;
  const float x = on ? y[o] : 0.0f;
  const float mean = BlockSum(x) / N;
  const float dev = on ? x - mean : 0.0f;
  const float inv = rsqrtf(BlockSum(dev * dev) / N + eps);
  float val = dev * inv * (on ? w[c] : 0.0f) + (on ? b[c] : 0.0f);
  if (r_k != nullptr) {  // Uniform across the grid: every thread takes the same branch.
    const float bonus = BlockSum(on ? r[o] * k[o] * r_k[c] : 0.0f);
    if (on) val += bonus * v[o];
  }
  if (on) out[o] = FromFloat<T>(g != nullptr ? val * g[o] : val);
}

}  // namespace

void GroupNormBonusGate(const float* y, const float* r, const float* k, const float* v, const float* g,
                        const float* r_k, const float* w, const float* b, float eps, int rows, int C, int N, void* out,
                        WeightType wt, cudaStream_t s) {
  if (rows == 0) return;
  DispatchType(wt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GroupNormBonusGateKernel<T>
        <<<dim3(rows, C / N), (N + 31) / 32 * 32, 0, s>>>(y, r, k, v, g, r_k, w, b, eps, C, N, static_cast<T*>(out));
  });
}

}  // namespace rwkv::cuda
