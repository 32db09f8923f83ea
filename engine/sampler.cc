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
    : params_(std::move(params)),
      vocab_(vocab),
      work_(vocab),
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

int64_t Sampler::NucleusPrefix(int64_t n) {
  auto better = [this](int32_t a, int32_t b) { return Better(a, b); };
  // Quickselect on probability mass: find the shortest prefix (in the total order) of order_[0, n)
  // whose mass reaches top_p, moving its members to the front.
  double need = params_.top_p;
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
    double upper = 0;
    for (int64_t i = lo; i < m; ++i) upper += work_[base[i]];
    if (upper >= need) {
      hi = m;
    } else if (upper + work_[pivot] >= need) {
      end = m + 1;
      lo = hi = end;
    } else {
      need -= upper + work_[pivot];
      lo = m + 1;
    }
  }
  if (lo < hi) {
    std::sort(order_.begin() + lo, order_.begin() + hi, better);
    end = hi;
    for (int64_t i = lo; i < hi; ++i) {
      need -= work_[order_[i]];
      if (need <= 0) {
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
    const int32_t argmax = static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
    const float mx = work_[argmax];
    double sum = 0;
    for (float& w : work_) {
      w = std::exp(w - mx);
      sum += w;
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (float& w : work_) w *= inv;
    // The kept set is a prefix of the total order "more probable first, lower id on ties"; each
    // filter shortens it. Selection, not sorting: O(vocab) expected even for flat distributions.
    auto better = [this](int32_t a, int32_t b) { return Better(a, b); };
    // Banned (and underflowed) tokens never compete. With a nucleus, neither do tokens below
    // eps = (1 - top_p) / (2 vocab): all of them together hold < 1 - top_p, so the nucleus (a
    // prefix of the order) lies among the others. This keeps peaked distributions cheap.
    const float eps = params_.top_p < 1.0f ? (1.0f - params_.top_p) / (2.0f * vocab_) : 0.0f;
    int64_t keep = 0;
    for (int32_t id = 0; id < vocab_; ++id) {
      if (work_[id] > eps) order_[keep++] = id;
    }
    if (params_.top_p < 1.0f) keep = NucleusPrefix(keep);
    if (params_.top_k > 0 && params_.top_k < keep) {
      std::nth_element(order_.begin(), order_.begin() + (params_.top_k - 1), order_.begin() + keep, better);
      keep = params_.top_k;
    }
    if (params_.min_p > 0.0f) {
      const float floor = params_.min_p * inv;  // The largest probability is exp(0) * inv.
      keep = std::partition(order_.begin(), order_.begin() + keep, [&](int32_t id) { return work_[id] >= floor; }) -
             order_.begin();
    }
    double total = 0;
    const double inv_t = 1.0 / params_.temperature;
    for (int64_t i = 0; i < keep; ++i) {
      float& p = work_[order_[i]];
      if (params_.temperature != 1.0f) p = static_cast<float>(std::pow(static_cast<double>(p), inv_t));
      total += p;
    }
    token = argmax;
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
