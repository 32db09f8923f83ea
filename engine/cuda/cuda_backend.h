// The CUDA backend for every generation (RWKV-4, 5.x, 6, 7): weights in fp16, bf16 or fp32 on the device, cuBLAS GEMMs
// with float32 accumulation, our kernels for everything else, float32 state in a device pool that the kernels address
// in place by slot. Logits come back to the host for the sampler.
//
// Thread safety: none; one thread (the scheduler's) owns it, like every backend.
#ifndef RWKV_ENGINE_CUDA_CUDA_BACKEND_H_
#define RWKV_ENGINE_CUDA_CUDA_BACKEND_H_

#include <cuda_runtime.h>

#include <initializer_list>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/cublas_gemm.h"
#include "engine/cuda/cuda_state_pool.h"
#include "engine/cuda/cuda_weights.h"
#include "engine/cuda/gemv.h"
#include "engine/cuda/ops.h"
#include "engine/cuda/sample_jobs.h"
#include "engine/cuda/step_plan.h"

namespace rwkv::cuda {

absl::StatusOr<WeightType> ParseWeightType(std::string_view name);  // "f32", "f16", "bf16"

class CudaBackend final : public Backend {
 public:
  // Uploads `model` (kept for its config only) and allocates pool and scratch on options.device.
  static absl::StatusOr<std::unique_ptr<Backend>> Create(std::shared_ptr<const Model> model,
                                                         const BackendOptions& options);
  // Runs weights already on the device (benchmarks). REQUIRES: the current device is theirs.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(std::unique_ptr<CudaWeights> weights,
                                                             const BackendOptions& options, cudaStream_t stream);
  ~CudaBackend() override;

  std::string_view name() const override { return "cuda"; }
  const ModelConfig& config() const override { return weights_->config(); }
  StatePool& pool() override { return *pool_; }
  int max_step_tokens() const override { return max_tokens_; }
  absl::Status Forward(std::span<const BatchEntry> batch, Logits* out) override;
  bool samples_on_device() const override { return true; }
  absl::Status ForwardSample(std::span<const BatchEntry> batch, std::span<const DeviceSample> sampling,
                             std::span<int32_t> tokens, Logits* out) override;
  absl::Status Healthy() const override { return broken_; }
  // Image rows (BatchEntry::rows): blocks.0.ln0 applied on the host as the CPU backend does, the
  // float32 rows copied over the step's embeddings. Not for weights-only backends (benchmarks).
  bool takes_embedding_rows() const override { return !ln0_w_.empty(); }
  // Kernel launches (cuBLAS calls count one) of the last engine step, replayed graphs included.
  int64_t last_step_launches() const { return last_step_launches_; }
  // Projections of at most `gemv_rows` rows through the GEMV (0: none), programmatic dependent
  // launch on or off (BackendOptions; Create applies them, benchmarks change them); the decode
  // graphs are captured again.
  absl::Status Reconfigure(int gemv_rows, bool programmatic_launch);
  // The batch sizes with a captured decode graph (a size whose capture failed runs eagerly), and
  // why the first size that failed did (OK when none did).
  std::vector<int> graph_sizes() const {
    std::vector<int> sizes;
    for (const auto& [size, g] : graphs_) {
      if (g.exec != nullptr) sizes.push_back(size);
    }
    return sizes;
  }
  absl::Status graph_capture_error() const {
    for (const auto& [size, g] : graphs_) {
      if (!g.capture_error.ok()) return g.capture_error;
    }
    return absl::OkStatus();
  }

  const CudaWeights& weights() const { return *weights_; }
  cudaStream_t stream() const { return stream_; }

 private:
  CudaBackend() = default;
  absl::Status Allocate(const BackendOptions& options);
  // One internal step of plan_: logits to `out` (host), or, with `sampling`, sampled on the device.
  absl::Status Step(Logits* out, std::span<const DeviceSample> sampling);
  absl::Status Run(std::span<const BatchEntry> batch, Logits* out, std::span<const DeviceSample> sampling);
  // Copies the step's tables, sampling jobs and bias/ban lists to the device (outside any graph:
  // a replayed graph reads them where they always are) and points dt_ at the tables.
  absl::Status Upload(int rows, int pieces, int jobs);
  void Carve(int rows, int pieces);
  // The device work of an uploaded step: on the stream, or into a graph being captured.
  absl::Status Enqueue(int rows, int pieces, int heads, int jobs);
  // The logits of rows sampled on the host, to `out`.
  absl::Status CopyLogits(Logits* out, std::span<const DeviceSample> sampling);
  // Captures a decode graph for every size of the ladder (up to the pool's capacity): each size
  // is run once over padding rows on the scratch slot, then captured.
  absl::Status CaptureGraphs();
  void DestroyGraphs();
  // RWKV-7 (spec 6.2).
  // LayerNorm of x_ (ln_w, ln_b), the token-shift mixes of it against `shift`, and the save of
  // each piece's last row: one kernel in decode steps, three otherwise.
  absl::Status NormShift(int rows, int pieces, const float* ln_w, const float* ln_b, StateView shift,
                         const MixSet& mixes);
  absl::Status TimeMix(int l, int rows, int pieces);
  absl::Status ChannelMix(int l, int rows, int pieces);
  // RWKV-6 (spec 5.2), RWKV-5.x (4.2) and RWKV-4 (3.2) time mixes; their shared channel mix.
  absl::Status TimeMix6(int l, int rows, int pieces);
  absl::Status TimeMix5(int l, int rows, int pieces);
  absl::Status TimeMix4(int l, int rows, int pieces);
  absl::Status ChannelMixKRV(int l, int rows, int pieces);
  // RWKV-5/6 from r_ k_ v_ (d_ with d_stride C, or the layer's decay with 0) and g_ (activated):
  // the recurrence, the group norm and gate, the output projection added to x_.
  absl::Status Wkv6Block(int l, int rows, int pieces, int64_t d_stride);
  // Float offset of layer l's state inside a slot (l == n_layer: the slot's end).
  int64_t LayerOffset(int l) const;
  // Independent projections (none reads another's output). Up to gemv_rows_ rows: one GEMV launch
  // for every kGemvMaxJobs of them, activation and cast applied as results are written. More
  // rows: cuBLAS, a strided run (FindStridedRun) as one batched GEMM, a typed result without an
  // activation rounded by cuBLAS, any other typed or activated result through scratch_f32_ and an
  // activation kernel (so it must be dense: ldy == n).
  absl::Status Project(int rows, std::span<const Projection> ps);
  absl::Status Project(int rows, std::initializer_list<Projection> ps) {
    return Project(rows, std::span(ps.begin(), ps.size()));
  }
  absl::Status Gemm(const void* X, int rows, const DeviceMatrix& W, float* Y, int ldy, bool accumulate, int ldx = 0) {
    return cublas_.Gemm(X, rows, W, weights_->type(), Y, ldy, accumulate, ldx);
  }
  // Copies the step's bias and ban lists into the fixed device tables (INVALID_ARGUMENT past
  // their capacity, which request validation keeps them under).
  absl::Status UploadLists();
  // Marks the backend broken when `s` is a sticky device error.
  absl::Status Check(absl::Status s);

