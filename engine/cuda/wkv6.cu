#include "engine/cuda/ops.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

// One block per (piece, head); thread j owns value column j of the key-major S, kept in registers
// across the piece's tokens, and the per-token key-side vectors are staged in shared memory.
template <int N>
__global__ void Wkv6Kernel(StateView S, DeviceTables t, int C, const float* r, const float* d, int64_t d_stride,
                           const float* k, const float* v, const float* u, float* y) {
  const int p = blockIdx.x, h = blockIdx.y, j = threadIdx.x;
  float* Sh =
      S.pool + static_cast<int64_t>(t.piece_slot[p]) * S.slot_floats + S.offset + static_cast<int64_t>(h) * N * N;
  float s[N];
#pragma unroll
  for (int i = 0; i < N; ++i) s[i] = Sh[i * N + j];
  __shared__ float rs[N], ds[N], ks[N], us[N];
  us[j] = u[h * N + j];
  const int row0 = t.piece_row[p], count = t.piece_count[p];
  for (int step = 0; step < count; ++step) {
    const int64_t o = static_cast<int64_t>(row0 + step) * C + h * N;
    __syncthreads();
    rs[j] = r[o + j];
    ds[j] = d[(row0 + step) * d_stride + h * N + j];
    ks[j] = k[o + j];
    __syncthreads();
    const float vj = v[o + j];
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const float kv = ks[i] * vj;
      acc += rs[i] * (s[i] + us[i] * kv);
      s[i] = ds[i] * s[i] + kv;
    }
    y[o + j] = acc;
  }
#pragma unroll
  for (int i = 0; i < N; ++i) Sh[i * N + j] = s[i];
}

}  // namespace

void Wkv6(StateView S, DeviceTables t, int pieces, int H, int N, int C, const float* r, const float* d,
          int64_t d_stride, const float* k, const float* v, const float* u, float* y, cudaStream_t s) {
  if (pieces == 0) return;
  const dim3 grid(pieces, H);
  switch (N) {
    case 16:
      Wkv6Kernel<16><<<grid, 16, 0, s>>>(S, t, C, r, d, d_stride, k, v, u, y);
      break;
    case 32:
      Wkv6Kernel<32><<<grid, 32, 0, s>>>(S, t, C, r, d, d_stride, k, v, u, y);
      break;
    case 64:
      Wkv6Kernel<64><<<grid, 64, 0, s>>>(S, t, C, r, d, d_stride, k, v, u, y);
      break;
    case 128:
      Wkv6Kernel<128><<<grid, 128, 0, s>>>(S, t, C, r, d, d_stride, k, v, u, y);
      break;
    default:  // Refused by CudaBackend::Create.
      break;
  }
}

}  // namespace rwkv::cuda
