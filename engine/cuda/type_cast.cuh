// Conversions between float32 and the GEMM input types inside kernels.
#ifndef RWKV_ENGINE_CUDA_TYPE_CAST_CUH_
#define RWKV_ENGINE_CUDA_TYPE_CAST_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "engine/cuda/cuda_util.h"

namespace rwkv::cuda {

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) with T the C++ type of `wt`.
template <typename F>
void DispatchType(WeightType wt, F&& f) {
  switch (wt) {
    case WeightType::kF32:
      f(TypeTag<float>{});
      break;
    case WeightType::kF16:
      f(TypeTag<__half>{});
      break;
    case WeightType::kBF16:
      f(TypeTag<__nv_bfloat16>{});
      break;
  }
}

// Block-wide sum over blockDim.x threads (a multiple of 32, at most 1024); every thread gets it.
__device__ __forceinline__ float BlockSum(float v);

// A row's LayerNorm statistics, as the CPU oracle computes them: two passes (the mean, then the
// centred variance); *mean and *inv = 1 / sqrt(var + eps) for every thread.
__device__ __forceinline__ void RowMeanInv(const float* x, int C, float eps, float* mean, float* inv) {
  float sum = 0.0f;
  for (int i = threadIdx.x; i < C; i += blockDim.x) sum += x[i];
  const float m = BlockSum(sum) / C;
  float var = 0.0f;
  for (int i = threadIdx.x; i < C; i += blockDim.x) {
    const float d = x[i] - m;
    var += d * d;
  }
  *mean = m;
  *inv = rsqrtf(BlockSum(var) / C + eps);
}

__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float partial[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // partial[] may still be read by a previous call.
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  float t = lane < warps ? partial[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffff, t, o);
  return t;
}

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_TYPE_CAST_CUH_
