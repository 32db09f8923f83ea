// Engine-only throughput of the CPU backend on a random RWKV-7 of a real shape (made in memory,
// no file): decode steps at several batch sizes, prefill of one long prompt, and the machine's
// measured memory bandwidth with the decode floor it implies (weight bytes per step / bandwidth).
//
//   engine_bench [--arch rwkv7|rwkv6|rwkv5.2|rwkv4] [--layers 12 --embd 768 --vocab 65536]
//                [--batches 1,4,16,64] [--prompt 512]
//                [--seconds 2] [--json FILE] [--dtype f32|bf16|f16|int8|int4 (weight matrices)]
//
// Prints a table on stdout and writes the same numbers as JSON (default: engine_bench.json next to
// the binary, in the build folder). Medians over repeated steps.
#include <cblas.h>
#include <immintrin.h>

#include <filesystem>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "engine/backend.h"
#include "engine/cpu/gemm.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "nlohmann/json.hpp"

namespace rwkv {
namespace {

using bench::Clock;
using bench::Median;
using bench::Seconds;

// Sums 8-float vectors of [begin, end) with four independent AVX2 chains: fast enough that DRAM,
// not the adds, limits it.
__attribute__((target("avx2"))) float SumAvx2(const float* p, size_t n) {
  __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a = _mm256_add_ps(a, _mm256_loadu_ps(p + i));
    b = _mm256_add_ps(b, _mm256_loadu_ps(p + i + 8));
    c = _mm256_add_ps(c, _mm256_loadu_ps(p + i + 16));
    d = _mm256_add_ps(d, _mm256_loadu_ps(p + i + 24));
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
  float s = 0;
  for (float v : out) s += v;
  for (; i < n; ++i) s += p[i];
  return s;
}

// Read bandwidth with one thread per core over a buffer much larger than the caches: what a
// weight-streaming decode step needs. Returns {median, best} over passes, in bytes per second.
std::pair<double, double> MeasureReadBandwidth() {
  const size_t n = size_t{1} << 30 >> 2;  // 1 GiB of floats.
  std::vector<float> buf(n, 1.0f);
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<double> rates;
  volatile float sink = 0;
  for (int pass = 0; pass < 7; ++pass) {
    std::vector<float> partial(threads);
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t begin = n * t / threads, end = n * (t + 1) / threads;
        partial[t] = SumAvx2(buf.data() + begin, end - begin);
      });
    }
    for (auto& th : pool) th.join();
    const double s = Seconds(t0, Clock::now());
    sink = sink + partial[0];
    if (pass > 0) rates.push_back(n * sizeof(float) / s);  // The first pass faults the pages in.
  }
  return {Median(rates), *std::max_element(rates.begin(), rates.end())};
}

struct Args {
  std::string arch = "rwkv7";
  MatrixType dtype = MatrixType::kF32;
  int layers = 12, embd = 768, vocab = 65536, prompt = 512;
  std::vector<int> batches = {1, 4, 16, 64};
  double seconds = 2.0;
  std::string json = "engine_bench.json";
};

