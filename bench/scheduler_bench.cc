// Host time of decode steps on the GPU path, measured without a GPU. The real scheduler (batch
// building, per-token bookkeeping, detokenization, stop-string matching, chunk events) drives a
// backend that samples "on the device" and does the CUDA backend's host-side work of a step (batch
// validation, StepPlan, table packing, sampling jobs, padding to the graph ladder) and no device
// work. The gap between one engine call's return and the next call is the time a GPU would sit
// idle each step unless the host's work overlapped the device's; the time inside the call is the
// host part of the step the backend itself adds (CUDA API calls not included).
//
//   scheduler_bench [--batches 1,8,32,128,256] [--steps 400] [--json FILE]
//
// Real World tokenizer; tokens cycle through an English paragraph's ids; top-p 0.85 with a
// "\n\nUser:" stop string, as a chat request. Medians over steady decode steps (all sequences
// running, one token each).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "engine/backend.h"
#include "engine/cuda/sample_jobs.h"
#include "engine/cuda/step_plan.h"
#include "engine/state_pool.h"
#include "engine/tokenizer.h"
#include "nlohmann/json.hpp"
#include "rwkv/v1/rwkv.pb.h"
#include "server/core/scheduler.h"

namespace rwkv {
namespace {

using bench::Clock;
using bench::Median;
using bench::Seconds;

// Every call: the CUDA backend's host work for the step, then the next id of the cycle for
// each entry. Records when each call starts and ends, and its shape.
class HostOnlyBackend final : public Backend {
 public:
  HostOnlyBackend(int slots, std::vector<int32_t> cycle) : pool_(slots, 2), cycle_(std::move(cycle)) {
    config_.vocab = 65536;
    config_.n_layer = 1;
    ladder_ = cuda::GraphLadder(slots);
  }
  std::string_view name() const override { return "host-only"; }
  const ModelConfig& config() const override { return config_; }
  StatePool& pool() override { return pool_; }
  int max_step_tokens() const override { return 1 << 16; }
  bool samples_on_device() const override { return true; }
  absl::Status Forward(std::span<const BatchEntry> batch, Logits* out) override {
    return ForwardSample(batch, {}, {}, out);
  }
  absl::Status ForwardSample(std::span<const BatchEntry> batch, std::span<const DeviceSample> sampling,
                             std::span<int32_t> tokens, Logits* out) override {
    Call call;
    call.start = Clock::now();
    call.entries = static_cast<int>(batch.size());
    call.decode = std::all_of(batch.begin(), batch.end(), [](const BatchEntry& e) { return e.tokens.size() == 1; });
    if (absl::Status st = ValidateBatch(batch); !st.ok()) return st;
    out->Prepare(batch, config_.vocab);
    done_.assign(batch.size(), 0);
    while (plan_.Next(batch, done_, 4096, *out)) {
      if (plan_.IsDecode()) plan_.Pad(cuda::LadderSize(ladder_, plan_.rows()), pool_.capacity());
      plan_.Pack(&packed_);
      jobs_.Fill(plan_, sampling, /*skips=*/plan_.IsDecode());
      plan_.Advance(&done_);
    }
    for (size_t e = 0; e < tokens.size(); ++e) tokens[e] = cycle_[(next_++) % cycle_.size()];
    call.end = Clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(call);
    return absl::OkStatus();
  }
  struct Call {
    Clock::time_point start, end;
    int entries = 0;
    bool decode = false;
  };
  std::vector<Call> TakeCalls() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::move(calls_);
  }

 private:
  ModelConfig config_;
  HostStatePool pool_;
  std::vector<int32_t> cycle_;
  std::vector<int> ladder_;
  size_t next_ = 0;
  cuda::StepPlan plan_;
  std::vector<int> done_;
  std::vector<int32_t> packed_;
  cuda::SampleJobs jobs_;
  std::mutex mu_;
  std::vector<Call> calls_;
};

// What the gRPC stream's sink does with a chunk on the scheduler thread, short of gRPC itself: the
// response message built and queued under the stream's lock (its writes are drained here at once;
// StartWrite's own cost, when no write is in flight, is not counted).
class StreamLikeSink : public server::SequenceSink {
 public:
  void OnChunk(server::ChunkEvent c) override {
    v1::GenerateResponse msg;
    v1::Chunk* out = msg.mutable_chunk();
    out->set_text(std::move(c.text));
    out->mutable_token_ids()->Add(c.token_ids.begin(), c.token_ids.end());
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(msg));
    if (queue_.size() > 4) queue_.pop_front();
  }
  void OnFinish(server::FinalEvent) override {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
  bool Cancelled() const override { return false; }
  bool Backlogged() const override { return false; }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
  }

