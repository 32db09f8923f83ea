// VisualRWKV-7's image encoder on the CPU at its real sizes with random weights: DINOv2 ViT-L/14
// (4 registers) and SigLIP so400m/14 at 448x448, SAM ViT-B at 1024x1024, the gated projector to
// the 0.1B model's width (768), 16 tokens per image. The checkpoint (vit.*, proj.*, bf16, ~1.6 GB)
// is written once to --weights (default /tmp/rwkv-visual-encoder-random.safetensors) and reused.
// Prints the median seconds per stage over --rounds images, and JSON with --json.
//
// Then, unless --ttft 0: time to first token through the scheduler (the server's core, without
// gRPC) on a random RWKV-7 0.1B (L12 C768, f32) with this encoder: the first question on an
// image (encoder, then the prompt with the image's 16 rows), and a second question on the same
// image (the state after the image from the prefix cache: no vision work). Each round uses a new
// image (one pixel changed: a new digest).
//
//   vision_bench [--rounds 3] [--threads 2] [--weights FILE] [--json FILE] [--ttft 1]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "engine/backend.h"
#include "engine/dtype.h"
#include "engine/model.h"
#include "engine/tensor_file.h"
#include "engine/tokenizer.h"
#include "engine/vision/encoder.h"
#include "engine/vision/layers.h"
#include "nlohmann/json.hpp"
#include "server/core/requests.h"
#include "server/core/scheduler.h"
#include "server/core/vision.h"

namespace rwkv {
namespace {

struct Spec {
  std::string name;
  std::vector<int64_t> shape;
  float scale;  // Uniform in [-scale, scale]; LayerNorm weights around 1.
  bool around_one = false;
};

void AddVit(std::vector<Spec>& s, const std::string& p, int dim, int depth, int mlp, int patch, int grid, int regs,
            bool layer_scale) {
  const float w = 1.0f / std::sqrt(static_cast<float>(dim));
  s.push_back({p + "patch_embed.proj.weight", {dim, 3, patch, patch}, 0.02f});
  s.push_back({p + "patch_embed.proj.bias", {dim}, 0.02f});
  if (regs > 0) {
    s.push_back({p + "cls_token", {1, 1, dim}, 0.02f});
    s.push_back({p + "reg_token", {1, regs, dim}, 0.02f});
  }
  s.push_back({p + "pos_embed", {1, int64_t{grid} * grid, dim}, 0.02f});
  for (int l = 0; l < depth; ++l) {
    const std::string b = p + "blocks." + std::to_string(l) + ".";
    for (const char* n : {"norm1", "norm2"}) {
      s.push_back({b + n + ".weight", {dim}, 0.1f, true});
      s.push_back({b + n + ".bias", {dim}, 0.02f});
    }
    s.push_back({b + "attn.qkv.weight", {3 * dim, dim}, w});
    s.push_back({b + "attn.qkv.bias", {3 * dim}, 0.02f});
    s.push_back({b + "attn.proj.weight", {dim, dim}, w});
    s.push_back({b + "attn.proj.bias", {dim}, 0.02f});
    s.push_back({b + "mlp.fc1.weight", {mlp, dim}, w});
    s.push_back({b + "mlp.fc1.bias", {mlp}, 0.02f});
    s.push_back({b + "mlp.fc2.weight", {dim, mlp}, 1.0f / std::sqrt(static_cast<float>(mlp))});
    s.push_back({b + "mlp.fc2.bias", {dim}, 0.02f});
    if (layer_scale) {
      s.push_back({b + "ls1.gamma", {dim}, 0.1f});
      s.push_back({b + "ls2.gamma", {dim}, 0.1f});
    }
  }
}

std::vector<Spec> EncoderSpecs(int n_embd) {
  std::vector<Spec> s;
  AddVit(s, "vit.dino_featurizer.", 1024, 24, 4096, 14, 32, 4, true);
  AddVit(s, "vit.siglip_featurizer.", 1152, 27, 4304, 14, 32, 0, false);
  const std::string p = "vit.sam_featurizer.";
  s.push_back({p + "patch_embed.proj.weight", {768, 3, 16, 16}, 0.02f});
  s.push_back({p + "patch_embed.proj.bias", {768}, 0.02f});
  s.push_back({p + "pos_embed", {1, 64, 64, 768}, 0.02f});
  for (int l = 0; l < 12; ++l) {
    const std::string b = p + "blocks." + std::to_string(l) + ".";
    const int64_t rel = (l % 3 == 2) ? 127 : 27;  // Global blocks 2, 5, 8, 11; windows of 14.
    for (const char* n : {"norm1", "norm2"}) {
      s.push_back({b + n + ".weight", {768}, 0.1f, true});
      s.push_back({b + n + ".bias", {768}, 0.02f});
    }
    s.push_back({b + "attn.qkv.weight", {2304, 768}, 0.036f});
    s.push_back({b + "attn.qkv.bias", {2304}, 0.02f});
    s.push_back({b + "attn.proj.weight", {768, 768}, 0.036f});
    s.push_back({b + "attn.proj.bias", {768}, 0.02f});
    s.push_back({b + "attn.rel_pos_h", {rel, 64}, 0.02f});
    s.push_back({b + "attn.rel_pos_w", {rel, 64}, 0.02f});
    s.push_back({b + "mlp.lin1.weight", {3072, 768}, 0.036f});
    s.push_back({b + "mlp.lin1.bias", {3072}, 0.02f});
    s.push_back({b + "mlp.lin2.weight", {768, 3072}, 0.018f});
    s.push_back({b + "mlp.lin2.bias", {768}, 0.02f});
  }
  s.push_back({p + "neck.0.weight", {256, 768, 1, 1}, 0.036f});
  s.push_back({p + "neck.1.weight", {256}, 0.1f, true});
  s.push_back({p + "neck.1.bias", {256}, 0.02f});
  s.push_back({p + "neck.2.weight", {256, 256, 3, 3}, 0.02f});
  s.push_back({p + "neck.3.weight", {256}, 0.1f, true});
  s.push_back({p + "neck.3.bias", {256}, 0.02f});
  s.push_back({"proj.gate.weight", {3200, 3200}, 0.018f});
  s.push_back({"proj.o_proj.weight", {n_embd, 3200}, 0.018f});
  s.push_back({"proj.ln_v.weight", {n_embd}, 0.1f, true});
  s.push_back({"proj.ln_v.bias", {n_embd}, 0.02f});
  return s;
}

// A bf16 safetensors file of uniform random tensors.
bool WriteRandom(const std::string& path, const std::vector<Spec>& specs) {
  nlohmann::json header = nlohmann::json::object();
  int64_t offset = 0;
  for (const Spec& s : specs) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    header[s.name] = {{"dtype", "BF16"}, {"shape", s.shape}, {"data_offsets", {offset, offset + 2 * n}}};
    offset += 2 * n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary);
  const uint64_t len = text.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint16_t> buf;
  for (const Spec& s : specs) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    buf.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const float v = (s.around_one ? 1.0f : 0.0f) + s.scale * u(rng);
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      buf[i] = static_cast<uint16_t>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);  // Round to nearest even.
    }
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(2 * n));
  }
  return static_cast<bool>(out);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

