// Sampling on the device, one block per sampled row, by engine/sampler.h's definition: the host's
// Sampler draws the same token from the same logits and uniform. Bias and bans, then the
// presence/frequency penalties of the tokens seen so far (one fmaf, as the host's std::fma), then
// greedy, or the kept set found by radix selection over the order of the adjusted logits (the
// nucleus by integer probability masses, the k-th token with ties broken by id), min_p, weights
// exp((x - max) / T) in log space, and one draw walking the ids in ascending order; then the
// counts decay and the chosen token's count grows by one.
#include <cfloat>
#include <climits>
#include <cstdint>

#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.h"
#include "engine/cuda/sample_jobs.h"
#include "engine/cuda/type_cast.cuh"

namespace rwkv::cuda {
namespace {

constexpr int kThreads = 1024;

// The best (value, id): larger value, then lower id. Every thread gets the answer.
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

// Exact integer sum over the block (masses are integers: no order of summation can change it).
__device__ unsigned long long BlockSumU64(unsigned long long v) {
  __shared__ unsigned long long total;
  if (threadIdx.x == 0) total = 0;
  __syncthreads();
  atomicAdd(&total, v);
  __syncthreads();
  const unsigned long long t = total;
  __syncthreads();
  return t;
}

// Ascending unsigned keys for ascending floats: radix selection over the order of x.
__device__ __forceinline__ uint32_t OrderKey(float x) {
  const uint32_t u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float FromOrderKey(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// The largest key v such that the weight of {i : key(x_i) >= v} reaches `need` (weight: a mass,
// or 1 per token to count), 8 bits a pass, most significant first; *above gets the weight of
// {i : key(x_i) > v}. Integer histograms: the same answer on every run.
template <typename Weight>
__device__ uint32_t SelectDescending(const float* x, int V, Weight weight, double need, unsigned long long* above) {
  __shared__ unsigned long long hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ unsigned long long s_above;
  const int tid = threadIdx.x;
  uint32_t prefix = 0, mask = 0;
  unsigned long long acc_above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = tid; d < 256; d += blockDim.x) hist[d] = 0;
    __syncthreads();
    for (int i = tid; i < V; i += blockDim.x) {
      const uint32_t k = OrderKey(x[i]);
      if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 255u], weight(i));
    }
    __syncthreads();
    if (tid == 0) {
      unsigned long long acc = acc_above;
      int d = 255;
      for (; d > 0; --d) {
        if (static_cast<double>(acc + hist[d]) >= need) break;
        acc += hist[d];
      }
      s_prefix = prefix | (static_cast<uint32_t>(d) << shift);
      s_above = acc;
    }
    __syncthreads();
    prefix = s_prefix;
    acc_above = s_above;
    mask |= 255u << shift;
    __syncthreads();  // hist is cleared by the next pass.
  }
  *above = acc_above;
  return prefix;
}

// Each thread owns the contiguous ids [Begin, End); a walk in ascending id order is a scan over
// the threads' totals, then one owner's walk through its range.
__device__ __forceinline__ int RangeBegin(int V) {
  const int per = (V + blockDim.x - 1) / blockDim.x;
  return min(V, static_cast<int>(threadIdx.x) * per);
}
__device__ __forceinline__ int RangeEnd(int V) {
  const int per = (V + blockDim.x - 1) / blockDim.x;
  return min(V, RangeBegin(V) + per);
}

// The n-th (1-based) id, in ascending order, that `pred` selects; -1 if fewer are selected.
template <typename Pred>
__device__ int NthSelectedId(int V, int n, Pred pred) {
  __shared__ int counts[kThreads];
  __shared__ int s_owner, s_left, s_id;
  const int tid = threadIdx.x, begin = RangeBegin(V), end = RangeEnd(V);
  int mine = 0;
  for (int i = begin; i < end; ++i) mine += pred(i) ? 1 : 0;
  counts[tid] = mine;
  __syncthreads();
  if (tid == 0) {
    s_owner = -1;
    s_id = -1;
    int left = n;
    for (int t = 0; t < blockDim.x; ++t) {
      if (counts[t] >= left) {
        s_owner = t;
        break;
      }
      left -= counts[t];
    }
    s_left = left;
  }
  __syncthreads();
  if (tid == s_owner) {
    int left = s_left;
    for (int i = begin; i < end; ++i) {
      if (pred(i) && --left == 0) {
        s_id = i;
        break;
      }
    }
  }
  __syncthreads();
  const int id = s_id;
  __syncthreads();
  return id;
}

