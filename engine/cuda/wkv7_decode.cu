#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.h"
#include "engine/cuda/rwkv7_head.cuh"

namespace rwkv::cuda {
namespace {

// One block per (piece, head), whole warps; thread i owns value row i of S in registers. Per row
// of the piece: the preparation, the recurrence and the group norm with bonus and gate, each the
// separate kernels' own code (rwkv7_head.cuh) with the same block shape, so the same floats.
template <int N, typename T>
__global__ void Wkv7DecodeKernel(StateView S, DeviceTables t, int C, PrepArgs prep, const float* r, const float* g,
                                 GroupNormArgs gn, T* out) {
  AfterPrevious();
  const int p = blockIdx.x, h = blockIdx.y, i = threadIdx.x;
  const bool on = i < N;
  float* Sh = HeadState(S, t, p, h, N);
  __shared__ float tile[N < kWkvTileRows ? N : kWkvTileRows][N + 1];
  float s[N];
  MoveState<N, false>(Sh, s, tile);
  __shared__ float rs[N], ds[N], ks[N], as[N], bs[N];
  const int c = h * N + i;
  const int row0 = t.piece_row[p], count = t.piece_count[p];
  for (int step = 0; step < count; ++step) {
    const int64_t o = static_cast<int64_t>(row0 + step) * C + c;
    const PrepChannel q = PrepRowChannel(prep, o, c, on);
    __syncthreads();  // The previous row's readers of the shared vectors are done.
    if (on) {
      rs[i] = r[o];
      ds[i] = q.d;
      ks[i] = q.k;
      as[i] = q.a;
      bs[i] = q.b;
    }
    __syncthreads();
    const float y = on ? Wkv7Row<N>(s, rs, ds, ks, as, bs, q.v) : 0.0f;
    const float val = GroupNormChannel(y, on ? rs[i] : 0.0f, q.k, q.v, on ? g + o : nullptr, gn, c, N, on);
    if (on) out[o] = FromFloat<T>(val);
  }
  __syncthreads();
  MoveState<N, true>(Sh, s, tile);
}

template <int N>
void Launch(StateView S, DeviceTables t, int pieces, int H, int C, PrepArgs prep, const float* r, const float* g,
            GroupNormArgs gn, void* out, WeightType wt, cudaStream_t s) {
  DispatchType(wt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    LaunchAfterPrevious(Wkv7DecodeKernel<N, T>, dim3(pieces, H), (N + 31) / 32 * 32, s, S, t, C, prep, r, g, gn,
                        static_cast<T*>(out));
  });
}

}  // namespace

void Wkv7Decode(StateView S, DeviceTables t, int pieces, int H, int N, int C, PrepArgs prep, const float* r,
                const float* g, const float* r_k, const float* w, const float* b, float eps, void* out, WeightType wt,
                cudaStream_t s) {
  if (pieces == 0) return;
  const GroupNormArgs gn{r_k, w, b, eps};
  switch (N) {
    case 16:
      Launch<16>(S, t, pieces, H, C, prep, r, g, gn, out, wt, s);
      break;
    case 32:
      Launch<32>(S, t, pieces, H, C, prep, r, g, gn, out, wt, s);
      break;
    case 64:
      Launch<64>(S, t, pieces, H, C, prep, r, g, gn, out, wt, s);
      break;
    case 128:
      Launch<128>(S, t, pieces, H, C, prep, r, g, gn, out, wt, s);
      break;
    default:  // Refused by CudaBackend::Create.
      break;
  }
}

}  // namespace rwkv::cuda
