// The per-head pieces of an RWKV-7 time mix (spec 6.2) that the separate kernels (TimeMixPrep,
// Wkv7, GroupNormBonusGate) and the fused decode kernel (Wkv7Decode) share, so that both compute
// the same floats in the same order. A block works on one head: thread j is channel j (value row
// j of the state); blocks have whole warps, threads past N are "off" and add zeros to the sums.
#ifndef RWKV_ENGINE_CUDA_RWKV7_HEAD_CUH_
#define RWKV_ENGINE_CUDA_RWKV7_HEAD_CUH_

#include "engine/cuda/ops.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {

__device__ __forceinline__ float PrepSigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// One row's prepared channel: value after the residual, decay, key after the in-context-rate
// mix, a = -kk, b = kk * alpha.
struct PrepChannel {
  float v, d, k, a, b;
};

// Channel c of row offset o (o = row * C + c). Every thread of the block calls it (a block sum
// inside); off threads get zeros.
__device__ __forceinline__ PrepChannel PrepRowChannel(const PrepArgs& a, int64_t o, int c, bool on) {
  PrepChannel q{};
  float kk = 0.0f, alpha = 0.0f;
  if (on) {
    q.v = a.v[o];
    if (a.v_first != nullptr) q.v += (a.v_first[o] - q.v) * PrepSigmoid(a.v0[c] + a.vg[o]);
    q.d = expf(-0.6065306597126334f * PrepSigmoid(a.w0[c] + a.d[o]));  // e^{-1/2} (spec 6.2)
    alpha = PrepSigmoid(a.a0[c] + a.alpha[o]);
    kk = a.k[o] * a.k_k[c];
  }
  const float norm = fmaxf(sqrtf(BlockSum(kk * kk)), 1e-12f);
  if (on) {
    const float kn = kk / norm;
    q.a = -kn;
    q.b = kn * alpha;
    q.k = a.k[o] * (1.0f + (alpha - 1.0f) * a.k_a[c]);
  }
  return q;
}

// GroupNorm of the head's y (x is this channel's), times w plus b, plus the bonus
// (sum over the head of r k r_k) times v when r_k is set, times g when set. Every thread calls it.
struct GroupNormArgs {
  const float *r_k, *w, *b;
  float eps;
};
__device__ __forceinline__ float GroupNormChannel(float x, float r, float k, float v, const float* g_at,
                                                  const GroupNormArgs& n, int c, int N, bool on) {
  const float xo = on ? x : 0.0f;
  const float mean = BlockSum(xo) / N;
  const float dev = on ? xo - mean : 0.0f;
  const float inv = rsqrtf(BlockSum(dev * dev) / N + n.eps);
  float val = dev * inv * (on ? n.w[c] : 0.0f) + (on ? n.b[c] : 0.0f);
  if (n.r_k != nullptr) {  // Uniform across the grid: every thread takes the same branch.
    const float bonus = BlockSum(on ? r * k * n.r_k[c] : 0.0f);
    if (on) val += bonus * v;
  }
  return g_at != nullptr && on ? val * *g_at : val;
}

// The state moves between global memory and the threads' rows through a shared tile of kTileRows
// rows at a time: the block reads and writes consecutive addresses (coalesced), and thread i's
// row sits at stride N + 1 floats so that the threads' reads of the tile hit distinct banks.
// (Reading row i straight from global memory made each warp touch 32 cache lines per load: above
// batch ~110 the state traffic, not the weights, is a 1.5B decode step's floor.) Threads past N
// take no part but the barriers.
constexpr int kWkvTileRows = 32;

// Head h's N x N state in piece p's slot.
__device__ __forceinline__ float* HeadState(const StateView& S, const DeviceTables& t, int p, int h, int N) {
  return S.pool + static_cast<int64_t>(t.piece_slot[p]) * S.slot_floats + S.offset + static_cast<int64_t>(h) * N * N;
}

template <int N, bool kStore>
__device__ __forceinline__ void MoveState(float* Sh, float (&s)[N], float (*tile)[N + 1]) {
  const int i = threadIdx.x;
  const bool on = i < N;
  constexpr int R = N < kWkvTileRows ? N : kWkvTileRows;
  for (int r0 = 0; r0 < N; r0 += R) {
    if constexpr (kStore) {
      if (i >= r0 && i < r0 + R) {
#pragma unroll
        for (int j = 0; j < N; ++j) tile[i - r0][j] = s[j];
      }
      __syncthreads();
      if (on) {
        for (int e = i; e < R * N; e += N) Sh[r0 * N + e] = tile[e / N][e % N];
      }
      __syncthreads();
    } else {
      if (on) {
        for (int e = i; e < R * N; e += N) tile[e / N][e % N] = Sh[r0 * N + e];
      }
      __syncthreads();
      if (i >= r0 && i < r0 + R) {
#pragma unroll
        for (int j = 0; j < N; ++j) s[j] = tile[i - r0][j];
      }
      __syncthreads();
    }
  }
}

// One token of the recurrence for value row i: S = S diag(d) + (S a) b^T + v k^T, y_i = S_i . r,
// the row's vectors in shared memory.
template <int N>
__device__ __forceinline__ float Wkv7Row(float (&s)[N], const float* rs, const float* ds, const float* ks,
                                         const float* as, const float* bs, float vi) {
  float sa = 0.0f;
#pragma unroll
  for (int j = 0; j < N; ++j) sa += s[j] * as[j];
  float acc = 0.0f;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    s[j] = s[j] * ds[j] + sa * bs[j] + vi * ks[j];
    acc += s[j] * rs[j];
  }
  return acc;
}

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_RWKV7_HEAD_CUH_