 private:
  std::deque<v1::GenerateResponse> queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

int Main(int argc, char** argv) {
  std::vector<int> batches = {1, 8, 32, 128, 256};
  int steps = 400;
  std::string json_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--batches") {
      batches.clear();
      for (absl::string_view s : absl::StrSplit(v, ',')) {
        int b;
        if (absl::SimpleAtoi(s, &b) && b > 0) batches.push_back(b);
      }
    } else if (k == "--steps") {
      steps = std::max(10, std::atoi(v.c_str()));
    } else if (k == "--json") {
      json_path = v;
    } else {
      std::fprintf(stderr, "scheduler_bench: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  auto tok = Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/engine/vocab/rwkv_vocab_v20230424.txt");
  if (!tok.ok()) {
    std::fprintf(stderr, "scheduler_bench: %s\n", std::string(tok.status().message()).c_str());
    return 1;
  }
  const std::vector<int32_t> cycle = (*tok)->Encode(
      "The state of a recurrent model is a fixed number of floats, whatever the length of the conversation. "
      "A server can keep it between turns, so that the next turn costs only its new tokens; the rest of the "
      "work is moving weights through the processor once per step, for every sequence of the batch at once.");
  const std::vector<int32_t> prompt = (*tok)->Encode("User: Tell me about recurrent models.\n\nAssistant:");
  std::printf("%6s %10s %14s %14s %14s\n", "batch", "steps", "gap us/step", "call us/step", "host us/token");
  nlohmann::json rows = nlohmann::json::array();
  for (int batch : batches) {
    auto backend = std::make_unique<HostOnlyBackend>(batch, cycle);
    HostOnlyBackend* be = backend.get();
    server::SchedulerOptions so;
    so.max_running = batch;
    so.token_budget = std::max(512, batch);
    so.queue_length = batch;
    so.prefix_cache.max_bytes = 0;
    server::Scheduler sched(std::move(backend), tok->get(), so);
    sched.Start();
    std::vector<std::shared_ptr<StreamLikeSink>> sinks;
    for (int i = 0; i < batch; ++i) {
      server::SequenceRequest r;
      r.prompt = prompt;
      r.max_tokens = steps + 20;
      r.sampling.top_p = 0.85f;
      r.stop_strings = {"\n\nUser:"};
      r.stop_tokens = {0};
      auto sink = std::make_shared<StreamLikeSink>();
      if (!sched.Submit(std::move(r), sink).ok()) {
        std::fprintf(stderr, "scheduler_bench: submit failed\n");
        return 1;
      }
      sinks.push_back(sink);
    }
    for (auto& s : sinks) s->Wait();
    const std::vector<HostOnlyBackend::Call> calls = be->TakeCalls();
    std::vector<double> gaps, inside;
    for (size_t i = 1; i < calls.size(); ++i) {
      if (calls[i - 1].decode && calls[i].decode && calls[i - 1].entries == batch && calls[i].entries == batch) {
        gaps.push_back(Seconds(calls[i - 1].end, calls[i].start) * 1e6);
        inside.push_back(Seconds(calls[i].start, calls[i].end) * 1e6);
      }
    }
    const double gap = Median(gaps), call = Median(inside);
    std::printf("%6d %10zu %14.1f %14.1f %14.2f\n", batch, gaps.size(), gap, call, (gap + call) / batch);
    rows.push_back({{"batch", batch},
                    {"steps", gaps.size()},
                    {"gap_us", gap},
                    {"call_us", call},
                    {"host_us_per_token", (gap + call) / batch}});
  }
  if (!json_path.empty()) std::ofstream(json_path) << nlohmann::json{{"rows", rows}}.dump(1) << "\n";
  return 0;
}

}  // namespace
}  // namespace rwkv

int main(int argc, char** argv) { return rwkv::Main(argc, argv); }
