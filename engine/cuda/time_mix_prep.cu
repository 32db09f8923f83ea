#include "engine/cuda/ops.h"
#include "engine/cuda/rwkv7_head.cuh"

namespace rwkv::cuda {
namespace {

// One block per (row, head), one thread per channel of the head; blocks have a whole number of
// warps (threads past N only add zeros to the reduction).
__global__ void TimeMixPrepKernel(PrepArgs a, int C, int N) {
  const int r = blockIdx.x, h = blockIdx.y, j = threadIdx.x;
  const bool on = j < N;
  const int64_t o = static_cast<int64_t>(r) * C + h * N + j;
  const PrepChannel q = PrepRowChannel(a, o, h * N + j, on);
  if (!on) return;
  a.v[o] = q.v;
  a.d[o] = q.d;
  a.alpha[o] = q.a;
  a.vg[o] = q.b;
  a.k[o] = q.k;
}

}  // namespace

void TimeMixPrep(PrepArgs a, int rows, int C, int N, cudaStream_t s) {
  if (rows == 0) return;
  TimeMixPrepKernel<<<dim3(rows, C / N), (N + 31) / 32 * 32, 0, s>>>(a, C, N);
}

}  // namespace rwkv::cuda
