// Token sampling on the host, following ChatRWKV's PIPELINE (spec section 13).
//
// Per step, in this order (one definition: the CUDA backend's device sampler draws the same way,
// so a seed gives the same tokens on either backend, with or without logprobs):
//   1. logit bias is added; banned tokens get -inf;
//   2. presence/frequency penalties: x[n] -= fma(occurrence[n], frequency, presence) for every
//      token n sampled so far in this sequence (one rounding, the same on every backend);
//   3. temperature == 0 or top_p == 0: the arg-max is taken (greedy; ties -> lowest id); else
//   4. the candidates are ordered "larger adjusted logit x first, lower id on ties", and the kept
//      set is the finite-x tokens up to a cut in that order: top_p keeps every token whose x is at
//      least the x where the cumulative probability first reaches top_p (ties with the cut-off
//      survive), top_k the first k (ties at the k-th broken by id); min_p keeps
//      exp(x - max) >= min_p. Probability masses are exp(x - max) in float, in units of 2^-32
//      summed as integers, so the order of summation cannot move the cut;
//   5. the kept tokens weigh exp((x - max) / temperature) (p^(1/T) up to a constant: temperature
//      applies after truncation, as in ChatRWKV, in log space so that no weight underflows the
//      arg-max's 1); with u the sequence's next uniform draw, the token is the first id, in
//      ascending id order, at which the running sum of weights exceeds u * total;
//   6. occurrence[n] *= penalty_decay for all n, then occurrence[token] += 1.
// Every call consumes exactly one uniform draw, greedy or not, as the device path does.
// top_p >= 1 means "no nucleus truncation" (ChatRWKV's float32 cumsum makes top_p = 1.0 greedy;
// we do not reproduce that quirk). Same params, seed and logits give the same tokens.
//
// Thread safety: a Sampler is one sequence's; one thread at a time.
#ifndef RWKV_ENGINE_SAMPLER_H_
#define RWKV_ENGINE_SAMPLER_H_

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace rwkv {

// Per-request list limits: the CUDA backend's bias and ban tables are sized for them at start.
inline constexpr int kMaxLogitBias = 1024;
inline constexpr int kMaxBannedTokens = 1024;

struct SamplingParams {
  float temperature = 1.0f;                           // [0, 100]; 0 = greedy.
  int top_k = 0;                                      // >= 0; 0 = off.
  float top_p = 1.0f;                                 // [0, 1]; >= 1 = off, 0 = greedy.
  float min_p = 0.0f;                                 // [0, 1]; 0 = off.
  float presence_penalty = 0.0f;                      // [-100, 100]
  float frequency_penalty = 0.0f;                     // [-100, 100]
  float penalty_decay = 1.0f;                         // [0, 1]; ChatRWKV's chat uses 0.996.
  std::vector<std::pair<int32_t, float>> logit_bias;  // token -> added logit, |bias| <= 100; <= kMaxLogitBias.
  std::vector<int32_t> banned_tokens;                 // <= kMaxBannedTokens.
  uint64_t seed = 0;
};

// The defaults of every front end (the gRPC API, rwkv-cli, rwkv-client), in one place: ChatRWKV
// PIPELINE_ARGS' temperature 1.0 and top_p 0.85, with no penalties (presence 0, frequency 0,
// decay 1) so that a request without sampling fields is plain nucleus sampling, and top_k 0,
// min_p 0.
inline SamplingParams DefaultSampling() {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.85f;
  p.top_k = 0;
  p.min_p = 0.0f;
  p.presence_penalty = 0.0f;
  p.frequency_penalty = 0.0f;
  p.penalty_decay = 1.0f;
  return p;
}

#if defined(__CUDACC__)
#define RWKV_HOST_DEVICE __host__ __device__
#else
#define RWKV_HOST_DEVICE
#endif

// Step 4's arithmetic, shared with the device sampler. A probability mass: exp(x - max) (in
// [0, 1]) in units of 2^-32, truncated; a vocabulary's total stays below 2^49, exact in a double.
RWKV_HOST_DEVICE inline uint64_t MassUnits(float e) { return static_cast<uint64_t>(e * 4294967296.0f); }
// The mass a nucleus must reach: a prefix of mass m is enough when double(m) >= this.
RWKV_HOST_DEVICE inline double NucleusNeed(float top_p, uint64_t total) {
  return static_cast<double>(top_p) * static_cast<double>(total);
}

// INVALID_ARGUMENT naming the field and its limit.
absl::Status ValidateSamplingParams(const SamplingParams& p, int vocab);

class Sampler {
 public:
  // REQUIRES: ValidateSamplingParams(params, vocab).ok().
  Sampler(SamplingParams params, int vocab);

  // Picks the next token from `logits` (size vocab) and records it for the penalties.
  int32_t Sample(std::span<const float> logits);
  // Records a token chosen elsewhere (e.g. forced), for the penalties.
  void Observe(int32_t token);
  // The next draw of this sequence's seeded RNG, in [0, 1): a backend that samples on the device
  // draws with it, so that a seed means the same stream on every backend.
  double Uniform();

 private:
  // The total order of candidates: larger adjusted logit first (work_), lower id on ties.
  bool Better(int32_t a, int32_t b) const { return work_[a] > work_[b] || (work_[a] == work_[b] && a < b); }
  // Reorders order_[0, n) so that [0, result) is the shortest prefix whose mass reaches `need`,
  // then the tokens tied with its last one.
  int64_t NucleusPrefix(int64_t n, double need);
  uint64_t NextRandom();

  SamplingParams params_;
  int vocab_;
  std::vector<float> work_;         // Adjusted logits.
  std::vector<float> e_;            // exp(x - max), then the kept tokens' weights.
  std::vector<uint64_t> mass_;      // exp(x - max) in units of 2^-32 (with a nucleus).
  std::vector<int32_t> order_;      // Candidate ids, best first.
  std::vector<float> occurrence_;   // By id.
  std::vector<int32_t> seen_;       // Ids with an occurrence entry.
  std::vector<uint8_t> seen_flag_;  // By id: whether it is in seen_.
  uint64_t rng_[4];
};

}  // namespace rwkv

#endif  // RWKV_ENGINE_SAMPLER_H_
