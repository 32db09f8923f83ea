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
  if (p.logit_bias.size() > kMaxLogitBias) {
    return absl::InvalidArgumentError(
        absl::StrCat("logit_bias has ", p.logit_bias.size(), " entries; at most ", kMaxLogitBias));
  }
  if (p.banned_tokens.size() > kMaxBannedTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("banned_tokens has ", p.banned_tokens.size(), " entries; at most ", kMaxBannedTokens));
  }
  if (static_cast<int64_t>(p.banned_tokens.size()) >= vocab) {
    return absl::InvalidArgumentError(absl::StrCat("banned_tokens bans ", p.banned_tokens.size(),
                                                   " tokens; at least one of ", vocab, " must stay allowed"));
  }
  return absl::OkStatus();
}

Sampler::Sampler(SamplingParams params, int vocab)
    : params_(std::move(params)),
      vocab_(vocab),
      work_(vocab),
      e_(vocab),
      mass_(vocab),
      order_(vocab),
      occurrence_(vocab, 0.0f),
      seen_flag_(vocab, 0) {
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
  if (!seen_flag_[token]) {
    seen_flag_[token] = 1;
    seen_.push_back(token);
  }
  occurrence_[token] += 1.0f;
}

int64_t Sampler::NucleusPrefix(int64_t n, double need) {
  auto better = [this](int32_t a, int32_t b) { return Better(a, b); };
  // Quickselect on probability mass: find the shortest prefix (in the total order) of order_[0, n)
  // whose mass reaches `need`, moving its members to the front. `before`: the mass of order_[0, lo).
  uint64_t before = 0;
  int64_t lo = 0, hi = n, end = n;
  while (hi - lo > 32) {
    int32_t* base = order_.data();
    int32_t a = base[lo], b = base[lo + (hi - lo) / 2], c = base[hi - 1];
    if (better(b, a)) std::swap(a, b);
    if (better(c, b)) std::swap(b, c);
    if (better(b, a)) std::swap(a, b);
    const int32_t pivot = b;  // Median of three.
    int32_t* mid = std::partition(base + lo, base + hi, [&](int32_t x) { return better(x, pivot); });
    std::iter_swap(mid, std::find(mid, base + hi, pivot));
    const int64_t m = mid - base;
    uint64_t upper = 0;
    for (int64_t i = lo; i < m; ++i) upper += mass_[base[i]];
    if (static_cast<double>(before + upper) >= need) {
      hi = m;
    } else if (static_cast<double>(before + upper + mass_[pivot]) >= need) {
      end = m + 1;
      lo = hi = end;
    } else {
      before += upper + mass_[pivot];
      lo = m + 1;
    }
  }
  if (lo < hi) {
    std::sort(order_.begin() + lo, order_.begin() + hi, better);
    end = hi;
    for (int64_t i = lo; i < hi; ++i) {
      before += mass_[order_[i]];
      if (static_cast<double>(before) >= need) {
        end = i + 1;
        break;
      }
    }
  }
  // Tokens tied with the cut-off survive (ChatRWKV zeroes only p < cutoff).
  const float cutoff = work_[order_[end - 1]];
  for (int64_t i = end; i < n; ++i) {
    if (work_[order_[i]] == cutoff) std::swap(order_[i], order_[end++]);
  }
  return end;
}

int32_t Sampler::Sample(std::span<const float> logits) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const double u = Uniform();  // One draw per call, used or not: the device path draws the same.
  std::copy(logits.begin(), logits.begin() + vocab_, work_.begin());
  for (const auto& [tok, bias] : params_.logit_bias) work_[tok] += bias;
  for (int32_t tok : params_.banned_tokens) work_[tok] = kNegInf;
  for (int32_t n : seen_) {
    work_[n] -= std::fma(occurrence_[n], params_.frequency_penalty, params_.presence_penalty);
  }

  const int32_t argmax = static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
  int32_t token = argmax;
  if (params_.temperature != 0.0f && params_.top_p != 0.0f) {
    const float mx = work_[argmax];
    const bool nucleus = params_.top_p < 1.0f;
    uint64_t mass_total = 0;
    for (int32_t i = 0; i < vocab_; ++i) {
      e_[i] = std::exp(work_[i] - mx);
      if (nucleus) mass_total += mass_[i] = MassUnits(e_[i]);
    }
    // The kept set: finite x up to the cut (cut_x, cut_id) in the total order, and min_p.
    float cut_x = kNegInf;
    int32_t cut_id = std::numeric_limits<int32_t>::max();
    int64_t keep = -1;  // order_[0, keep) holds the candidates once they are listed.
    if (nucleus) {
      const uint64_t total = mass_total;
      const double need = NucleusNeed(params_.top_p, total);
      // Tokens of mass <= (1 - top_p) / (2 vocab) of the total hold less than 1 - top_p together,
      // so the nucleus (a prefix of the order) lies among the others: peaked rows stay cheap.
      const double light = (1.0 - params_.top_p) / (2.0 * vocab_) * static_cast<double>(total);
      keep = 0;
      for (int32_t id = 0; id < vocab_; ++id) {
        if (static_cast<double>(mass_[id]) > light) order_[keep++] = id;
      }
      keep = NucleusPrefix(keep, need);
      cut_x = work_[order_[keep - 1]];
    }
    if (params_.top_k > 0 && params_.top_k < vocab_) {
      if (keep < 0) {
        keep = 0;
        for (int32_t id = 0; id < vocab_; ++id) {
          if (work_[id] != kNegInf) order_[keep++] = id;
        }
      }
      if (params_.top_k < keep) {  // The k-th of the (nucleus') candidates: a stricter cut.
        auto better = [this](int32_t a, int32_t b) { return Better(a, b); };
        std::nth_element(order_.begin(), order_.begin() + (params_.top_k - 1), order_.begin() + keep, better);
        cut_id = order_[params_.top_k - 1];
        cut_x = work_[cut_id];
      }
    }
    const float inv_t = 1.0f / params_.temperature;
    const float min_e = params_.min_p;
    // The kept ids in ascending order with their weights, compacted into order_ and e_ (entry n is
    // written after id i >= n was read).
    double total = 0;
    int64_t n = 0;
    for (int32_t i = 0; i < vocab_; ++i) {
      const float x = work_[i];
      if (x == kNegInf || !(x > cut_x || (x == cut_x && i <= cut_id)) || !(e_[i] >= min_e)) continue;
      // With temperature 1 the weight is e_[i] itself ((x - mx) * 1 is exact).
      const float w = inv_t == 1.0f ? e_[i] : std::exp((x - mx) * inv_t);
      if (!(w > 0.0f)) continue;
      order_[n] = i;
      e_[n++] = w;
      total += w;
    }
    // The first id at which the running sum passes u * total; rounding can leave none: the last
    // id of positive weight.
    const double target = u * total;
    double acc = 0;
    token = n > 0 ? order_[n - 1] : argmax;
    for (int64_t j = 0; j < n; ++j) {
      acc += e_[j];
      if (acc > target) {
        token = order_[j];
        break;
      }
    }
  }
  Observe(token);
  return token;
}

}  // namespace rwkv
