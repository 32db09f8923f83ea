#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

template <typename T>
__global__ void TokenShiftMixKernel(const float* z, int C, DeviceTables t, StateView shift, MixSet m) {
  const int r = blockIdx.x;
  const int p = t.row_piece[r];
  const bool first = r == t.piece_row[p];
  const float* cur = z + static_cast<int64_t>(r) * C;
  const float* prev =
      first ? shift.pool + static_cast<int64_t>(t.piece_slot[p]) * shift.slot_floats + shift.offset : cur - C;
  for (int i = threadIdx.x; i < C; i += blockDim.x) {
    const float c = cur[i], d = prev[i] - c;
    const int64_t o = static_cast<int64_t>(r) * C + i;
    for (int k = 0; k < m.n; ++k) {
      const float mix = m.add[k] != nullptr ? m.mix[k][i] + m.add[k][o] : m.mix[k][i];
      static_cast<T*>(m.out[k])[o] = FromFloat<T>(c + d * mix);
    }
  }
}

__global__ void SaveShiftKernel(const float* z, int C, DeviceTables t, StateView shift) {
  const int p = blockIdx.x;
  const float* last = z + static_cast<int64_t>(t.piece_row[p] + t.piece_count[p] - 1) * C;
  float* dst = shift.pool + static_cast<int64_t>(t.piece_slot[p]) * shift.slot_floats + shift.offset;
  for (int i = threadIdx.x; i < C; i += blockDim.x) dst[i] = last[i];
}

// Decode (every piece one row): the layer norm, the token-shift mixes and the save in one pass,
// each element's old shift read before the same thread overwrites it. The norm is
// LayerNormKernel's arithmetic, so results equal the three separate kernels bit for bit. Each
// row is spread over blockIdx.y slices of kSlice channels, each block working out the row's
// statistics itself (the same sums in the same order): a batch-1 step's row runs on C / 256
// multiprocessors rather than one.
constexpr int kSlice = 256;

template <typename T>
__global__ void NormShiftMixSaveKernel(const float* x, int C, const float* w, const float* b, float eps,
                                       DeviceTables t, StateView shift, MixSet m) {
  AfterPrevious();
  const int r = blockIdx.x;
  const float* xr = x + static_cast<int64_t>(r) * C;
  float mean, inv;
  RowMeanInv(xr, C, eps, &mean, &inv);  // LayerNormKernel's statistics.
  float* state = shift.pool + static_cast<int64_t>(t.piece_slot[t.row_piece[r]]) * shift.slot_floats + shift.offset;
  const int end = min(C, static_cast<int>(blockIdx.y + 1) * kSlice);
  for (int i = blockIdx.y * kSlice + threadIdx.x; i < end; i += blockDim.x) {
    const float c = (xr[i] - mean) * inv * w[i] + b[i];
    const float d = state[i] - c;
    const int64_t o = static_cast<int64_t>(r) * C + i;
    for (int k = 0; k < m.n; ++k) {
      const float mix = m.add[k] != nullptr ? m.mix[k][i] + m.add[k][o] : m.mix[k][i];
      static_cast<T*>(m.out[k])[o] = FromFloat<T>(c + d * mix);
    }
    state[i] = c;
  }
}

}  // namespace

void NormShiftMixSave(const float* x, int rows, int C, const float* w, const float* b, float eps, DeviceTables t,
                      StateView shift, MixSet mixes, WeightType wt, cudaStream_t s) {
  if (rows == 0) return;
  DispatchType(wt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    LaunchAfterPrevious(NormShiftMixSaveKernel<T>, dim3(rows, (C + kSlice - 1) / kSlice), 256, s, x, C, w, b, eps, t,
                        shift, mixes);
  });
}

void TokenShiftMix(const float* z, int rows, int C, DeviceTables t, StateView shift, MixSet mixes, WeightType wt,
                   cudaStream_t s) {
  if (rows == 0) return;
  DispatchType(wt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    TokenShiftMixKernel<T><<<rows, 256, 0, s>>>(z, C, t, shift, mixes);
  });
}

void SaveShift(const float* z, int pieces, int C, DeviceTables t, StateView shift, cudaStream_t s) {
  if (pieces == 0) return;
  // After every mix of the step has read the old vector (same stream, so ordered after them).
  SaveShiftKernel<<<pieces, 256, 0, s>>>(z, C, t, shift);
}

}  // namespace rwkv::cuda
