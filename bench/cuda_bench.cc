// Engine-only throughput of the CUDA backend on random RWKV-7 models of the released shapes, made
// on the device (nothing crosses PCIe but token ids and logits): decode steps at batch 1 ... 1024
// as memory allows, prefill of 1 x 1024 and 32 x 32 tokens, and the device's measured limits in
// the same run (a device-to-device copy for bandwidth, a large GEMM for the FLOP rate).
//
//   cuda_bench [--arch rwkv7|rwkv6|rwkv5.2|rwkv4] [--shapes 0.1b,1.5b,7.2b]
//              [--batches 1,2,4,8,32,128,256,512,1024] [--dtype f16]
//              [--seconds 2] [--device 0] [--json FILE] [--pdl 1] [--gemv-rows 8]
//
// A decode step here is what the server runs per token: the whole model over the batch, one token
// per sequence sampled on the device (only ids cross to the host), replayed as a CUDA graph (the
// batch padded to the graph ladder's next size). Batches of 1 to 8 run their projections through
// our GEMV kernel; they are timed again without programmatic dependent launch ("dec-nopdl") and
// with cuBLAS GEMMs instead of the GEMV ("dec-blas"), and the graphs' capture time at creation is
// printed per shape.
// Prefill rows time Forward over the prompt (the last logits of each to the host). Per row: the
// bytes a decode step moves (weights once, each sequence's state read and written) per second and
// as a fraction of the measured copy bandwidth, FLOP/s as a fraction of the measured GEMM rate,
// and the kernel launches of one step (cuBLAS calls count one). Table on stdout, JSON to --json.
// Medians.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "engine/cuda/cublas_gemm.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_device.h"
#include "engine/cuda/cuda_weights.h"
#include "engine/cuda/ops.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"