using Clock = std::chrono::steady_clock;

// Submit to the first generated token, and the final event.
class TimingSink : public server::SequenceSink {
 public:
  TimingSink() : start_(Clock::now()) {}
  void OnChunk(server::ChunkEvent) override {}
  void OnGenerated() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (first_ == Clock::time_point{}) first_ = Clock::now();
  }
  void OnFinish(server::FinalEvent f) override {
    std::lock_guard<std::mutex> lock(mu_);
    final_ = std::move(f);
    done_ = true;
    cv_.notify_all();
  }
  bool Cancelled() const override { return false; }
  bool Backlogged() const override { return false; }
  // Seconds to the first token; the final event.
  std::pair<double, server::FinalEvent> Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return {std::chrono::duration<double>(first_ - start_).count(), final_};
  }

 private:
  Clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  Clock::time_point first_{};
  server::FinalEvent final_;
  bool done_ = false;
};

class EncodeTimes : public server::SchedulerObserver {
 public:
  void OnImageEncoded(double seconds, bool ok) override { last = seconds; }
  std::atomic<double> last{0};
};

struct Ttft {
  std::vector<double> first, second, encode, first_prefill;
  int prompt_tokens = 0, cached = 0;
};

// One question on `image` through `sched`: seconds to the first token.
std::pair<double, server::FinalEvent> Ask(server::Scheduler& sched, const Tokenizer& tok, const std::string& question,
                                          const server::PromptImage& image) {
  server::SequenceRequest r;
  server::VisionLimits v;
  v.tokens = sched.image_tokens();
  server::RequestLimits limits;
  const absl::Status st = server::EncodePromptWithImages(absl::StrCat("User: <image>\n", question, "\n\nAssistant:"),
                                                         "text", {image}, "images", tok, limits, v, &r);
  if (!st.ok()) {
    std::fprintf(stderr, "vision_bench: %s\n", std::string(st.message()).c_str());
    std::exit(1);
  }
  r.sampling.temperature = 0;
  r.max_tokens = 1;
  r.cache_points = {static_cast<int>(r.prompt.size())};
  auto sink = std::make_shared<TimingSink>();
  if (!sched.Submit(std::move(r), sink).ok()) std::exit(1);
  auto out = sink->Wait();
  if (!out.second.status.ok()) {
    std::fprintf(stderr, "vision_bench: %s\n", out.second.status.ToString().c_str());
    std::exit(1);
  }
  return out;
}

