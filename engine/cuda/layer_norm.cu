#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

// One block per row. Two passes over the row (mean, then centred variance), as the CPU oracle.
__global__ void LayerNormKernel(const float* in, const int32_t* rows_index, int C, const float* w, const float* b,
                                float eps, float* out) {
  AfterPrevious();
  const int r = blockIdx.x;
  const float* x = in + static_cast<int64_t>(rows_index ? rows_index[r] : r) * C;
  float* y = out + static_cast<int64_t>(r) * C;
  float mean, inv;
  RowMeanInv(x, C, eps, &mean, &inv);
  for (int i = threadIdx.x; i < C; i += blockDim.x) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

}  // namespace

void LayerNorm(const float* in, const int32_t* rows_index, int rows, int C, const float* w, const float* b, float eps,
               float* out, cudaStream_t s) {
  if (rows == 0) return;
  LaunchAfterPrevious(LayerNormKernel, rows, 256, s, in, rows_index, C, w, b, eps, out);
}

}  // namespace rwkv::cuda