namespace rwkv {
namespace {

using bench::Clock;
using bench::Median;
using bench::Seconds;

// The released RWKV-7 shapes' width and depth, in the generation `arch`.
std::optional<ModelConfig> Shape(const std::string& arch, const std::string& name) {
  const int layers = name == "0.1b" ? 12 : name == "1.5b" ? 24 : 32;
  const int embd = name == "0.1b" ? 768 : name == "1.5b" ? 2048 : 4096;
  return bench::BenchConfig(arch, layers, embd, 65536);
}

struct Args {
  std::string arch = "rwkv7";
  std::vector<std::string> shapes = {"0.1b", "1.5b", "7.2b"};
  std::vector<int> batches = {1, 2, 4, 8, 32, 128, 256, 512, 1024};
  std::string dtype = "f16";
  double seconds = 2;
  int device = 0;
  std::string json;
  bool pdl = true;    // Programmatic dependent launch (sm_90+).
  int gemv_rows = 8;  // Projections of up to this many rows through our GEMV (0: cuBLAS only).
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--arch") {
      a.arch = v;
    } else if (k == "--shapes") {
      a.shapes = absl::StrSplit(v, ',');
    } else if (k == "--batches") {
      a.batches.clear();
      for (absl::string_view s : absl::StrSplit(v, ',')) {
        int b;
        if (absl::SimpleAtoi(s, &b) && b > 0) a.batches.push_back(b);
      }
    } else if (k == "--dtype") {
      a.dtype = v;
    } else if (k == "--seconds") {
      a.seconds = std::stod(v);
    } else if (k == "--device") {
      a.device = std::stoi(v);
    } else if (k == "--json") {
      a.json = v;
    } else if (k == "--pdl") {
      a.pdl = v != "0";
    } else if (k == "--gemv-rows") {
      a.gemv_rows = std::stoi(v);
    } else {
      std::fprintf(stderr, "cuda_bench: unknown flag %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

#define CHECK_OK(expr)                                                                       \
  do {                                                                                       \
    const absl::Status s_ = (expr);                                                          \
    if (!s_.ok()) {                                                                          \
      std::fprintf(stderr, "cuda_bench: %s: %s\n", #expr, std::string(s_.message()).c_str()); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

// Device-to-device copy of a 2 GiB buffer: bytes read + written per second.
double MeasureBandwidth(cudaStream_t s) {
  const size_t bytes = size_t{1} << 31;
  cuda::DeviceBuffer a, b;
  CHECK_OK(a.Allocate(bytes, "bandwidth probe"));
  CHECK_OK(b.Allocate(bytes, "bandwidth probe"));
  std::vector<double> t;
  for (int i = 0; i < 6; ++i) {
    cudaStreamSynchronize(s);
    const auto t0 = Clock::now();
    cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, s);
    cudaStreamSynchronize(s);
    if (i > 0) t.push_back(Seconds(t0, Clock::now()));
  }
  return 2.0 * bytes / *std::min_element(t.begin(), t.end());
}

// An 8192^3 GEMM in the weight type with float32 accumulation.
double MeasureFlops(cuda::WeightType wt, cudaStream_t s) {
  const int n = 8192;
  cuda::DeviceBuffer x, w, y;
  CHECK_OK(x.Allocate(size_t{n} * n * cuda::WeightTypeBytes(wt), "gemm probe"));
  CHECK_OK(w.Allocate(size_t{n} * n * cuda::WeightTypeBytes(wt), "gemm probe"));
  CHECK_OK(y.Allocate(size_t{n} * n * 4, "gemm probe"));
  cuda::FillRandom(x.get(), wt, int64_t{n} * n, -1, 1, 1, s);
  cuda::FillRandom(w.get(), wt, int64_t{n} * n, -1, 1, 2, s);
  cuda::Cublas blas;
  CHECK_OK(blas.Init(s));
  std::vector<double> t;
  for (int i = 0; i < 6; ++i) {
    cudaStreamSynchronize(s);
    const auto t0 = Clock::now();
    CHECK_OK(blas.Gemm(x.get(), n, cuda::DeviceMatrix{w.get(), n, n}, wt, y.as<float>(), n, false));
    cudaStreamSynchronize(s);
    if (i > 0) t.push_back(Seconds(t0, Clock::now()));
  }
  return 2.0 * n * n * double{n} / *std::min_element(t.begin(), t.end());
}

// Median seconds of a step over `batch` (after warm-up calls), at most `seconds` of steps. With
// `sample`, every entry's token is sampled on the device (top-p 0.85, the chat default), so only
// ids cross to the host, and decode steps replay as CUDA graphs: what the server runs per token.
double TimeSteps(Backend& b, const std::vector<BatchEntry>& batch, double seconds, bool sample) {
  Logits logits;
  SamplingParams p;
  p.top_p = 0.85f;
  std::vector<DeviceSample> ds(batch.size());
  for (DeviceSample& d : ds) d = {true, &p, false, 0.5};
  std::vector<int32_t> tokens(batch.size());
  std::vector<double> t;
  const auto start = Clock::now();
  for (int i = 0; i < 4 || (Seconds(start, Clock::now()) < seconds && i < 500); ++i) {
    const auto t0 = Clock::now();
    CHECK_OK(sample ? b.ForwardSample(batch, ds, tokens, &logits) : b.Forward(batch, &logits));
    if (i > 2) t.push_back(Seconds(t0, Clock::now()));  // The first calls load kernels and capture graphs.
  }
  return Median(t);
}

int Main(int argc, char** argv) {
  const Args args = Parse(argc, argv);
  if (CudaDeviceCount() == 0) {
    std::fprintf(stderr, "cuda_bench: no CUDA device visible\n");
    return 1;
  }
  absl::StatusOr<cuda::WeightType> wt = cuda::ParseWeightType(args.dtype);
  CHECK_OK(wt.status());
  cudaSetDevice(args.device);
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, args.device);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  const double bandwidth = MeasureBandwidth(stream);
  const double flops = MeasureFlops(*wt, stream);
  std::printf("device %s: measured copy bandwidth %.0f GB/s, %s GEMM %.1f TFLOP/s\n", prop.name, bandwidth / 1e9,
              args.dtype.c_str(), flops / 1e12);

  nlohmann::json out;
  out["device"] = prop.name;
  out["arch"] = args.arch;
  out["dtype"] = args.dtype;
  out["bandwidth_gbs"] = bandwidth / 1e9;
  out["gemm_tflops"] = flops / 1e12;
  out["pdl"] = args.pdl;
  out["gemv_rows"] = args.gemv_rows;
  std::printf("\n%-6s %-9s %6s %11s %12s %9s %9s %9s %9s\n", "shape", "mode", "batch", "median ms", "tok/s", "GB/s",
              "of bw", "of flops", "launches");
  for (const std::string& shape : args.shapes) {
    const std::optional<ModelConfig> shape_config = Shape(args.arch, shape);
    if (!shape_config) {
      std::fprintf(stderr, "cuda_bench: --arch must be rwkv7, rwkv6, rwkv5.2 or rwkv4\n");
      return 2;
    }
    // RWKV-7 weights are made on the device; the other generations' on the host (Model::Random),
    // then uploaded.
    absl::StatusOr<std::unique_ptr<cuda::CudaWeights>> w =
        shape_config->arch == Architecture::kRwkv7
            ? cuda::CudaWeights::Random(*shape_config, *wt, 7, stream)
            : cuda::CudaWeights::Upload(*Model::Random(*shape_config, 7), *wt, stream);
    if (!w.ok()) {
      std::printf("%-6s skipped: %s\n", shape.c_str(), std::string(w.status().message()).c_str());
      continue;
    }
    const ModelConfig c = (*w)->config();
    const double step_bytes = static_cast<double>((*w)->step_bytes());
    // Every weight but the embedding is one multiply-add per token.
    const double flop_per_token = 2.0 * static_cast<double>((*w)->parameters() - int64_t{c.vocab} * c.n_embd);
    // As many slots as the largest batch, if they fit beside the weights.
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    const int max_batch = *std::max_element(args.batches.begin(), args.batches.end());
    BackendOptions o;
    o.kind = "cuda";
    o.device = args.device;
    o.max_step_tokens = std::max(1024, max_batch);
    o.cuda_programmatic_launch = args.pdl;
    o.cuda_gemv_rows = args.gemv_rows;
    const size_t scratch = size_t{static_cast<size_t>(o.max_step_tokens)} * (c.vocab * 4 + c.n_embd * 100 + c.ffn_dim * 8);
    const int fit = static_cast<int>((free_b > scratch ? free_b - scratch : 0) * 0.9 / c.StateBytes());
    o.pool_slots = std::max(1, std::min(std::max(max_batch, 32), fit));
    const auto created = Clock::now();
    absl::StatusOr<std::unique_ptr<cuda::CudaBackend>> be = cuda::CudaBackend::Create(std::move(*w), o, stream);
    if (!be.ok()) {
      std::printf("%-6s skipped: %s\n", shape.c_str(), std::string(be.status().message()).c_str());
      continue;
    }
    cuda::CudaBackend& cb = **be;
    const double create_s = Seconds(created, Clock::now());
    const std::vector<int> graphs = cb.graph_sizes();
    std::printf("%-6s created in %.2f s with %zu decode graphs (batch 1 .. %d)\n", shape.c_str(), create_s,
                graphs.size(), graphs.empty() ? 0 : graphs.back());
    if (const absl::Status capture = cb.graph_capture_error(); !capture.ok()) {
      std::printf("%-6s a graph capture failed (those sizes run eagerly): %s\n", shape.c_str(),
                  std::string(capture.message()).c_str());
    }
    Backend& b = cb;
    std::vector<int> slots;
    for (int i = 0; i < o.pool_slots; ++i) slots.push_back(*b.pool().Acquire());
    std::vector<int32_t> tokens(2048);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919 + 13) % c.vocab);
    nlohmann::json rows = nlohmann::json::array();
    // A decode step reads the weights once and each sequence's state once and writes it back.
    auto report = [&](const char* mode, const std::string& label, int tokens_per_step, double sec, bool decode) {
      const double tps = tokens_per_step / sec;
      const double state_bytes = decode ? 2.0 * tokens_per_step * static_cast<double>(c.StateBytes()) : 0;
      const double gbs = decode ? (step_bytes + state_bytes) / sec / 1e9 : 0;
      const int64_t launches = cb.last_step_launches();
      std::printf("%-6s %-9s %6s %11.3f %12.1f %9s %8.1f%% %8.1f%% %9lld\n", shape.c_str(), mode, label.c_str(),
                  sec * 1e3, tps, decode ? std::to_string(static_cast<int>(gbs)).c_str() : "-",
                  decode ? 100 * gbs * 1e9 / bandwidth : 0.0, 100 * tps * flop_per_token / flops,
                  static_cast<long long>(launches));
      rows.push_back({{"mode", mode}, {"label", label}, {"median_ms", sec * 1e3}, {"tokens_per_s", tps},
                      {"weight_bytes", decode ? step_bytes : 0.0}, {"state_bytes", state_bytes},
                      {"achieved_gbs", gbs}, {"bandwidth_fraction", gbs * 1e9 / bandwidth},
                      {"flops_fraction", tps * flop_per_token / flops}, {"launches_per_step", launches}});
    };
    auto decode = [&](const char* mode, int batch) {
      if (batch > o.pool_slots) {
        std::printf("%-6s %-9s %6d   skipped: %d slots fit\n", shape.c_str(), mode, batch, o.pool_slots);
        return;
      }
      std::vector<BatchEntry> entries;
      for (int i = 0; i < batch; ++i)
        entries.push_back({slots[i], std::span<const int32_t>(tokens).subspan(i, 1), false});
      report(mode, std::to_string(batch), batch, TimeSteps(b, entries, args.seconds, true), true);
    };
    for (int batch : args.batches) decode("decode", batch);
    // The same small batches without programmatic dependent launch, then through cuBLAS.
    if (args.pdl) {
      CHECK_OK(cb.Reconfigure(args.gemv_rows, false));
      for (int batch : args.batches) {
        if (batch <= cuda::kGemvMaxRows) decode("dec-nopdl", batch);
      }
    }
    if (args.gemv_rows > 0) {
      CHECK_OK(cb.Reconfigure(0, args.pdl));
      for (int batch : args.batches) {
        if (batch <= cuda::kGemvMaxRows) decode("dec-blas", batch);
      }
    }
    {
      std::vector<BatchEntry> one = {{slots[0], std::span<const int32_t>(tokens).subspan(0, 1024), false}};
      report("prefill", "1x1024", 1024, TimeSteps(b, one, args.seconds, false), false);
    }
    if (o.pool_slots >= 32) {
      std::vector<BatchEntry> many;
      for (int i = 0; i < 32; ++i) many.push_back({slots[i], std::span<const int32_t>(tokens).subspan(32 * i, 32), false});
      report("prefill", "32x32", 1024, TimeSteps(b, many, args.seconds, false), false);
    }
    out["shapes"][shape] = {{"config", c.Describe()},
                            {"parameters", c.parameter_count},
                            {"weight_bytes_per_step", step_bytes},
                            {"state_bytes", c.StateBytes()},
                            {"slots", o.pool_slots},
                            {"create_seconds", create_s},
                            {"graph_sizes", graphs},
                            {"rows", rows}};
  }
  if (!args.json.empty()) std::ofstream(args.json) << out.dump(1) << "\n";
  cudaStreamDestroy(stream);
  return 0;
}

}  // namespace
}  // namespace rwkv

int main(int argc, char** argv) { return rwkv::Main(argc, argv); }
