// Token sampling on the host, following ChatRWKV's PIPELINE (spec section 13).
//
// Per step, in this order:
//   1. logit bias is added; banned tokens get -inf;
//   2. presence/frequency penalties: logit[n] -= presence + frequency * occurrence[n] for every
//      token n sampled so far in this sequence;
//   3. temperature == 0 or top_p == 0: the arg-max is taken (greedy; ties -> lowest id); else
//   4. softmax; the kept set is the shortest prefix of the tokens sorted by probability that
//      satisfies every active filter: top_p (cumulative probability reaches top_p; tokens tied
//      with the cut-off survive), top_k (k most likely), min_p (probability >= min_p * max);
//   5. kept probabilities are raised to 1/temperature (temperature applies after truncation, as
//      in ChatRWKV), renormalised, and one token is drawn with the sequence's seeded RNG;
//   6. occurrence[n] *= penalty_decay for all n, then occurrence[token] += 1.
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

struct SamplingParams {
  float temperature = 1.0f;                           // [0, 100]; 0 = greedy.
  int top_k = 0;                                      // >= 0; 0 = off.
  float top_p = 1.0f;                                 // [0, 1]; >= 1 = off, 0 = greedy.
  float min_p = 0.0f;                                 // [0, 1]; 0 = off.
  float presence_penalty = 0.0f;                      // [-100, 100]
  float frequency_penalty = 0.0f;                     // [-100, 100]
  float penalty_decay = 1.0f;                         // [0, 1]; ChatRWKV's chat uses 0.996.
  std::vector<std::pair<int32_t, float>> logit_bias;  // token -> added logit, |bias| <= 100.
  std::vector<int32_t> banned_tokens;
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
  // The total order of candidates: more probable first (by work_), lower id on ties.
  bool Better(int32_t a, int32_t b) const { return work_[a] > work_[b] || (work_[a] == work_[b] && a < b); }
  // Reorders order_[0, n) so that [0, result) is the nucleus for top_p (with ties at the cut-off).
  int64_t NucleusPrefix(int64_t n);
  uint64_t NextRandom();

  SamplingParams params_;
  int vocab_;
  std::vector<float> work_;         // Adjusted logits, then probabilities.
  std::vector<int32_t> order_;      // Candidate ids, best first.
  std::vector<float> occurrence_;   // By id.
  std::vector<int32_t> seen_;       // Ids with an occurrence entry.
  std::vector<uint8_t> seen_flag_;  // By id: whether it is in seen_.
  uint64_t rng_[4];
};

}  // namespace rwkv

#endif  // RWKV_ENGINE_SAMPLER_H_
