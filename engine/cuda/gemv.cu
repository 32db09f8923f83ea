#include "engine/cuda/act.cuh"
#include "engine/cuda/gemv.h"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

// The float values of one 16-byte vector of T.
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  static constexpr int kN = 4;
  __device__ __forceinline__ static void Load(const float* p, float* out) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
  }
};
template <>
struct Vec<__half> {
  static constexpr int kN = 8;
  __device__ __forceinline__ static void Load(const __half* p, float* out) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __half22float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
};
template <>
struct Vec<__nv_bfloat16> {
  static constexpr int kN = 8;
  __device__ __forceinline__ static void Load(const __nv_bfloat16* p, float* out) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
};

// One group of `lanes` threads per output: each lane strides the output's weight row (and the
// same columns of every x row), the group sums by shuffles, its first lane writes the rows.
// Groups past n compute nothing but stay for the shuffles (whole-warp masks).
template <typename T>
__global__ void __launch_bounds__(kGemvThreads) GemvKernel(const __grid_constant__ GemvBatch b, int rows) {
  AfterPrevious();
  int ji = 0;
  while (ji + 1 < b.jobs && static_cast<int>(blockIdx.x) >= b.job[ji].block_end) ++ji;
  const GemvJob& j = b.job[ji];
  const int first_block = ji == 0 ? 0 : b.job[ji - 1].block_end;
  const int lanes = j.lanes;
  const int group = threadIdx.x / lanes, lane = threadIdx.x % lanes;
  const int o = (static_cast<int>(blockIdx.x) - first_block) * (kGemvThreads / lanes) + group;
  const bool valid = o < j.n;
  const T* x = static_cast<const T*>(j.x);
  const T* w = static_cast<const T*>(j.w) + static_cast<int64_t>(valid ? o : 0) * j.k;
  float acc[kGemvMaxRows];
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = 0.0f;
  if (valid) {
    if (j.vec) {
      constexpr int E = Vec<T>::kN;
#pragma unroll 2
      for (int i = lane * E; i < j.k; i += lanes * E) {
        float wf[E], xf[E];
        Vec<T>::Load(w + i, wf);
#pragma unroll
        for (int r = 0; r < kGemvMaxRows; ++r) {
          if (r < rows) {
            Vec<T>::Load(x + static_cast<int64_t>(r) * j.ldx + i, xf);
#pragma unroll
            for (int e = 0; e < E; ++e) acc[r] = fmaf(wf[e], xf[e], acc[r]);
          }
        }
      }
    } else {
      for (int i = lane; i < j.k; i += lanes) {
        const float wf = ToFloat(w[i]);
#pragma unroll
        for (int r = 0; r < kGemvMaxRows; ++r) {
          if (r < rows) acc[r] = fmaf(wf, ToFloat(x[static_cast<int64_t>(r) * j.ldx + i]), acc[r]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) {
    if (r < rows) {
      float v = acc[r];
      for (int off = lanes / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffff, v, off);
      if (valid && lane == 0) {
        const int64_t at = static_cast<int64_t>(r) * j.ldy + o;
        switch (j.out) {
          case GemvOut::kF32:
            static_cast<float*>(j.y)[at] = ApplyAct(v, j.act);
            break;
          case GemvOut::kF32Add:
            static_cast<float*>(j.y)[at] += v;
            break;
          case GemvOut::kTyped:
            static_cast<T*>(j.y)[at] = FromFloat<T>(ApplyAct(v, j.act));
            break;
        }
      }
    }
  }
}

}  // namespace

void Gemv(const GemvBatch& b, int rows, WeightType wt, cudaStream_t s) {
  const int blocks = GemvBlocks(b);
  if (blocks == 0 || rows == 0) return;
  DispatchType(wt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    LaunchAfterPrevious(GemvKernel<T>, blocks, kGemvThreads, s, b, rows);
  });
}

}  // namespace rwkv::cuda
