#include "engine/backend.h"

#include <algorithm>

#include <new>

#include "absl/strings/str_cat.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/status.h"
#ifdef RWKV_WITH_CUDA
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_device.h"
#endif

namespace rwkv {

void Logits::Prepare(std::span<const BatchEntry> batch, int vocab) {
  vocab_ = vocab;
  first_row_.resize(batch.size() + 1);
  first_row_[0] = 0;
  for (size_t e = 0; e < batch.size(); ++e) {
    first_row_[e + 1] = first_row_[e] + (batch[e].all_logits ? static_cast<int>(batch[e].tokens.size()) : 1);
  }
  const size_t need = static_cast<size_t>(first_row_.back()) * vocab;
  if (data_.size() < need) data_.resize(need);
}

absl::Status Backend::ValidateBatch(std::span<const BatchEntry> batch) {
  const StatePool& p = pool();
  const int vocab = config().vocab;
  std::vector<bool>& seen = seen_slots_;
  seen.assign(p.capacity(), false);  // Same size every call: no reallocation.
  for (size_t e = 0; e < batch.size(); ++e) {
    const BatchEntry& b = batch[e];
    if (!p.in_use(b.slot)) {
      return absl::InvalidArgumentError(absl::StrCat("batch entry ", e, ": slot ", b.slot,
                                                     " is not an acquired slot (pool capacity ", p.capacity(), ")"));
    }
    if (seen[b.slot])
      return absl::InvalidArgumentError(
          absl::StrCat("batch entry ", e, ": slot ", b.slot, " appears twice in one batch"));
    seen[b.slot] = true;
    if (b.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat("batch entry ", e, ": no tokens"));
    if (!b.rows.empty()) {
      if (b.rows.size() != b.tokens.size()) {
        return absl::InvalidArgumentError(absl::StrCat("batch entry ", e, ": ", b.rows.size(), " embedding rows for ",
                                                       b.tokens.size(), " tokens; one per token (or none)"));
      }
      if (!takes_embedding_rows() && std::any_of(b.rows.begin(), b.rows.end(), [](const float* r) { return r != nullptr; })) {
        return absl::UnimplementedError(
            absl::StrCat("batch entry ", e, ": the ", std::string(name()), " backend does not take embedding rows (image inputs) yet"));
      }
    }
    for (size_t i = 0; i < b.tokens.size(); ++i) {
      if (b.tokens[i] < 0 || b.tokens[i] >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("batch entry ", e, ": token ", b.tokens[i], " at position ", i,
                                                       " is outside the vocabulary [0, ", vocab, ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelOptions> ModelOptionsFor(const BackendOptions& options) {
  ModelOptions m;
  RWKV_ASSIGN_OR_RETURN(std::optional<MatrixType> type, ParseMatrixType(options.dtype, "dtype"));
  if (options.kind == "cpu") m.matrices = type;
  if (options.kind == "cuda") {
    if (type && IsQuantized(*type)) {
      return absl::InvalidArgumentError(absl::StrCat("dtype ", MatrixTypeName(*type),
                                                     " runs on the cpu backend only; cuda takes f32, f16 or bf16"));
    }
    m.matrices = MatrixType::kF32;
  }
  return m;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const Model> model,
                                                       const BackendOptions& options) {
  if (options.pool_slots < 1 || options.pool_slots > kMaxPoolSlots) {
    return absl::InvalidArgumentError(
        absl::StrCat("pool_slots is ", options.pool_slots, "; it must be in [1, ", kMaxPoolSlots, "]"));
  }
  if (options.max_step_tokens < 1 || options.max_step_tokens > kMaxStepTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_step_tokens is ", options.max_step_tokens, "; it must be in [1, ", kMaxStepTokens, "]"));
  }
  if (options.kind == "cpu") {
    const ModelConfig& c = model->config();
    try {
      return std::unique_ptr<Backend>(new CpuBackend(std::move(model), options));
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "backend cpu: cannot allocate ", options.pool_slots, " state slots of ", c.StateBytes(),
          " bytes and scratch for ", options.max_step_tokens, " tokens; lower pool_slots or max_step_tokens"));
    }
  }
  if (options.kind == "cuda") {
#ifdef RWKV_WITH_CUDA
    const int devices = CudaDeviceCount();
    if (devices <= 0) return absl::FailedPreconditionError("backend cuda: no CUDA device is visible");
    if (options.device < 0 || options.device >= devices) {
      return absl::InvalidArgumentError(
          absl::StrCat("device is ", options.device, "; this machine has CUDA devices 0..", devices - 1));
    }
    BackendOptions o = options;
    if (o.dtype == "auto") o.dtype = "f16";
    return cuda::CudaBackend::Create(std::move(model), o);
#else
    return absl::UnimplementedError(
        "backend cuda: this build has no CUDA support (configure with -DRWKV_WITH_CUDA=ON)");
#endif
  }
  return absl::InvalidArgumentError(absl::StrCat("backend '", options.kind, "' is unknown; expected cpu or cuda"));
}

}  // namespace rwkv
