// PNG line charts for `rwkv-client bench --plot DIR`, drawn without any plotting library: a small
// raster canvas, a 3x5 pixel font, and zlib for the PNG stream.
#ifndef RWKV_CLIENT_PLOT_H_
#define RWKV_CLIENT_PLOT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/load.h"

namespace rwkv::client {

struct Series {
  std::string name;
  uint32_t rgb = 0;
  std::vector<double> y;  // One value per x label.
};

// A line chart with the x labels evenly spaced, a y axis from 0 to a rounded maximum, a legend.
absl::Status WriteLineChart(const std::string& path, const std::string& title, const std::vector<std::string>& x_labels,
                            const std::string& x_name, const std::string& y_name, const std::vector<Series>& series);

// throughput.png (tokens/s against concurrency) and latency.png (TTFT and inter-token p50/p99).
absl::Status WriteBenchPlots(const std::vector<LoadResult>& results, const std::string& dir);

}  // namespace rwkv::client

#endif  // RWKV_CLIENT_PLOT_H_