Args Parse(int argc, char** argv) {
  Args a;
  // By default next to the binary (the build folder), never in the working directory.
  a.json = (std::filesystem::path(argv[0]).parent_path() / "engine_bench.json").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--layers")
      a.layers = std::stoi(v);
    else if (k == "--embd")
      a.embd = std::stoi(v);
    else if (k == "--vocab")
      a.vocab = std::stoi(v);
    else if (k == "--prompt")
      a.prompt = std::stoi(v);
    else if (k == "--seconds")
      a.seconds = std::stod(v);
    else if (k == "--json")
      a.json = v;
    else if (k == "--arch")
      a.arch = v;
    else if (k == "--dtype") {
      absl::StatusOr<std::optional<MatrixType>> t = ParseMatrixType(v, "--dtype");
      if (!t.ok() || !*t) {
        std::fprintf(stderr, "engine_bench: --dtype must be f32, bf16, f16, int8 or int4\n");
        std::exit(2);
      }
      a.dtype = **t;
    }
    else if (k == "--batches") {
      a.batches.clear();
      size_t p = 0;
      while (p < v.size()) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        a.batches.push_back(std::stoi(v.substr(p, q - p)));
        p = q + 1;
      }
    } else {
      std::fprintf(stderr, "engine_bench: unknown flag %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

int Main(int argc, char** argv) {
  const Args args = Parse(argc, argv);
  const std::optional<ModelConfig> config = bench::BenchConfig(args.arch, args.layers, args.embd, args.vocab);
  if (!config) {
    std::fprintf(stderr, "engine_bench: --arch must be rwkv7, rwkv6, rwkv5.2 or rwkv4\n");
    return 2;
  }
  const ModelConfig& c = *config;

  std::printf("building random %s, %s matrices ...\n", c.Describe().c_str(), MatrixTypeName(args.dtype));
  std::shared_ptr<const Model> model = Model::Random(c, 1, args.dtype);
  const int max_batch = *std::max_element(args.batches.begin(), args.batches.end());
  BackendOptions o;
  o.pool_slots = max_batch;
  o.max_step_tokens = std::max(args.prompt, max_batch);
  auto backend_or = CreateBackend(model, o);
  if (!backend_or.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", std::string(backend_or.status().message()).c_str());
    return 1;
  }
  Backend& backend = **backend_or;
  std::vector<int> slots;
  for (int i = 0; i < max_batch; ++i) slots.push_back(*backend.pool().Acquire());

  // The floor uses the best pass: the most the memory system showed it can deliver.
  const auto [bandwidth_median, bandwidth] = MeasureReadBandwidth();
  // A decode step reads every weight except the embedding table (one row per token).
  const double step_bytes = static_cast<double>(model->weight_bytes()) - static_cast<double>(c.vocab) * c.n_embd * 4;
  const double floor_s = step_bytes / bandwidth;
  const double step_params = static_cast<double>(model->config().parameter_count) - static_cast<double>(c.vocab) * c.n_embd;
  const double flops_per_token = 2.0 * step_params;

  nlohmann::json out;
  out["model"] = c.Describe();
  out["dtype"] = MatrixTypeName(args.dtype);
  out["parameters"] = model->config().parameter_count;
  out["weight_bytes_per_step"] = step_bytes;
  out["read_bandwidth_gbs_best"] = bandwidth / 1e9;
  out["read_bandwidth_gbs_median"] = bandwidth_median / 1e9;
  out["decode_floor_ms"] = floor_s * 1e3;
  out["threads"] = std::thread::hardware_concurrency();

  std::printf("\nmodel %s, %.1fM parameters, %.0f MB of weights read per decode step\n", c.Describe().c_str(),
              model->config().parameter_count / 1e6, step_bytes / 1e6);
  std::printf("measured read bandwidth %.2f GB/s best, %.2f median -> batch-1 floor %.1f ms/step (%.2f tok/s)\n\n",
              bandwidth / 1e9, bandwidth_median / 1e9, floor_s * 1e3, 1.0 / floor_s);
  std::printf("%-16s %8s %12s %12s %12s %10s\n", "mode", "batch", "median ms", "tok/s", "GFLOP/s", "x floor");

  Logits logits;
  std::vector<int32_t> tokens(std::max(args.prompt, max_batch));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919 + 13) % c.vocab);
  double b1_tps = 0, b16_tps = 0;
  for (int b : args.batches) {
    std::vector<BatchEntry> batch;
    for (int i = 0; i < b; ++i) batch.push_back({slots[i], std::span<const int32_t>(tokens).subspan(i, 1), false});
    std::vector<double> times;
    const auto start = Clock::now();
    for (int step = 0; step < 3 || (Seconds(start, Clock::now()) < args.seconds && step < 200); ++step) {
      const auto t0 = Clock::now();
      if (!backend.Forward(batch, &logits).ok()) return 1;
      if (step > 0) times.push_back(Seconds(t0, Clock::now()));  // The first step warms caches.
    }
    const double med = Median(times);
    const double tps = b / med;
    if (b == 1) b1_tps = tps;
    if (b == 16) b16_tps = tps;
    char vs_floor[16] = "-";
    if (b == 1) std::snprintf(vs_floor, sizeof vs_floor, "%.2f", med / floor_s);
    std::printf("%-16s %8d %12.2f %12.1f %12.1f %10s\n", "decode", b, med * 1e3, tps, tps * flops_per_token / 1e9,
                vs_floor);
    out["decode"].push_back({{"batch", b},
                             {"median_ms", med * 1e3},
                             {"tokens_per_s", tps},
                             {"steps", times.size()},
                             {"gflops", tps * flops_per_token / 1e9}});
  }
  // Prefill: one prompt of args.prompt tokens, last-token logits only.
  std::vector<double> times;
  BatchEntry e{slots[0], std::span<const int32_t>(tokens).subspan(0, args.prompt), false};
  for (int rep = 0; rep < 4; ++rep) {
    (void)backend.pool().Reset(slots[0]);
    const auto t0 = Clock::now();
    if (!backend.Forward({&e, 1}, &logits).ok()) return 1;
    if (rep > 0) times.push_back(Seconds(t0, Clock::now()));
  }
  const double med = Median(times);
  const double prefill_tps = args.prompt / med;
  const double layer_flops = 2.0 * (step_params - static_cast<double>(c.vocab) * c.n_embd);  // No head per prompt token.
  std::printf("%-16s %8d %12.2f %12.1f %12.1f %10s\n", "prefill", args.prompt, med * 1e3, prefill_tps,
              prefill_tps * layer_flops / 1e9, "-");
  out["prefill"] = {{"tokens", args.prompt}, {"median_ms", med * 1e3}, {"tokens_per_s", prefill_tps}};

  // The kernel choice, measured: our packed kernel against OpenBLAS on the FFN key shape.
  std::printf("\nGEMM %d x %d (FFN key), ms per product, median:\n%8s %12s %12s %8s\n", c.ffn_dim, c.n_embd, "rows",
              "ours", "OpenBLAS", "ratio");
  {
    const int n = c.ffn_dim, k = c.n_embd;
    std::vector<float> w(static_cast<size_t>(n) * k), packed(PackedMatrix::Floats(n, k));
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    cpu::Pack(w.data(), n, k, packed.data());
    const PackedMatrix W{packed.data(), n, k};
    for (int rows : {1, 4, 16, 64, 512}) {
      std::vector<float> x(static_cast<size_t>(rows) * k, 0.25f), y(static_cast<size_t>(rows) * n);
      auto time = [&](auto fn) {
        std::vector<double> t;
        for (int rep = 0; rep < (rows >= 64 ? 7 : 31); ++rep) {
          const auto t0 = Clock::now();
          fn();
          if (rep > 0) t.push_back(Seconds(t0, Clock::now()));
        }
        return Median(t);
      };
      const double ours = time([&] { cpu::Linear(x.data(), rows, W, y.data(), n, false, 0); });
      const double blas = time([&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, k, 1.0f, x.data(), k, w.data(), k, 0.0f, y.data(),
                    n);
      });
      std::printf("%8d %12.3f %12.3f %8.2f\n", rows, ours * 1e3, blas * 1e3, blas / ours);
      out["gemm_ffn_key"].push_back({{"rows", rows}, {"ours_ms", ours * 1e3}, {"openblas_ms", blas * 1e3}});
    }
  }

  // Host sampling cost per token at this vocabulary (ChatRWKV defaults: top_p 0.85, penalties).
  std::printf("\nsampler, vocab %d, top_p 0.85, median ms per token:", c.vocab);
  for (float spread : {0.5f, 3.0f}) {
    std::mt19937 rng(7);
    std::vector<float> lg(c.vocab);
    for (float& l : lg) l = std::normal_distribution<float>(0, spread)(rng);
    SamplingParams sp;
    sp.top_p = 0.85f;
    sp.presence_penalty = sp.frequency_penalty = 0.2f;
    sp.penalty_decay = 0.996f;
    Sampler sampler(sp, c.vocab);
    std::vector<double> t;
    for (int i = 0; i < 101; ++i) {
      const auto t0 = Clock::now();
      sampler.Sample(lg);
      if (i > 0) t.push_back(Seconds(t0, Clock::now()));
    }
    std::printf("  logit std %.1f: %.3f", spread, Median(t) * 1e3);
    out["sampler_ms"].push_back({{"logit_std", spread}, {"median_ms", Median(t) * 1e3}});
  }
  std::printf("\n");

  std::printf("\ntargets: batch-1 decode within 1.5x of the floor: %.2fx %s\n",
              b1_tps > 0 ? (1.0 / b1_tps) / floor_s : 0,
              b1_tps > 0 && (1.0 / b1_tps) / floor_s <= 1.5 ? "(met)" : "(NOT met)");
  if (b1_tps > 0 && b16_tps > 0) {
    std::printf("         batch-16 aggregate >= 8x batch 1: %.1fx %s\n", b16_tps / b1_tps,
                b16_tps / b1_tps >= 8 ? "(met)" : "(NOT met)");
  }
  if (b1_tps > 0) {
    std::printf("         prefill >= 5x batch-1 decode: %.1fx %s\n", prefill_tps / b1_tps,
                prefill_tps / b1_tps >= 5 ? "(met)" : "(NOT met)");
  }
  out["ratios"] = {{"b1_over_floor", b1_tps > 0 ? (1.0 / b1_tps) / floor_s : 0},
                   {"b16_over_b1", b1_tps > 0 ? b16_tps / b1_tps : 0},
                   {"prefill_over_b1", b1_tps > 0 ? prefill_tps / b1_tps : 0}};
  std::ofstream(args.json) << out.dump(2) << "\n";
  std::printf("json: %s\n", args.json.c_str());
  return 0;
}

}  // namespace
}  // namespace rwkv

int main(int argc, char** argv) { return rwkv::Main(argc, argv); }
