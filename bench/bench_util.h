// Timing helpers shared by the benchmarks.
#ifndef RWKV_BENCH_BENCH_UTIL_H_
#define RWKV_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "engine/model_config.h"

namespace rwkv::bench {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The median (the mean of the middle two for an even count); 0 for none.
inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// A model shape of generation `arch` (rwkv7, rwkv6, rwkv5.2, rwkv4) with the released models'
// head size, FFN width and LoRA ranks for its width; nullopt for an unknown arch.
inline std::optional<ModelConfig> BenchConfig(const std::string& arch, int layers, int embd, int vocab) {
  ModelConfig c;
  c.n_layer = layers;
  c.n_embd = c.n_att = embd;
  c.head_size = 64;
  c.n_head = embd / 64;
  c.ffn_dim = 4 * embd;
  c.vocab = vocab;
  const bool big = embd >= 2048;
  if (arch == "rwkv7") {
    c.arch = Architecture::kRwkv7;
    // LoRA ranks of the released 0.1B/0.4B (64/64/32/128), 1.5B (96/96/64/256) and 7.2B
    // (128/128/96/480) models.
    const bool huge = embd >= 4096;
    c.lora_decay = c.lora_iclr = huge ? 128 : big ? 96 : 64;
    c.lora_value = huge ? 96 : big ? 64 : 32;
    c.lora_gate = huge ? 480 : big ? 256 : 128;
  } else if (arch == "rwkv6") {
    c.arch = Architecture::kRwkv6;
    c.ffn_dim = static_cast<int>(3.5 * embd) / 32 * 32;
    c.lora_mix = big ? 64 : 32;  // Released: Dm 32 / Dd 64 below C 4096 (spec 5.1).
    c.lora_decay = big ? 128 : 64;
  } else if (arch == "rwkv5.2") {
    c.arch = Architecture::kRwkv5_2;
  } else if (arch == "rwkv4") {
    c.arch = Architecture::kRwkv4;
    c.n_head = c.head_size = 0;
  } else {
    return std::nullopt;
  }
  return c;
}

}  // namespace rwkv::bench

#endif  // RWKV_BENCH_BENCH_UTIL_H_