Ttft MeasureTtft(std::shared_ptr<const vision::VisionEncoder> enc, const vision::Image& base, int rounds, int threads) {
  const ModelConfig c = *bench::BenchConfig("rwkv7", 12, 768, 65536);
  std::fprintf(stderr, "building random %s ...\n", c.Describe().c_str());
  std::shared_ptr<const Model> model = Model::Random(c, 1);
  auto tok = Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/engine/vocab/rwkv_vocab_v20230424.txt");
  if (!tok.ok()) std::exit(1);
  BackendOptions bo;
  bo.pool_slots = 2;
  bo.threads = threads;
  server::SchedulerOptions so;
  so.max_running = 2;
  so.prefix_cache.max_bytes = 256 << 20;
  EncodeTimes times;
  server::Scheduler sched(*CreateBackend(model, bo), tok->get(), so, &times);
  if (!sched.SetImageWorker(std::make_unique<server::ImageWorker>(std::move(enc), threads)).ok()) std::exit(1);
  sched.Start();
  Ttft out;
  for (int r = 0; r < rounds; ++r) {
    vision::Image img = base;
    img.rgb[0] = static_cast<uint8_t>(img.rgb[0] + r + 1);  // A new image: a new digest.
    const server::PromptImage im = *server::PromptImageOf(std::move(img));
    const auto [t1, f1] = Ask(sched, **tok, "What is in this picture?", im);
    out.first.push_back(t1);
    out.encode.push_back(times.last.load());
    out.first_prefill.push_back(t1 - times.last.load());
    out.prompt_tokens = f1.prompt_tokens;
    const auto [t2, f2] = Ask(sched, **tok, "What colour is the sky in it?", im);
    out.second.push_back(t2);
    out.cached = f2.cached_prompt_tokens;
    std::fprintf(stderr, "ttft round %d/%d: first %.2f s, second %.3f s (%d of %d prompt tokens cached)\n", r + 1,
                 rounds, t1, t2, f2.cached_prompt_tokens, f2.prompt_tokens);
  }
  return out;
}

