// Backend: advances a batch of state slots over their tokens and returns logits.
//
// One call is one engine step: decode entries carry one token, prompt entries a chunk of several;
// both mix freely in one call. The big matrix products run as GEMMs over every token of the call.
//
// Thread safety: none. One thread owns a backend and its pool (the scheduler's thread).
#ifndef RWKV_ENGINE_BACKEND_H_
#define RWKV_ENGINE_BACKEND_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/state_pool.h"

namespace rwkv {

struct BatchEntry {
  int slot = -1;                    // An acquired slot of the backend's pool; distinct per entry.
  std::span<const int32_t> tokens;  // At least one token, each in [0, vocab).
  bool all_logits = false;          // Logits of every token instead of the last one only.
  // Empty, or one per token: nullptr takes tokens[i]'s embedding; otherwise n_embd floats that
  // replace it, fed through blocks.0.ln0 as an embedding row is (image features: VisualRWKV).
  // Backends that cannot take them refuse the batch (Backend::takes_embedding_rows).
  std::span<const float* const> rows = {};
};

// Logits of one Forward call. Reused across calls: its buffer only grows.
class Logits {
 public:
  int vocab() const { return vocab_; }
  int entries() const { return static_cast<int>(first_row_.size()) - 1; }
  // Rows of entry e: 1, or tokens.size() when all_logits was set.
  int rows(int e) const { return first_row_[e + 1] - first_row_[e]; }
  // Row r of entry e (r = rows(e) - 1 is the last token).
  std::span<const float> Row(int e, int r) const {
    return {data_.data() + static_cast<size_t>(first_row_[e] + r) * vocab_, static_cast<size_t>(vocab_)};
  }
  std::span<const float> Last(int e) const { return Row(e, rows(e) - 1); }

  // For backends: sizes the buffer for `batch` and returns the first row of each entry.
  void Prepare(std::span<const BatchEntry> batch, int vocab);
  int first_row(int e) const { return first_row_[e]; }
  float* MutableRow(int e, int r) { return data_.data() + static_cast<size_t>(first_row_[e] + r) * vocab_; }

 private:
  int vocab_ = 0;
  std::vector<int> first_row_{0};
  std::vector<float> data_;
};

// Sampling of one batch entry on the device (Backend::ForwardSample).
struct DeviceSample {
  bool sample = false;                     // Sample this entry's last token in this call.
  const SamplingParams* params = nullptr;  // REQUIRES: ValidateSamplingParams(*params).ok().
  bool first = false;                      // The sequence's first sample: its counts start at 0.
  double uniform = 0;                      // The draw for this step, in [0, 1).
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;  // "cpu", "cuda"
  virtual const ModelConfig& config() const = 0;
  virtual StatePool& pool() = 0;
  // Most tokens one internal step processes (scratch is sized for it at construction). Calls with
  // more tokens are split into several steps; results are the same.
  virtual int max_step_tokens() const = 0;

  // Advances each entry's slot over its tokens, in order, and writes the logits into `out`.
  // On INVALID_ARGUMENT (bad slot, duplicate slot, empty or out-of-range tokens) no slot changed.
  virtual absl::Status Forward(std::span<const BatchEntry> batch, Logits* out) = 0;

  // Whether ForwardSample runs here. Sampling on the device keeps the logits there: per step only
  // token ids cross to the host. The sampler's order of operations is engine/sampler.h's; the
  // penalty counts of each slot live on the device and start at zero on a sequence's first sample.
  virtual bool samples_on_device() const { return false; }
  // Forward (no entry may ask for all_logits), then samples each entry marked in `sampling` and
  // writes its token to tokens[e] (unmarked entries get -1). Unmarked entries' logits go to `out`
  // as in Forward (for requests that sample on the host, e.g. to report log-probabilities).
  virtual absl::Status ForwardSample(std::span<const BatchEntry> batch, std::span<const DeviceSample> sampling,
                                     std::span<int32_t> tokens, Logits* out) {
    return absl::UnimplementedError("this backend samples on the host");
  }

  // Whether BatchEntry::rows may carry rows (ValidateBatch refuses them otherwise).
  virtual bool takes_embedding_rows() const { return false; }

  // OK, or the sticky device error that makes every Forward fail from now on (a GPU in a failed
  // state). The server turns its health NOT_SERVING on it instead of serving garbage.
  virtual absl::Status Healthy() const { return absl::OkStatus(); }

 protected:
  // Shared argument checks for every backend.
  absl::Status ValidateBatch(std::span<const BatchEntry> batch);

 private:
  std::vector<bool> seen_slots_;
};

constexpr int kMaxPoolSlots = 1 << 20;
constexpr int kMaxStepTokens = 1 << 16;

struct BackendOptions {
  std::string kind = "cpu";   // "cpu" or "cuda".
  int pool_slots = 8;         // State pool capacity.
  int max_step_tokens = 512;  // Scratch size: tokens per internal step, [1, kMaxStepTokens].
  int threads = 0;            // CPU math threads; 0 = library default.
  int device = 0;             // CUDA device ordinal.
  // Weight matrices: auto, f32, bf16, f16, int8 or int4 (CPU only). CUDA: the device's weight type (auto = f16). CPU:
  // what the model was loaded with (ModelOptionsFor; auto = as the checkpoint stores them).
  std::string dtype = "auto";
  bool cuda_graphs = true;    // CUDA: replay decode steps as graphs.
  int cuda_gemv_rows = 8;     // CUDA: projections of at most this many rows (0-8) skip cuBLAS for our GEMV kernel.
  bool cuda_programmatic_launch = true;  // CUDA: decode kernels overlap their launch with the previous kernel (sm_90+).
};

// How to load the model for a backend: CPU, its matrices in options.dtype (auto: as stored);
// CUDA, float32 (the CUDA backend converts to its own type on upload). INVALID_ARGUMENT for a
// dtype that is none of auto, f32, bf16, f16, int8, int4, or int8/int4 on CUDA.
absl::StatusOr<ModelOptions> ModelOptionsFor(const BackendOptions& options);

// The one place that knows which backends exist. UNIMPLEMENTED for a kind this build lacks,
// INVALID_ARGUMENT for an unknown kind or bad sizes.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const Model> model,
                                                       const BackendOptions& options);

}  // namespace rwkv

#endif  // RWKV_ENGINE_BACKEND_H_
