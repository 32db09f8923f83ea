// Sampling on the device, one block per sampled row, in engine/sampler.h's order: bias and bans,
// presence/frequency penalties from the slot's counts, then greedy, or softmax with the top-k,
// top-p and min-p cut-offs (found by bisection on the probability; ties with the cut-off stay, as
// on the host), temperature over the kept set, one draw with the host's uniform; then the counts
// decay and the chosen token's count grows by one.
#include <cfloat>

#include "engine/cuda/ops.h"
#include "engine/cuda/sample_jobs.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kBisections = 40;

// The best (value, id): larger value, then lower id.
__device__ void BlockArgmax(float& v, int& id) {
  __shared__ float pv[32];
  __shared__ int pi[32];
  auto better = [](float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); };
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffff, v, o);
    const int oi = __shfl_xor_sync(0xffffffff, id, o);
    if (better(ov, oi, v, id)) v = ov, id = oi;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) pv[warp] = v, pi[warp] = id;
  __syncthreads();
  v = lane < (blockDim.x >> 5) ? pv[lane] : -FLT_MAX;
  id = lane < (blockDim.x >> 5) ? pi[lane] : INT_MAX;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffff, v, o);
    const int oi = __shfl_xor_sync(0xffffffff, id, o);
    if (better(ov, oi, v, id)) v = ov, id = oi;
  }
}

__global__ void SampleKernel(const SampleJob* jobs, const int32_t* bias_ids, const float* bias_values,
                             const int32_t* ban_ids, float* logits, int V, float* counts, int32_t* tokens) {
  const SampleJob j = jobs[blockIdx.x];
  float* x = logits + static_cast<int64_t>(j.logits_row) * V;
  float* occ = counts + static_cast<int64_t>(j.slot) * V;
  const int tid = threadIdx.x;
  if (j.first) {
    for (int i = tid; i < V; i += blockDim.x) occ[i] = 0.0f;
    __syncthreads();
  }
  // 1. Bias, then bans. 2. Penalties for tokens seen so far.
  for (int b = tid; b < j.bias_count; b += blockDim.x) x[bias_ids[j.bias_begin + b]] += bias_values[j.bias_begin + b];
  __syncthreads();
  for (int b = tid; b < j.ban_count; b += blockDim.x) x[ban_ids[j.ban_begin + b]] = -INFINITY;
  __syncthreads();
  for (int i = tid; i < V; i += blockDim.x) {
    if (occ[i] > 0.0f) x[i] -= j.presence + j.frequency * occ[i];
  }
  __syncthreads();

  __shared__ int chosen;
  if (j.greedy) {
    float best = -INFINITY;
    int id = INT_MAX;
    for (int i = tid; i < V; i += blockDim.x) {
      if (x[i] > best || (x[i] == best && i < id)) best = x[i], id = i;
    }
    BlockArgmax(best, id);
    if (tid == 0) chosen = id;
  } else {
    // 4. Softmax: p_i = exp(x_i - max) / Z. The arg-max is kept as the answer of last resort
    // (a kept set whose tempered weights all round to zero).
    float mx = -INFINITY;
    int best = INT_MAX;
    for (int i = tid; i < V; i += blockDim.x) {
      if (x[i] > mx || (x[i] == mx && i < best)) mx = x[i], best = i;
    }
    BlockArgmax(mx, best);
    float z = 0.0f;
    for (int i = tid; i < V; i += blockDim.x) z += expf(x[i] - mx);
    z = BlockSum(z);
    const float pmax = 1.0f / z;
    auto prob = [&](int i) { return expf(x[i] - mx) / z; };
    float cut = 0.0f;
    if (j.min_p > 0.0f) cut = fmaxf(cut, j.min_p * pmax);
    if (j.top_k > 0 && j.top_k < V) {  // The k-th largest probability: count(p >= t) >= k.
      float lo = 0.0f, hi = pmax;
      for (int it = 0; it < kBisections; ++it) {
        const float t = 0.5f * (lo + hi);
        float n = 0.0f;
        for (int i = tid; i < V; i += blockDim.x) n += prob(i) >= t ? 1.0f : 0.0f;
        if (BlockSum(n) >= j.top_k)
          lo = t;
        else
          hi = t;
      }
      cut = fmaxf(cut, lo);
    }
    if (j.top_p < 1.0f) {  // The largest t whose kept mass still reaches top_p.
      float lo = 0.0f, hi = pmax;
      for (int it = 0; it < kBisections; ++it) {
        const float t = 0.5f * (lo + hi);
        float m = 0.0f;
        for (int i = tid; i < V; i += blockDim.x) {
          const float p = prob(i);
          m += p >= t ? p : 0.0f;
        }
        if (BlockSum(m) >= j.top_p)
          lo = t;
        else
          hi = t;
      }
      cut = fmaxf(cut, lo);
    }
    // 5. Temperature over the kept set, then one draw: each thread owns a contiguous range of
    // ids; the range holding the target finds the token. p^(1/T) is proportional to
    // exp((x - max) / T): in log space the arg-max weighs 1, so a low temperature cannot round
    // every weight (and the total) to zero, as powf(p, 1/T) did on flat rows.
    const float inv_t = 1.0f / j.temperature;
    auto weight = [&](int i) { return expf((x[i] - mx) * inv_t); };
    const int per = (V + blockDim.x - 1) / blockDim.x;
    const int begin = min(V, tid * per), end = min(V, begin + per);
    float mine = 0.0f;
    for (int i = begin; i < end; ++i) {
      if (prob(i) >= cut) mine += weight(i);
    }
    __shared__ float sums[kThreads];
    sums[tid] = mine;
    __syncthreads();
    if (tid == 0) {
      float total = 0.0f;
      for (int t = 0; t < blockDim.x; ++t) total += sums[t];
      float target = j.uniform * total, acc = 0.0f;
      int owner = blockDim.x - 1;
      for (int t = 0; t < blockDim.x; ++t) {
        if (acc + sums[t] > target && sums[t] > 0.0f) {
          owner = t;
          break;
        }
        acc += sums[t];
      }
      chosen = -1 - owner;  // Resolved by the owner below.
      sums[0] = target - acc;
    }
    __syncthreads();
    // Every thread reads the owner before any thread writes `chosen` (the owner's write used to
    // race with the other threads' reads).
    const int owner = -1 - chosen;
    __syncthreads();
    if (tid == owner) {
      float left = sums[0];
      int last = -1;
      for (int i = begin; i < end; ++i) {
        if (prob(i) < cut) continue;
        last = i;
        left -= weight(i);
        if (left < 0.0f) break;
      }
      chosen = last;  // Rounding may leave `left` >= 0 at the end: the range's last kept token.
    }
    __syncthreads();
    if (tid == 0 && chosen < 0) chosen = best;
  }
  __syncthreads();
  // 6. Counts decay, then the token adds one.
  for (int i = tid; i < V; i += blockDim.x) occ[i] *= j.decay;
  __syncthreads();
  if (tid == 0) {
    occ[chosen] += 1.0f;
    tokens[j.out] = chosen;
  }
}

}  // namespace

void SampleRows(const SampleJob* jobs, int n, const int32_t* bias_ids, const float* bias_values, const int32_t* ban_ids,
                float* logits, int V, float* counts, int32_t* tokens, cudaStream_t s) {
  if (n == 0) return;
  SampleKernel<<<n, kThreads, 0, s>>>(jobs, bias_ids, bias_values, ban_ids, logits, V, counts, tokens);
}

}  // namespace rwkv::cuda
