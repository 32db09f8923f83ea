// Timing helpers shared by the benchmarks.
#ifndef RWKV_BENCH_BENCH_UTIL_H_
#define RWKV_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <chrono>
#include <vector>

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

}  // namespace rwkv::bench

#endif  // RWKV_BENCH_BENCH_UTIL_H_