__global__ void SampleKernel(const SampleJob* jobs, const int32_t* bias_ids, const float* bias_values,
                             const int32_t* ban_ids, float* logits, int V, float* counts, uint8_t* seen,
                             int32_t* tokens) {
  AfterPrevious();
  const SampleJob j = jobs[blockIdx.x];
  if (j.out < 0) return;  // The whole block: no barrier is left waiting.
  float* x = logits + static_cast<int64_t>(j.logits_row) * V;
  float* occ = counts + static_cast<int64_t>(j.slot) * V;
  uint8_t* was = seen + static_cast<int64_t>(j.slot) * V;
  const int tid = threadIdx.x;
  if (j.first) {
    for (int i = tid; i < V; i += blockDim.x) occ[i] = 0.0f, was[i] = 0;
    __syncthreads();
  }
  // 1. Bias, then bans. 2. Penalties for the tokens seen so far (explicit roundings: no
  // contraction may differ from the host's).
  for (int b = tid; b < j.bias_count; b += blockDim.x) {
    float& v = x[bias_ids[j.bias_begin + b]];
    v = __fadd_rn(v, bias_values[j.bias_begin + b]);
  }
  __syncthreads();
  for (int b = tid; b < j.ban_count; b += blockDim.x) x[ban_ids[j.ban_begin + b]] = -INFINITY;
  __syncthreads();
  for (int i = tid; i < V; i += blockDim.x) {
    if (was[i]) x[i] = __fsub_rn(x[i], __fmaf_rn(occ[i], j.frequency, j.presence));
  }
  __syncthreads();

  // 3. The arg-max (greedy's answer, and the max the weights are relative to).
  float mx = -INFINITY;
  int best = INT_MAX;
  for (int i = tid; i < V; i += blockDim.x) {
    if (x[i] > mx || (x[i] == mx && i < best)) mx = x[i], best = i;
  }
  BlockArgmax(mx, best);
  __shared__ int chosen;
  if (j.greedy) {
    if (tid == 0) chosen = best;
  } else {
    // 4. The cut in the order "larger x first, lower id on ties": kept are finite x before it.
    float cut_x = -INFINITY;
    int cut_id = INT_MAX;
    if (j.top_p < 1.0f) {
      auto mass = [&](int i) { return static_cast<unsigned long long>(MassUnits(expf(x[i] - mx))); };
      unsigned long long mine = 0;
      for (int i = tid; i < V; i += blockDim.x) mine += mass(i);
      const double need = NucleusNeed(j.top_p, BlockSumU64(mine));
      unsigned long long above;
      cut_x = FromOrderKey(SelectDescending(x, V, mass, need, &above));
    }
    if (j.top_k > 0 && j.top_k < V) {
      unsigned long long above;
      const uint32_t key = SelectDescending(x, V, [](int) { return 1ull; }, static_cast<double>(j.top_k), &above);
      // The k-th token is the (k - above)-th, by id, of those whose x equals the k-th largest.
      const int id = NthSelectedId(V, j.top_k - static_cast<int>(above), [&](int i) { return OrderKey(x[i]) == key; });
      const float kx = FromOrderKey(key);
      if (kx > cut_x || (kx == cut_x && id <= cut_id)) cut_x = kx, cut_id = id;  // The stricter cut.
    }
    // 5. Weights over the kept set, in log space; the draw walks the ids in ascending order.
    const float inv_t = 1.0f / j.temperature;
    const float min_e = j.min_p;
    auto weight = [&](int i) {
      const float xi = x[i];
      const float e = expf(xi - mx);
      const bool kept = xi != -INFINITY && (xi > cut_x || (xi == cut_x && i <= cut_id)) && e >= min_e;
      return !kept ? 0.0f : inv_t == 1.0f ? e : expf((xi - mx) * inv_t);
    };
    const int begin = RangeBegin(V), end = RangeEnd(V);
    double mine = 0.0;
    for (int i = begin; i < end; ++i) mine += weight(i);
    __shared__ double sums[kThreads];
    __shared__ double s_left;
    __shared__ int s_owner;
    sums[tid] = mine;
    __syncthreads();
    if (tid == 0) {
      double total = 0.0;
      for (int t = 0; t < blockDim.x; ++t) total += sums[t];
      const double target = j.uniform * total;
      double acc = 0.0;
      int owner = -1, last = -1;
      for (int t = 0; t < blockDim.x; ++t) {
        if (sums[t] > 0.0) last = t;
        if (sums[t] > 0.0 && acc + sums[t] > target) {
          owner = t;
          break;
        }
        acc += sums[t];
      }
      if (owner < 0 && last >= 0) owner = last, acc -= sums[last];  // Rounding: the last kept range.
      s_owner = owner;
      s_left = target - acc;
      chosen = best;
    }
    __syncthreads();
    if (tid == s_owner) {
      double left = s_left;
      int last = -1;
      for (int i = begin; i < end; ++i) {
        const float w = weight(i);
        if (w <= 0.0f) continue;
        last = i;
        left -= w;
        if (left < 0.0) break;
      }
      if (last >= 0) chosen = last;  // Rounding may leave `left` >= 0: the range's last kept id.
    }
  }
  __syncthreads();
  // 6. Counts decay, then the token adds one.
  for (int i = tid; i < V; i += blockDim.x) occ[i] *= j.decay;
  __syncthreads();
  if (tid == 0) {
    occ[chosen] += 1.0f;
    was[chosen] = 1;
    tokens[j.out] = chosen;
  }
}

}  // namespace

void SampleRows(const SampleJob* jobs, int n, const int32_t* bias_ids, const float* bias_values, const int32_t* ban_ids,
                float* logits, int V, float* counts, uint8_t* seen, int32_t* tokens, cudaStream_t s) {
  if (n == 0) return;
  LaunchAfterPrevious(SampleKernel, n, kThreads, s, jobs, bias_ids, bias_values, ban_ids, logits, V, counts, seen,
                      tokens);
}

}  // namespace rwkv::cuda