int Main(int argc, char** argv) {
  int rounds = 3, threads = 2, ttft = 1;
  std::string weights = "/tmp/rwkv-visual-encoder-random.safetensors", json_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--rounds") rounds = std::max(1, std::atoi(v.c_str()));
    else if (k == "--threads") threads = std::max(1, std::atoi(v.c_str()));
    else if (k == "--weights") weights = v;
    else if (k == "--json") json_path = v;
    else if (k == "--ttft") ttft = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "vision_bench: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  const int n_embd = 768;
  if (!std::ifstream(weights).good()) {
    std::fprintf(stderr, "writing random encoder weights to %s ...\n", weights.c_str());
    if (!WriteRandom(weights, EncoderSpecs(n_embd))) {
      std::fprintf(stderr, "vision_bench: cannot write %s\n", weights.c_str());
      return 1;
    }
  }
  auto file = TensorFile::Open(weights);
  if (!file.ok()) {
    std::fprintf(stderr, "vision_bench: %s\n", std::string(file.status().message()).c_str());
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto enc = vision::VisionEncoder::Load(**file, vision::VisionEncoderOptions{});
  if (!enc.ok()) {
    std::fprintf(stderr, "vision_bench: %s\n", std::string(enc.status().message()).c_str());
    return 1;
  }
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  vision::Image img;  // A 640x480 photo-sized gradient with texture.
  img.width = 640;
  img.height = 480;
  img.rgb.resize(640 * 480 * 3);
  for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = static_cast<uint8_t>((i * 31 + i / 1920 * 7) & 255);
  std::vector<double> pre, dino, siglip, sam, proj, total;
  for (int r = 0; r < rounds; ++r) {
    vision::VisionEncoder::Timings t;
    const auto s0 = std::chrono::steady_clock::now();
    auto rows = enc->Encode(img, threads, &t);
    if (!rows.ok()) {
      std::fprintf(stderr, "vision_bench: %s\n", std::string(rows.status().message()).c_str());
      return 1;
    }
    total.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count());
    pre.push_back(t.preprocess), dino.push_back(t.dino), siglip.push_back(t.siglip), sam.push_back(t.sam),
        proj.push_back(t.project);
    std::fprintf(stderr, "round %d/%d: %.2f s\n", r + 1, rounds, total.back());
  }
  std::printf("VisualRWKV-7 encoder, CPU, %d threads, random weights (bf16 file, f32 in memory), 640x480 image, "
              "%d rounds, medians (load %.1f s):\n",
              threads, rounds, load_s);
  std::printf("| stage | seconds |\n|---|---|\n| preprocess (3 resizes + normalise) | %.3f |\n| DINOv2 ViT-L/14 @448 (23 "
              "of 24 blocks) | %.2f |\n| SigLIP so400m/14 @448 (26 of 27 blocks) | %.2f |\n| SAM ViT-B @1024 + neck | "
              "%.2f |\n| pool + projector | %.3f |\n| total | %.2f |\n",
              Median(pre), Median(dino), Median(siglip), Median(sam), Median(proj), Median(total));
  nlohmann::json j = {{"threads", threads}, {"rounds", rounds},      {"load_s", load_s},
                      {"preprocess_s", Median(pre)}, {"dino_s", Median(dino)}, {"siglip_s", Median(siglip)},
                      {"sam_s", Median(sam)},       {"project_s", Median(proj)}, {"total_s", Median(total)}};
  {
    // The attention's softmax alone, one thread: SAM's global block size (4096 x 4096 scores of
    // one head), the std::exp loop (SoftmaxRowScalar, what the attention ran before) against SoftmaxRow, interleaved,
    // medians.
    const int n = 4096;
    std::vector<float> base(static_cast<size_t>(n) * n), rows;
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (float& x : base) x = nd(rng);
    std::vector<double> scalar, vec;
    for (int r = 0; r < 3; ++r) {
      rows = base;
      auto s0 = std::chrono::steady_clock::now();
      for (int t = 0; t < n; ++t) vision::SoftmaxRowScalar(rows.data() + static_cast<size_t>(t) * n, n);
      scalar.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count());
      rows = base;
      s0 = std::chrono::steady_clock::now();
      for (int t = 0; t < n; ++t) vision::SoftmaxRow(rows.data() + static_cast<size_t>(t) * n, n);
      vec.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count());
    }
    std::printf(
        "\nsoftmax of 4096 rows of 4096 scores, 1 thread, medians of 3: std::exp loop %.3f s, SoftmaxRow %.3f s "
        "(%.1fx)\n",
        Median(scalar), Median(vec), Median(scalar) / Median(vec));
    j["softmax_scalar_s"] = Median(scalar);
    j["softmax_vector_s"] = Median(vec);
  }
  if (ttft) {
    const Ttft t = MeasureTtft(std::make_shared<const vision::VisionEncoder>(std::move(*enc)), img, rounds, threads);
    std::printf("\nTime to first token, random RWKV-7 0.1B (L12 C768 V65536, f32), the scheduler without gRPC, "
                "%d rounds, medians:\n", rounds);
    std::printf("| question | seconds |\n|---|---|\n| first on an image (encode %.2f s + prompt of %d tokens %.3f s) "
                "| %.2f |\n| second on the same image (%d tokens from the prefix cache) | %.3f |\n| ratio | %.0fx |\n",
                Median(t.encode), t.prompt_tokens, Median(t.first_prefill), Median(t.first), t.cached,
                Median(t.second), Median(t.first) / Median(t.second));
    j["ttft_first_s"] = Median(t.first);
    j["ttft_second_s"] = Median(t.second);
    j["ttft_encode_s"] = Median(t.encode);
    j["ttft_first_prefill_s"] = Median(t.first_prefill);
    j["second_cached_tokens"] = t.cached;
  }
  if (!json_path.empty()) {
    std::ofstream(json_path) << j.dump(1) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace rwkv

int main(int argc, char** argv) { return rwkv::Main(argc, argv); }
