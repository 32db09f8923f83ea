// Launchers of the CUDA backend's kernels, one op per .cu file. Every pointer is device memory;
// every launch goes on `stream` and returns at once (errors surface at the next synchronising
// call, which the backend turns into a Status). Rows are tokens of one step, [rows, width]
// row-major; the state pool is one allocation of `slot_floats` floats per slot, addressed in
// place through the step tables' slot indices (no gather/scatter).
#ifndef RWKV_ENGINE_CUDA_OPS_H_
#define RWKV_ENGINE_CUDA_OPS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/cuda_util.h"

namespace rwkv::cuda {

// Per-step tables, device copies of StepPlan (engine/cuda/step_plan.h).
struct DeviceTables {
  const int32_t* tokens = nullptr;       // [rows]
  const int32_t* row_piece = nullptr;    // [rows] the piece a row belongs to
  const int32_t* piece_slot = nullptr;   // [pieces] pool slot
  const int32_t* piece_row = nullptr;    // [pieces] first row
  const int32_t* piece_count = nullptr;  // [pieces] rows
  const int32_t* head_rows = nullptr;    // [head_rows] rows whose logits are wanted, in output order
};

// Where a layer's state lives inside each slot (spec section 7, the CPU backend's layout):
// [shift_att C][S: H x N x N (RWKV-7 value-major, RWKV-5/6 key-major), or aa bb pp (3C) for
// RWKV-4][shift_ffn C].
struct StateView {
  float* pool = nullptr;
  int64_t slot_floats = 0;
  int64_t offset = 0;  // Float offset of the vector or matrix inside the slot.
};

enum class Act { kNone, kTanh, kSigmoid, kReluSquare, kSilu };

// x[r] = float(emb[tokens[r]]).
void Embed(const void* emb, WeightType t, const int32_t* tokens, int rows, int C, float* x, cudaStream_t s);

// out[i] = LayerNorm(in[rows_index ? rows_index[i] : i]) * w + b over C, biased variance.
void LayerNorm(const float* in, const int32_t* rows_index, int rows, int C, const float* w, const float* b, float eps,
               float* out, cudaStream_t s);

// Up to six token-shift mixes: out_m[r] = z[r] + (prev[r] - z[r]) * (mix_m + add_m[r]), where
// prev is the previous row of the same piece, or the slot's saved vector for a piece's first row,
// and add_m an optional per-row term ([rows, C] float32; RWKV-6's data-dependent mix, else null).
// Outputs are in the GEMM input type.
struct MixSet {
  const float* mix[6];
  void* out[6];
  int n;
  const float* add[6] = {};
};
void TokenShiftMix(const float* z, int rows, int C, DeviceTables t, StateView shift, MixSet mixes, WeightType wt,
                   cudaStream_t s);
// The slot keeps each piece's last row of z for the next step.
void SaveShift(const float* z, int pieces, int C, DeviceTables t, StateView shift, cudaStream_t s);
// Decode steps (every piece exactly one row): LayerNorm(x) * w + b, TokenShiftMix of it and
// SaveShift of it in one kernel (three launches a mix site fewer), equal to them bit for bit.
void NormShiftMixSave(const float* x, int rows, int C, const float* w, const float* b, float eps, DeviceTables t,
                      StateView shift, MixSet mixes, WeightType wt, cudaStream_t s);

// out = act(in) converted to the GEMM input type (n elements).
void Activate(const float* in, int64_t n, Act act, void* out, WeightType wt, cudaStream_t s);
// In place on float32: x = act(x).
void ActivateInPlace(float* x, int64_t n, Act act, cudaStream_t s);

// Per row and head (spec 6.2): value residual (layer > 0: v += (v_first - v) * sigmoid(v0 + vg)),
// decay d = exp(-e^-0.5 * sigmoid(w0 + d)), alpha = sigmoid(a0 + alpha), kk = L2norm(k * k_k)
// per head, a = -kk, b = kk * alpha, k *= 1 + (alpha - 1) * k_a. `vg` is read and overwritten
// with b; `alpha` becomes a.
struct PrepArgs {
  float *v, *d, *alpha, *k, *vg;
  const float* v_first;  // Null in layer 0.
  const float *w0, *a0, *v0, *k_k, *k_a;
};
void TimeMixPrep(PrepArgs a, int rows, int C, int N, cudaStream_t s);

// The RWKV-7 recurrence for every piece and head, sequential over a piece's rows:
// S = S * diag(d) + (S a) b^T + v k^T; y = S r. S is the slot's [N value rows][N key columns].
// Head sizes the WKV kernels (RWKV-5, 6, 7) are built for; RWKV-4 has no heads.
inline bool WkvHeadSizeSupported(int n) { return n == 16 || n == 32 || n == 64 || n == 128; }

void Wkv7(StateView S, DeviceTables t, int pieces, int H, int N, int C, const float* r, const float* d, const float* k,
          const float* v, const float* a, const float* b, float* y, cudaStream_t s);

// Decode steps (every piece one row): TimeMixPrep, Wkv7 and GroupNormBonusGate (r_k, w, b, eps;
// gate g) in one kernel per (piece, head), equal to the three bit for bit: `out` in the GEMM input
// type, the state updated in place; prep's vectors are read, not written.
void Wkv7Decode(StateView S, DeviceTables t, int pieces, int H, int N, int C, PrepArgs prep, const float* r,
                const float* g, const float* r_k, const float* w, const float* b, float eps, void* out, WeightType wt,
                cudaStream_t s);

// out = (GroupNorm_N(y) * w + b + (sum_j r k r_k per head) * v) * g, in the GEMM input type.
// RWKV-5/6 pass r_k null (no bonus term; r, k, v unread) and RWKV-5.0 passes g null (no gate).
void GroupNormBonusGate(const float* y, const float* r, const float* k, const float* v, const float* g,
                        const float* r_k, const float* w, const float* b, float eps, int rows, int C, int N, void* out,
                        WeightType wt, cudaStream_t s);

// The RWKV-5/6 recurrence for every piece and head (spec 4.2, 5.2), sequential over a piece's
// rows: y[j] = sum_i r[i] (S[i][j] + u[i] k[i] v[j]) with the old state, then
// S[i][j] = d[i] S[i][j] + k[i] v[j]. S is the slot's [N key rows][N value columns]; u is [C];
// d advances by `d_stride` floats per row (C for RWKV-6's per-token decay, 0 for RWKV-5's).
void Wkv6(StateView S, DeviceTables t, int pieces, int H, int N, int C, const float* r, const float* d,
          int64_t d_stride, const float* k, const float* v, const float* u, float* y, cudaStream_t s);

// The RWKV-4 recurrence with the max trick (spec 3.2), per piece and channel, sequential over a
// piece's rows; the slot holds aa, bb, pp at S.offset, + C, + 2C. w = -exp(time_decay), u =
// time_first, r already through the sigmoid; out = r * wkv in the GEMM input type.
void Wkv4(StateView S, DeviceTables t, int pieces, int C, const float* r, const float* k, const float* v,
          const float* w, const float* u, void* out, WeightType wt, cudaStream_t s);

// RWKV-6 decay (spec 5.2), in place: d = exp(-exp(time_decay + d)).
void Rwkv6Decay(float* d, const float* time_decay, int rows, int C, cudaStream_t s);

// The RWKV-4/5/6 channel-mix output, in place: x += sigmoid(r) * y over n elements.
void AddGated(float* x, const float* r, const float* y, int64_t n, cudaStream_t s);

// Samples one token per job from the rows of `logits` (modified in place) with the slots' penalty
// counts and seen flags [slots, V] (updated), writing tokens[job.out], by engine/sampler.h's
// definition of the draw (engine/cuda/sample.cu).
struct SampleJob;
void SampleRows(const SampleJob* jobs, int n, const int32_t* bias_ids, const float* bias_values, const int32_t* ban_ids,
                float* logits, int V, float* counts, uint8_t* seen, int32_t* tokens, cudaStream_t s);

// Fills n elements with deterministic pseudo-random values uniform in [lo, hi) (benchmarks).
void FillRandom(void* out, WeightType wt, int64_t n, float lo, float hi, uint64_t seed, cudaStream_t s);

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_OPS_H_
