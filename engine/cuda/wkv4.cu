#include "engine/cuda/ops.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

// One thread per (piece, channel), sequential over the piece's rows; aa, bb, pp in registers.
template <typename T>
__global__ void Wkv4Kernel(StateView S, DeviceTables t, int C, const float* r, const float* k, const float* v,
                           const float* w, const float* u, T* out) {
  const int p = blockIdx.x, i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= C) return;
  float* st = S.pool + static_cast<int64_t>(t.piece_slot[p]) * S.slot_floats + S.offset;
  float aa = st[i], bb = st[C + i], pp = st[2 * C + i];
  const float wi = w[i], ui = u[i];
  const int row0 = t.piece_row[p], count = t.piece_count[p];
  for (int step = 0; step < count; ++step) {
    const int64_t o = static_cast<int64_t>(row0 + step) * C + i;
    const float kk = k[o], vv = v[o];
    float q = fmaxf(pp, ui + kk);
    float e1 = expf(pp - q), e2 = expf(ui + kk - q);
    out[o] = FromFloat<T>(r[o] * (e1 * aa + e2 * vv) / (e1 * bb + e2));
    q = fmaxf(pp + wi, kk);
    e1 = expf(pp + wi - q);
    e2 = expf(kk - q);
    aa = e1 * aa + e2 * vv;
    bb = e1 * bb + e2;
    pp = q;
  }
  st[i] = aa;
  st[C + i] = bb;
  st[2 * C + i] = pp;
}

}  // namespace

void Wkv4(StateView S, DeviceTables t, int pieces, int C, const float* r, const float* k, const float* v,
          const float* w, const float* u, void* out, WeightType wt, cudaStream_t s) {
  if (pieces == 0) return;
  DispatchType(wt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    Wkv4Kernel<T><<<dim3(pieces, (C + 127) / 128), 128, 0, s>>>(S, t, C, r, k, v, w, u, static_cast<T*>(out));
  });
}

}  // namespace rwkv::cuda
