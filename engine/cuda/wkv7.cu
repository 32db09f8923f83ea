#include "engine/cuda/ops.h"
#include "engine/cuda/rwkv7_head.cuh"

namespace rwkv::cuda {
namespace {

constexpr int kMaxN = 128;

// One block per (piece, head); thread i owns value row i of S, kept in registers across the
// piece's tokens, and the per-token vectors are staged in shared memory.
template <int N>
__global__ void Wkv7Kernel(StateView S, DeviceTables t, int H, int C, const float* r, const float* d, const float* k,
                           const float* v, const float* a, const float* b, float* y) {
  const int p = blockIdx.x, h = blockIdx.y, i = threadIdx.x;
  float* Sh = HeadState(S, t, p, h, N);
  __shared__ float tile[N < kWkvTileRows ? N : kWkvTileRows][N + 1];
  float s[N];
  MoveState<N, false>(Sh, s, tile);
  __shared__ float rs[N], ds[N], ks[N], as[N], bs[N];
  const int row0 = t.piece_row[p], count = t.piece_count[p];
  for (int step = 0; step < count; ++step) {
    const int64_t o = static_cast<int64_t>(row0 + step) * C + h * N;
    __syncthreads();
    rs[i] = r[o + i];
    ds[i] = d[o + i];
    ks[i] = k[o + i];
    as[i] = a[o + i];
    bs[i] = b[o + i];
    __syncthreads();
    const float acc = Wkv7Row<N>(s, rs, ds, ks, as, bs, v[o + i]);
    y[o + i] = acc;
  }
  __syncthreads();
  MoveState<N, true>(Sh, s, tile);
}

}  // namespace

void Wkv7(StateView S, DeviceTables t, int pieces, int H, int N, int C, const float* r, const float* d, const float* k,
          const float* v, const float* a, const float* b, float* y, cudaStream_t s) {
  if (pieces == 0) return;
  const dim3 grid(pieces, H);
  switch (N) {
    case 16:
      Wkv7Kernel<16><<<grid, 16, 0, s>>>(S, t, H, C, r, d, k, v, a, b, y);
      break;
    case 32:
      Wkv7Kernel<32><<<grid, 32, 0, s>>>(S, t, H, C, r, d, k, v, a, b, y);
      break;
    case 64:
      Wkv7Kernel<64><<<grid, 64, 0, s>>>(S, t, H, C, r, d, k, v, a, b, y);
      break;
    case 128:
      Wkv7Kernel<128><<<grid, 128, 0, s>>>(S, t, H, C, r, d, k, v, a, b, y);
      break;
    default:  // Refused by CudaBackend::Create.
      break;
  }
  static_assert(kMaxN == 128);
}

}  // namespace rwkv::cuda