  // Declared first, so destroyed last: cuBLAS, the pool, the weights and every buffer go before
  // the stream they were used on (the stream of the Create that made it, not a caller's).
  struct StreamOwner {
    cudaStream_t stream = nullptr;
    ~StreamOwner() {
      if (stream != nullptr) cudaStreamDestroy(stream);
    }
  } stream_owner_;
  std::unique_ptr<CudaWeights> weights_;
  std::unique_ptr<CudaStatePool> pool_;
  cudaStream_t stream_ = nullptr;
  Cublas cublas_;
  int max_tokens_ = 0;
  int device_ = 0;
  absl::Status broken_;  // Sticky error: every later Forward fails with it.

  StepPlan plan_;
  std::vector<int32_t> packed_;
  int32_t* pinned_tables_ = nullptr;  // Page-locked staging for the tables' upload.
  DeviceBuffer tables_;
  DeviceTables dt_;
  // Scratch, sized for max_tokens_ rows. float32: x z r k v d alpha g vg y v_first head_in.
  DeviceBuffer f32_, typed_, lora_typed_, scratch_f32_, ffn_typed_, logits_;
  float *x_, *z_, *r_, *k_, *v_, *d_, *alpha_, *g_, *vg_, *y_, *v_first_, *head_in_;
  void* mix_[6];  // Typed token-shift outputs (RWKV-7: xr xk xv xw xa xg; r, k, v side by side).
  void *yt_, *head_typed_;
  std::vector<int> done_;
  // Embedding rows: ln0's weight and bias (host), the batch of the running Forward, the step's
  // rows after ln0 in page-locked staging [max_tokens_, C], and where each run of them goes
  // (first row of x_, first staged row, count).
  std::vector<float> ln0_w_, ln0_b_;
  std::span<const BatchEntry> batch_;
  float* pinned_rows_ = nullptr;
  struct RowRun {
    int row, staged, count;
  };
  std::vector<RowRun> row_runs_;
  DeviceBuffer rows_dev_;  // The staged rows on the device, copied over x_ after the embedding.
  // Recorded after each step's uploads: the page-locked staging may be rewritten once it is done.
  cudaEvent_t uploaded_ = nullptr;
  // Stages the current step's embedding rows (row_runs_ empty when it has none).
  void StageRows();
  // Device sampling: penalty counts and seen flags [slots, V], the step's jobs, the bias and ban
  // tables (max_jobs_ rows of kMaxLogitBias / kMaxBannedTokens entries), the tokens.
  DeviceBuffer counts_, seen_, jobs_, bias_ids_, bias_values_, ban_ids_, tokens_;
  int64_t max_jobs_ = 0;
  SampleJobs sample_jobs_;
  SampleJob* pinned_jobs_ = nullptr;    // Page-locked staging of the step's jobs.
  int32_t* pinned_lists_ = nullptr;     // ... and of its bias ids, bias values and ban ids.
  // Decode steps replayed as CUDA graphs, by ladder size (GraphLadder), captured at creation.
  struct GraphSlot {
    cudaGraphExec_t exec = nullptr;
    absl::Status capture_error;  // Why this size runs eagerly, if it does.
    int64_t launches = 0;        // Kernels in the graph.
  };
  int64_t last_step_launches_ = 0;
  std::vector<int> ladder_;
  std::map<int, GraphSlot> graphs_;
  bool graphs_enabled_ = true;
  int gemv_rows_ = kGemvMaxRows;  // Projections of at most this many rows run as GEMVs (0: never).
  bool strided_gemms_ = true;     // Runs of like projections as one batched GEMM (off if cuBLAS refuses).
};

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_CUDA_BACKEND_H_
