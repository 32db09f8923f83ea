// A deterministic stand-in for a model, for scheduler tests: each slot's state is a running hash
// of the tokens fed, and the logits put one clear maximum on hash % vocab. Greedy decoding is
// therefore a pure function of the whole token history, as with a real RNN, and its expected
// output can be computed without the scheduler (FakeModel::Greedy).
#ifndef RWKV_TESTS_SERVER_FAKE_BACKEND_H_
#define RWKV_TESTS_SERVER_FAKE_BACKEND_H_

#include <cstdint>
#include <algorithm>
#include <span>
#include <vector>

#include "engine/backend.h"
#include "engine/state_pool.h"
#include "engine/tokenizer.h"

namespace rwkv::testing {

struct FakeModel {
  static constexpr int kVocab = 257;  // Byte vocabulary: id = byte + 1; 0 = end-of-text.
  // Slot layout: [hash, tokens fed].
  static void Feed(float* state, int32_t token) {
    uint32_t h = static_cast<uint32_t>(state[0]);
    h = (h * 31u + static_cast<uint32_t>(token) + 7u) % 65521u;  // Exact in float32 (< 2^24).
    state[0] = static_cast<float>(h);
    state[1] += 1;
  }
  // Printable ASCII only (ids 33..127 = bytes 32..126): never end-of-text, so that lengths are
  // controlled by max_tokens, and text is one character per token.
  static int32_t Argmax(const float* state) { return 33 + static_cast<int32_t>(state[0]) % 95; }
  static std::vector<int32_t> Greedy(const std::vector<int32_t>& prompt, int n) {
    float s[2] = {0, 0};
    for (int32_t t : prompt) Feed(s, t);
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      const int32_t t = Argmax(s);
      out.push_back(t);
      Feed(s, t);
    }
    return out;
  }
};

class FakeBackend final : public Backend {
 public:
  explicit FakeBackend(int slots) : pool_(slots, 2) {
    config_.vocab = FakeModel::kVocab;
    config_.n_layer = 1;
  }
  std::string_view name() const override { return "fake"; }
  const ModelConfig& config() const override { return config_; }
  StatePool& pool() override { return pool_; }
  int max_step_tokens() const override { return 1 << 16; }

  absl::Status Forward(std::span<const BatchEntry> batch, Logits* out) override {
    if (absl::Status st = ValidateBatch(batch); !st.ok()) return st;
    if (!broken.ok()) return broken;
    if (fail_next) {
      fail_next = false;
      return absl::InternalError("injected device failure");
    }
    std::vector<int> tokens;
    for (const BatchEntry& e : batch) tokens.push_back(static_cast<int>(e.tokens.size()));
    steps.push_back(tokens);
    out->Prepare(batch, config_.vocab);
    for (size_t e = 0; e < batch.size(); ++e) {
      float* s = pool_.slot_data(batch[e].slot);
      for (int32_t t : batch[e].tokens) Feed(s, t);
      float* row = out->MutableRow(static_cast<int>(e), 0);
      for (int v = 0; v < config_.vocab; ++v) row[v] = -10.0f;
      row[FakeModel::Argmax(s)] = 10.0f;
    }
    return absl::OkStatus();
  }

  absl::Status Healthy() const override { return broken; }

  // Device sampling, emulated: the arg-max of the entry's logits (the fake's logits have one clear
  // maximum, so every sampling setting picks it). Unmarked entries' logits go to `out`.
  bool samples_on_device() const override { return device_sampling; }
  absl::Status ForwardSample(std::span<const BatchEntry> batch, std::span<const DeviceSample> sampling,
                             std::span<int32_t> tokens, Logits* out) override {
    if (absl::Status st = Forward(batch, out); !st.ok()) return st;
    for (size_t e = 0; e < batch.size(); ++e) {
      tokens[e] = -1;
      if (!sampling[e].sample) continue;
      const auto row = out->Last(static_cast<int>(e));
      tokens[e] = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      ++device_samples;
      if (sampling[e].first) ++first_samples;
    }
    return absl::OkStatus();
  }

  std::vector<std::vector<int>> steps;  // Tokens per entry of every successful call.
  bool fail_next = false;
  absl::Status broken;  // A sticky failure: every Forward fails with it.
  bool device_sampling = false;
  int device_samples = 0, first_samples = 0;

 private:
  static void Feed(float* s, int32_t t) { FakeModel::Feed(s, t); }
  ModelConfig config_;
  HostStatePool pool_;
};

}  // namespace rwkv::testing

#endif  // RWKV_TESTS_SERVER_FAKE_BACKEND_H_
