#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace rwkv {
namespace {

absl::Status Range(const char* field, double v, double lo, double hi) {
  if (!(v >= lo && v <= hi)) {  // Also catches NaN.
    return absl::InvalidArgumentError(absl::StrCat(field, " is ", v, "; it must be in [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

uint64_t SplitMix64(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p, int vocab) {
  for (const absl::Status& s :
       {Range("temperature", p.temperature, 0, 100), Range("top_p", p.top_p, 0, 1), Range("min_p", p.min_p, 0, 1),
        Range("presence_penalty", p.presence_penalty, -100, 100),
        Range("frequency_penalty", p.frequency_penalty, -100, 100), Range("penalty_decay", p.penalty_decay, 0, 1)}) {
    if (!s.ok()) return s;
  }
  if (p.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k is ", p.top_k, "; it must be >= 0 (0 = off)"));
  for (const auto& [tok, bias] : p.logit_bias) {
    if (tok < 0 || tok >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit_bias token ", tok, " is outside the vocabulary [0, ", vocab, ")"));
    }
    if (!(std::abs(bias) <= 100)) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit_bias for token ", tok, " is ", bias, "; it must be in [-100, 100]"));
    }
  }
  for (int32_t tok : p.banned_tokens) {
    if (tok < 0 || tok >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("banned token ", tok, " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (static_cast<int64_t>(p.banned_tokens.size()) >= vocab) {
    return absl::InvalidArgumentError(absl::StrCat("banned_tokens bans ", p.banned_tokens.size(),
                                                   " tokens; at least one of ", vocab, " must stay allowed"));
  }
  return absl::OkStatus();
}

Sampler::Sampler(SamplingParams params, int vocab)
    : params_(std::move(params)), vocab_(vocab), work_(vocab), order_(vocab), occurrence_(vocab, 0.0f) {
  uint64_t s = params_.seed;
  for (uint64_t& r : rng_) r = SplitMix64(&s);
}

uint64_t Sampler::NextRandom() {  // xoshiro256**
  const uint64_t result = std::rotl(rng_[1] * 5, 7) * 9;
  const uint64_t t = rng_[1] << 17;
  rng_[2] ^= rng_[0];
  rng_[3] ^= rng_[1];
  rng_[1] ^= rng_[2];
  rng_[0] ^= rng_[3];
  rng_[2] ^= t;
  rng_[3] = std::rotl(rng_[3], 45);
  return result;
}

double Sampler::Uniform() { return static_cast<double>(NextRandom() >> 11) * 0x1.0p-53; }

void Sampler::Observe(int32_t token) {
  if (params_.penalty_decay != 1.0f) {
    for (int32_t n : seen_) occurrence_[n] *= params_.penalty_decay;
  }
  if (occurrence_[token] == 0.0f && std::find(seen_.begin(), seen_.end(), token) == seen_.end()) seen_.push_back(token);
  occurrence_[token] += 1.0f;
}

int32_t Sampler::Sample(std::span<const float> logits) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  std::copy(logits.begin(), logits.begin() + vocab_, work_.begin());
  for (const auto& [tok, bias] : params_.logit_bias) work_[tok] += bias;
  for (int32_t tok : params_.banned_tokens) work_[tok] = kNegInf;
  for (int32_t n : seen_) {
    work_[n] -= params_.presence_penalty + occurrence_[n] * params_.frequency_penalty;
  }

  int32_t token;
  if (params_.temperature == 0.0f || params_.top_p == 0.0f) {
    token = static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
  } else {
    const float mx = *std::max_element(work_.begin(), work_.end());
    double sum = 0;
    for (float& w : work_) {
      w = std::exp(w - mx);
      sum += w;
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (float& w : work_) w *= inv;
    int64_t keep = 0;
    const bool nucleus = params_.top_p < 1.0f;
    if (!nucleus && params_.top_k == 0) {
      // Only min_p (or nothing) filters: no order needed. The largest probability is inv (exp(0) * inv).
      const float floor = params_.min_p * inv;
      for (int32_t id = 0; id < vocab_; ++id) {
        if (work_[id] >= floor && work_[id] > 0.0f) order_[keep++] = id;
      }
    } else {
      // Sort only as far as the filters need: grow the sorted prefix until it covers them.
      std::iota(order_.begin(), order_.end(), 0);
      auto better = [&](int32_t a, int32_t b) { return work_[a] > work_[b] || (work_[a] == work_[b] && a < b); };
      const int64_t top_k = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, vocab_) : vocab_;
      int64_t sorted = std::min<int64_t>(nucleus ? std::min<int64_t>(64, top_k) : top_k, vocab_);
      while (true) {
        std::partial_sort(order_.begin(), order_.begin() + sorted, order_.end(), better);
        keep = std::min(top_k, sorted);
        if (nucleus) {
          double cum = 0;
          int64_t i = 0;
          for (; i < sorted; ++i) {
            cum += work_[order_[i]];
            if (cum >= params_.top_p) break;
          }
          if (i == sorted && sorted < top_k) {
            sorted = std::min<int64_t>(sorted * 8, top_k);
            continue;
          }
          int64_t n = std::min(i + 1, sorted);
          const float cutoff = work_[order_[n - 1]];
          while (n < sorted && work_[order_[n]] == cutoff) ++n;  // Ties with the cut-off survive.
          keep = std::min(keep, n);
        }
        break;
      }
      if (params_.min_p > 0.0f) {
        const float floor = params_.min_p * work_[order_[0]];
        int64_t n = 1;
        while (n < keep && work_[order_[n]] >= floor) ++n;
        keep = n;
      }
    }
    double total = 0;
    const double inv_t = 1.0 / params_.temperature;
    for (int64_t i = 0; i < keep; ++i) {
      float& p = work_[order_[i]];
      if (params_.temperature != 1.0f) p = static_cast<float>(std::pow(static_cast<double>(p), inv_t));
      total += p;
    }
    token = order_[0];
    if (total > 0) {
      double u = Uniform() * total;
      for (int64_t i = 0; i < keep; ++i) {
        u -= work_[order_[i]];
        if (u < 0) {
          token = order_[i];
          break;
        }
      }
    }
  }
  Observe(token);
  return token;
}

}  // namespace rwkv
