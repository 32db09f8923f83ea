#include "engine/cuda/ops.h"
#include "engine/cuda/rwkv7_head.cuh"

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
  const bool bonus = r_k != nullptr;
  const float val =
      GroupNormChannel(on ? y[o] : 0.0f, bonus && on ? r[o] : 0.0f, bonus && on ? k[o] : 0.0f,
                       bonus && on ? v[o] : 0.0f, g != nullptr ? g + o : nullptr, {r_k, w, b, eps}, c, N, on);
  if (on) out[o] = FromFloat<T>(val);
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
