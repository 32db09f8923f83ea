#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "engine/cpu/kernels.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_device.h"
#include "engine/cuda/ops.h"
#include "engine/status.h"

namespace rwkv::cuda {

absl::StatusOr<WeightType> ParseWeightType(std::string_view name) {
  if (name == "f32" || name == "fp32") return WeightType::kF32;
  if (name == "f16" || name == "fp16") return WeightType::kF16;
  if (name == "bf16") return WeightType::kBF16;
  return absl::InvalidArgumentError(
      absl::StrFormat("weight dtype '%s' is unknown; expected f32, f16 or bf16", std::string(name)));
}

absl::StatusOr<std::unique_ptr<Backend>> CudaBackend::Create(std::shared_ptr<const Model> model,
                                                             const BackendOptions& options) {
  RWKV_ASSIGN_OR_RETURN(WeightType type, ParseWeightType(options.dtype));
  const ModelConfig& c = model->config();
  if (c.arch != Architecture::kRwkv4 && !WkvHeadSizeSupported(c.head_size)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "head size %d is not supported by the cuda backend (16, 32, 64 or 128); the cpu backend runs it",
        c.head_size));
  }
  RWKV_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  cudaStream_t stream;
  RWKV_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  absl::StatusOr<std::unique_ptr<CudaWeights>> w = CudaWeights::Upload(*model, type, stream);
  if (!w.ok()) {
    cudaStreamDestroy(stream);
    return w.status();
  }
  absl::StatusOr<std::unique_ptr<CudaBackend>> b = Create(std::move(*w), options, stream);
  if (!b.ok()) {
    cudaStreamDestroy(stream);
    return b.status();
  }
  (*b)->stream_owner_.stream = stream;
  if (model->ln0_w() != nullptr && model->ln0_b() != nullptr) {
    (*b)->ln0_w_.assign(model->ln0_w(), model->ln0_w() + c.n_embd);
    (*b)->ln0_b_.assign(model->ln0_b(), model->ln0_b() + c.n_embd);
  }
  return std::unique_ptr<Backend>(std::move(*b));
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(std::unique_ptr<CudaWeights> weights,
                                                                 const BackendOptions& options, cudaStream_t stream) {
  std::unique_ptr<CudaBackend> b(new CudaBackend());
  b->weights_ = std::move(weights);
  b->stream_ = stream;
  b->max_tokens_ = options.max_step_tokens;
  b->device_ = options.device;
  RWKV_RETURN_IF_ERROR(b->Allocate(options));
  RWKV_RETURN_IF_ERROR(b->Check(b->Reconfigure(options.cuda_gemv_rows, options.cuda_programmatic_launch)));
  return b;
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);  // Nothing in flight reads what goes next.
  DestroyGraphs();
  if (pinned_tables_ != nullptr) cudaFreeHost(pinned_tables_);
  if (pinned_jobs_ != nullptr) cudaFreeHost(pinned_jobs_);
  if (pinned_lists_ != nullptr) cudaFreeHost(pinned_lists_);
  if (pinned_rows_ != nullptr) cudaFreeHost(pinned_rows_);
  if (uploaded_ != nullptr) cudaEventDestroy(uploaded_);
  // The members follow, the stream last (stream_owner_).
}

absl::Status CudaBackend::Allocate(const BackendOptions& options) {
  const ModelConfig& c = config();
  const int64_t T = max_tokens_, C = c.n_embd, F = c.ffn_dim, V = c.vocab;
  // The LoRA hidden rows: RWKV-7's four side by side (each in a region of its own, read by the
  // up-projections after), RWKV-6's five mix terms, or its decay's.
  const int64_t lora =
      std::max({int64_t{c.lora_decay} + c.lora_iclr + c.lora_value + c.lora_gate, 5 * int64_t{c.lora_mix}, int64_t{1}});
  const size_t tb = WeightTypeBytes(weights_->type());
  RWKV_ASSIGN_OR_RETURN(pool_, CudaStatePool::Create(options.pool_slots, c.StateFloats(), stream_));
  RWKV_RETURN_IF_ERROR(cublas_.Init(stream_));
  RWKV_RETURN_IF_ERROR(f32_.Allocate(12 * T * C * 4, "step scratch"));
  RWKV_RETURN_IF_ERROR(typed_.Allocate(8 * T * C * tb, "step scratch"));
  RWKV_RETURN_IF_ERROR(lora_typed_.Allocate(T * lora * tb, "step scratch"));
  // float32 results of GEMMs whose output is typed (then activated and cast): at most F wide.
  RWKV_RETURN_IF_ERROR(scratch_f32_.Allocate(T * std::max({F, C, lora}) * 4, "step scratch"));
  RWKV_RETURN_IF_ERROR(ffn_typed_.Allocate(T * F * tb, "step scratch"));
  RWKV_RETURN_IF_ERROR(logits_.Allocate(T * V * 4, "logits"));
  RWKV_RETURN_IF_ERROR(counts_.Allocate(int64_t{options.pool_slots} * V * 4, "sampling counts"));
  RWKV_RETURN_IF_ERROR(seen_.Allocate(int64_t{options.pool_slots} * V, "sampling seen flags"));
  // Bias and ban tables at their fixed capacity: every sampled row (one per slot at most) with
  // the most entries a request may carry. No allocation in a step, and graphs take them as they are.
  max_jobs_ = std::min<int64_t>(T, options.pool_slots);
  RWKV_RETURN_IF_ERROR(bias_ids_.Allocate(max_jobs_ * kMaxLogitBias * 4, "logit bias table"));
  RWKV_RETURN_IF_ERROR(bias_values_.Allocate(max_jobs_ * kMaxLogitBias * 4, "logit bias table"));
  RWKV_RETURN_IF_ERROR(ban_ids_.Allocate(max_jobs_ * kMaxBannedTokens * 4, "banned token table"));
  RWKV_CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned_lists_, max_jobs_ * (2 * kMaxLogitBias + kMaxBannedTokens) * 4));
  RWKV_RETURN_IF_ERROR(jobs_.Allocate(T * sizeof(SampleJob), "sampling jobs"));
  RWKV_RETURN_IF_ERROR(tokens_.Allocate(std::max<int64_t>(T, options.pool_slots) * 4, "sampled tokens"));
  float* f = f32_.as<float>();
  for (float** p : {&x_, &z_, &r_, &k_, &v_, &d_, &alpha_, &g_, &vg_, &y_, &v_first_, &head_in_}) {
    *p = f;
    f += T * C;
  }
  char* t = typed_.as<char>();
  for (int i = 0; i < 6; ++i, t += T * C * tb) mix_[i] = t;
  yt_ = t;
  head_typed_ = t + T * C * tb;
  // Tables: tokens + row_piece (rows) + 4 per piece + head rows; pieces and head rows <= rows.
  const size_t table_ints = 7 * T;
  RWKV_RETURN_IF_ERROR(tables_.Allocate(table_ints * 4, "step tables"));
  RWKV_CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned_tables_, table_ints * 4));
  RWKV_CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned_jobs_, T * sizeof(SampleJob)));
  RWKV_CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned_rows_, T * C * 4));
  RWKV_RETURN_IF_ERROR(rows_dev_.Allocate(T * C * 4, "embedding rows"));
  RWKV_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&uploaded_, cudaEventDisableTiming));
  graphs_enabled_ = options.cuda_graphs;
  return absl::OkStatus();
}

absl::Status CudaBackend::Check(absl::Status s) {
  if (IsStickyStatus(s) && broken_.ok()) {
    absl::Status failed = absl::UnavailableError(absl::StrCat("the CUDA device is in a failed state: ", s.message()));
    const absl::optional<absl::Cord> payload = s.GetPayload(kStickyPayload);
    failed.SetPayload(kStickyPayload, *payload);
    broken_.Update(failed);
  }
  return s;
}

absl::Status CudaBackend::Project(int rows, std::span<const Projection> ps) {
  if (rows == 0) return absl::OkStatus();
  const WeightType wt = weights_->type();
  if (rows <= gemv_rows_) {
    GemvBatch b;
    auto flush = [&]() -> absl::Status {
      if (b.jobs == 0) return absl::OkStatus();
      RWKV_RETURN_IF_ERROR(PlanGemv(&b, static_cast<int>(WeightTypeBytes(wt))));
      RWKV_CUDA_LAUNCH(Gemv, b, rows, wt, stream_);
      b = GemvBatch();
      return absl::OkStatus();
    };
    for (const Projection& p : ps) {
      if (b.jobs == kGemvMaxJobs) RWKV_RETURN_IF_ERROR(flush());
      GemvJob& j = b.job[b.jobs++];
      j.x = p.x;
      j.w = p.w->data;
      j.y = p.y;
      j.n = p.w->n;
      j.k = p.w->k;
      j.ldx = p.ldx;
      j.ldy = p.ldy;
      j.act = p.act;
      j.out = p.out;
    }
    return flush();
  }
  const int tb = static_cast<int>(WeightTypeBytes(wt));
  for (size_t i = 0; i < ps.size();) {
    // RWKV-7's r, k and v (consecutive mixes, matrices and outputs) are one batched GEMM.
    const StridedRun run = strided_gemms_ ? FindStridedRun(ps, i, tb) : StridedRun{};
    if (run.count >= 2) {
      const Projection& p = ps[i];
      const absl::Status st =
          cublas_.GemmStrided(p.x, rows, *p.w, static_cast<int>(run.count), run.x_stride, run.w_stride, run.y_stride,
                              wt, static_cast<float*>(p.y), p.ldy, p.out == GemvOut::kF32Add, p.ldx);
      if (st.ok()) {
        i += run.count;
        continue;
      }
      if (!absl::IsUnimplemented(st)) return st;
      strided_gemms_ = false;  // This cuBLAS runs them one by one from now on.
    }
    const Projection& p = ps[i++];
    const int n = p.w->n;
    if (p.out == GemvOut::kTyped && p.act == Act::kNone) {  // Rounded to the type by cuBLAS itself.
      RWKV_RETURN_IF_ERROR(cublas_.GemmTyped(p.x, rows, *p.w, wt, p.y, p.ldy, p.ldx));
      continue;
    }
    if ((p.out == GemvOut::kTyped || p.act != Act::kNone) && p.ldy != n) {
      return absl::InternalError(
          absl::StrFormat("projection to %d outputs with leading dimension %d: an activated or "
                          "typed result must be dense",
                          n, p.ldy));
    }
    if (p.out == GemvOut::kTyped) {
      RWKV_RETURN_IF_ERROR(Gemm(p.x, rows, *p.w, scratch_f32_.as<float>(), n, false, p.ldx));
      RWKV_CUDA_LAUNCH(Activate, scratch_f32_.as<float>(), int64_t{rows} * n, p.act, p.y, wt, stream_);
      continue;
    }
    RWKV_RETURN_IF_ERROR(Gemm(p.x, rows, *p.w, static_cast<float*>(p.y), p.ldy, p.out == GemvOut::kF32Add, p.ldx));
    if (p.act != Act::kNone)
      RWKV_CUDA_LAUNCH(ActivateInPlace, static_cast<float*>(p.y), int64_t{rows} * n, p.act, stream_);
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::Forward(std::span<const BatchEntry> batch, Logits* out) { return Run(batch, out, {}); }

absl::Status CudaBackend::ForwardSample(std::span<const BatchEntry> batch, std::span<const DeviceSample> sampling,
                                        std::span<int32_t> tokens, Logits* out) {
  if (sampling.size() != batch.size() || tokens.size() != batch.size()) {
    return absl::InvalidArgumentError(absl::StrFormat("ForwardSample: %d entries, %d samplings, %d token outputs",
                                                      batch.size(), sampling.size(), tokens.size()));
  }
  for (size_t e = 0; e < batch.size(); ++e) {
    if (batch[e].all_logits) return absl::InvalidArgumentError("ForwardSample: entries may not ask for all_logits");
    if (sampling[e].sample && sampling[e].params == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("ForwardSample: entry %d samples without parameters", e));
    }
  }
  if (batch.size() > tokens_.bytes() / 4) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ForwardSample: %d entries; at most %d", batch.size(), tokens_.bytes() / 4));
  }
  RWKV_RETURN_IF_ERROR(Check([&]() -> absl::Status {
    RWKV_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(tokens_.get(), 0xff, batch.size() * 4, stream_));  // -1
    return absl::OkStatus();
  }()));
  RWKV_RETURN_IF_ERROR(Run(batch, out, sampling));
  return Check([&]() -> absl::Status {
    RWKV_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(tokens.data(), tokens_.get(), batch.size() * 4, cudaMemcpyDeviceToHost, stream_));
    RWKV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }());
}

absl::Status CudaBackend::Run(std::span<const BatchEntry> batch, Logits* out, std::span<const DeviceSample> sampling) {
  RWKV_RETURN_IF_ERROR(broken_);
  RWKV_RETURN_IF_ERROR(ValidateBatch(batch));
  out->Prepare(batch, config().vocab);
  done_.assign(batch.size(), 0);
  batch_ = batch;
  while (plan_.Next(batch, done_, max_tokens_, *out)) {
    const absl::Status st = Check(Step(out, sampling));
    if (!st.ok()) {
      batch_ = {};
      return st;
    }
    plan_.Advance(&done_);
  }
  batch_ = {};
  return Check([&]() -> absl::Status {
    RWKV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }());
}

absl::Status CudaBackend::UploadLists() {
  const SampleJobs& sj = sample_jobs_;
  const int64_t bias = static_cast<int64_t>(sj.bias_ids.size()), ban = static_cast<int64_t>(sj.ban_ids.size());
  if (static_cast<int64_t>(sj.jobs.size()) > max_jobs_ || bias > max_jobs_ * kMaxLogitBias ||
      ban > max_jobs_ * kMaxBannedTokens) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a step samples %d rows with %d logit_bias and %d banned_tokens entries; the tables hold %d rows of %d and %d",
        sj.jobs.size(), bias, ban, max_jobs_, kMaxLogitBias, kMaxBannedTokens));
  }
  // The staging area (rewritten only after the previous step's uploads are done): bias ids, bias
  // values, ban ids.
  int32_t* ids = pinned_lists_;
  float* values = reinterpret_cast<float*>(pinned_lists_ + max_jobs_ * kMaxLogitBias);
  int32_t* bans = pinned_lists_ + 2 * max_jobs_ * kMaxLogitBias;
  std::copy(sj.bias_ids.begin(), sj.bias_ids.end(), ids);
  std::copy(sj.bias_values.begin(), sj.bias_values.end(), values);
  std::copy(sj.ban_ids.begin(), sj.ban_ids.end(), bans);
  if (bias > 0) {
    RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(bias_ids_.get(), ids, bias * 4, cudaMemcpyHostToDevice, stream_));
    RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(bias_values_.get(), values, bias * 4, cudaMemcpyHostToDevice, stream_));
  }
  if (ban > 0) {
    RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ban_ids_.get(), bans, ban * 4, cudaMemcpyHostToDevice, stream_));
  }
  return absl::OkStatus();
}

void CudaBackend::StageRows() {
  row_runs_.clear();
  const int C = config().n_embd;
  int staged = 0;
  for (int p = 0; p < plan_.pieces(); ++p) {
    const BatchEntry& e = batch_[plan_.piece_entry[p]];
    if (e.rows.empty()) continue;
    for (int i = 0; i < plan_.piece_count[p]; ++i) {
      const float* src = e.rows[plan_.piece_begin[p] + i];
      if (src == nullptr) continue;
      // As the CPU backend does (Model::ApplyLn0), bit for bit.
      ApplyLn0Row(ln0_w_.data(), ln0_b_.data(), C, src, pinned_rows_ + static_cast<int64_t>(staged) * C);
      const int row = plan_.piece_row[p] + i;
      if (!row_runs_.empty() && row_runs_.back().row + row_runs_.back().count == row) {
        ++row_runs_.back().count;
      } else {
        row_runs_.push_back({row, staged, 1});
      }
      ++staged;
    }
  }
}

absl::Status CudaBackend::Step(Logits* out, std::span<const DeviceSample> sampling) {
  // The page-locked staging is rewritten below: the previous step's uploads must be done. Its
  // kernels may still run; this step's work queues behind them, so the host plans step n + 1
  // while the device computes step n.
  RWKV_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(uploaded_));
  StageRows();
  // A decode step runs the graph captured for the smallest ladder size that holds it, padded with
  // rows on the scratch slot. Steps with image rows copy them between kernels: eager.
  const GraphSlot* graph = nullptr;
  if (plan_.IsDecode() && row_runs_.empty()) {
    const auto it = graphs_.find(LadderSize(ladder_, plan_.rows()));
    if (it != graphs_.end() && it->second.exec != nullptr) {
      graph = &it->second;
      plan_.Pad(it->first, pool_->scratch_slot());
    }
  }
  const int rows = plan_.rows(), pieces = plan_.pieces(), heads = static_cast<int>(plan_.head_rows.size());
  sample_jobs_.Fill(plan_, sampling, /*skips=*/graph != nullptr);
  const int jobs = static_cast<int>(sample_jobs_.jobs.size());
  RWKV_RETURN_IF_ERROR(Upload(rows, pieces, jobs));
  if (graph != nullptr) {
    RWKV_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(graph->exec, stream_));
    last_step_launches_ = graph->launches;
  } else {
    const int64_t before = KernelLaunches();
    const absl::Status enqueued = Enqueue(rows, pieces, heads, jobs);
    last_step_launches_ = KernelLaunches() - before;
    RWKV_RETURN_IF_ERROR(enqueued);
  }
  return CopyLogits(out, sampling);
}

absl::Status CudaBackend::Upload(int rows, int pieces, int jobs) {
  plan_.Pack(&packed_);
  std::copy(packed_.begin(), packed_.end(), pinned_tables_);
  int32_t* dev = tables_.as<int32_t>();
  RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dev, pinned_tables_, packed_.size() * 4, cudaMemcpyHostToDevice, stream_));
  Carve(rows, pieces);
  if (jobs > 0) {
    std::copy(sample_jobs_.jobs.begin(), sample_jobs_.jobs.end(), pinned_jobs_);
    RWKV_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(jobs_.get(), pinned_jobs_, jobs * sizeof(SampleJob), cudaMemcpyHostToDevice, stream_));
  }
  RWKV_RETURN_IF_ERROR(UploadLists());
  if (!row_runs_.empty()) {
    const RowRun& last = row_runs_.back();
    RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(rows_dev_.get(), pinned_rows_,
                                              static_cast<size_t>(last.staged + last.count) * config().n_embd * 4,
                                              cudaMemcpyHostToDevice, stream_));
  }
  RWKV_CUDA_RETURN_IF_ERROR(cudaEventRecord(uploaded_, stream_));  // The staging is free after this.
  return absl::OkStatus();
}

void CudaBackend::Carve(int rows, int pieces) {
  int32_t* dev = tables_.as<int32_t>();
  dt_.tokens = dev;
  dt_.row_piece = dev + rows;
  dt_.piece_slot = dev + 2 * rows;
  dt_.piece_row = dt_.piece_slot + pieces;
  dt_.piece_count = dt_.piece_row + pieces;
  dt_.head_rows = dt_.piece_count + pieces;
}

absl::Status CudaBackend::CaptureGraphs() {
  ladder_ = GraphLadder(static_cast<int>(std::min<int64_t>({pool_->capacity(), max_tokens_, max_jobs_})));
  row_runs_.clear();  // The last step's image rows are no part of a decode graph.
  for (int size : ladder_) {
    // A step of padding rows only, run once eagerly (kernels load, cuBLAS picks its algorithms for
    // the size), then captured. Nothing of a slot in use is touched.
    plan_ = StepPlan();
    plan_.Pad(size, pool_->scratch_slot());
    sample_jobs_.Fill(plan_, {}, /*skips=*/true);
    RWKV_RETURN_IF_ERROR(Upload(size, size, size));
    RWKV_RETURN_IF_ERROR(Enqueue(size, size, size, size));
    RWKV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    GraphSlot& g = graphs_[size];
    cudaGraph_t graph = nullptr;
    auto capture = [&]() -> absl::Status {
      RWKV_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
      const int64_t before = KernelLaunches();
      const absl::Status enqueued = Enqueue(size, size, size, size);
      g.launches = KernelLaunches() - before;
      RWKV_CUDA_RETURN_IF_ERROR(cudaStreamEndCapture(stream_, &graph));
      RWKV_RETURN_IF_ERROR(enqueued);
      RWKV_CUDA_RETURN_IF_ERROR(cudaGraphInstantiate(&g.exec, graph, 0));
      return absl::OkStatus();
    };
    const absl::Status st = capture();
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (!st.ok()) {
      // A failed capture is not the device's failure: that size runs eagerly.
      cudaGetLastError();
      g.exec = nullptr;
      g.capture_error = st;
    }
  }
  plan_ = StepPlan();
  return absl::OkStatus();
}

void CudaBackend::DestroyGraphs() {
  for (auto& [rows, g] : graphs_) {
    if (g.exec != nullptr) cudaGraphExecDestroy(g.exec);
  }
  graphs_.clear();
}

absl::Status CudaBackend::Reconfigure(int gemv_rows, bool programmatic_launch) {
  RWKV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  gemv_rows_ = std::clamp(gemv_rows, 0, kGemvMaxRows);
  SetProgrammaticLaunch(programmatic_launch && CudaComputeCapabilityMajor(device_) >= 9);
  DestroyGraphs();
  return graphs_enabled_ ? CaptureGraphs() : absl::OkStatus();
}

absl::Status CudaBackend::Enqueue(int rows, int pieces, int heads, int jobs) {
  const ModelConfig& c = config();
  RWKV_CUDA_LAUNCH(Embed, weights_->emb(), weights_->type(), dt_.tokens, rows, c.n_embd, x_, stream_);
  for (const RowRun& run : row_runs_) {  // Image rows over their placeholders' embeddings.
    RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(x_ + static_cast<int64_t>(run.row) * c.n_embd,
                                              rows_dev_.as<float>() + static_cast<int64_t>(run.staged) * c.n_embd,
                                              static_cast<size_t>(run.count) * c.n_embd * 4, cudaMemcpyDeviceToDevice,
                                              stream_));
  }
  for (int l = 0; l < c.n_layer; ++l) {
    switch (c.arch) {
      case Architecture::kRwkv7:
        RWKV_RETURN_IF_ERROR(TimeMix(l, rows, pieces));
        RWKV_RETURN_IF_ERROR(ChannelMix(l, rows, pieces));
        continue;
      case Architecture::kRwkv6:
        RWKV_RETURN_IF_ERROR(TimeMix6(l, rows, pieces));
        break;
      case Architecture::kRwkv4:
        RWKV_RETURN_IF_ERROR(TimeMix4(l, rows, pieces));
        break;
      default:
        RWKV_RETURN_IF_ERROR(TimeMix5(l, rows, pieces));
        break;
    }
    RWKV_RETURN_IF_ERROR(ChannelMixKRV(l, rows, pieces));
  }
  if (heads > 0) {
    RWKV_CUDA_LAUNCH(LayerNorm, x_, dt_.head_rows, heads, c.n_embd, weights_->ln_out_w(), weights_->ln_out_b(), cpu::kLayerNormEps,
              head_in_, stream_);
    RWKV_CUDA_LAUNCH(Activate, head_in_, int64_t{heads} * c.n_embd, Act::kNone, head_typed_, weights_->type(), stream_);
    RWKV_RETURN_IF_ERROR(Project(heads, {{head_typed_, c.n_embd, &weights_->head(), logits_.get(), c.vocab}}));
  }
  if (jobs > 0) {
    RWKV_CUDA_LAUNCH(SampleRows, jobs_.as<SampleJob>(), jobs, bias_ids_.as<int32_t>(), bias_values_.as<float>(), ban_ids_.as<int32_t>(),
               logits_.as<float>(), c.vocab, counts_.as<float>(), seen_.as<uint8_t>(), tokens_.as<int32_t>(), stream_);
  }
  RWKV_CUDA_RETURN_IF_ERROR(cudaGetLastError());  // Launch errors of this step's kernels.
  return absl::OkStatus();
}

absl::Status CudaBackend::CopyLogits(Logits* out, std::span<const DeviceSample> sampling) {
  // Rows sampled on the host come back: runs of consecutive destinations in one copy each.
  const int V = config().vocab, heads = static_cast<int>(plan_.head_rows.size());
  auto to_host = [&](int i) {
    const int e = plan_.piece_entry[plan_.row_piece[plan_.head_rows[i]]];
    return e >= 0 && !SamplesOnDevice(sampling, e);
  };
  for (int i = 0; i < heads;) {
    if (!to_host(i)) {
      ++i;
      continue;
    }
    int j = i + 1;
    while (j < heads && to_host(j) && plan_.head_dest[j] == plan_.head_dest[j - 1] + 1) ++j;
    RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out->MutableRow(0, 0) + int64_t{plan_.head_dest[i]} * V,
                                              logits_.as<float>() + int64_t{i} * V, int64_t{j - i} * V * 4,
                                              cudaMemcpyDeviceToHost, stream_));
    i = j;
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::NormShift(int rows, int pieces, const float* ln_w, const float* ln_b, StateView shift,
                                    const MixSet& mixes) {
  const int C = config().n_embd;
  if (rows == pieces) {  // Decode: one kernel.
    RWKV_CUDA_LAUNCH(NormShiftMixSave, x_, rows, C, ln_w, ln_b, cpu::kLayerNormEps, dt_, shift, mixes,
                     weights_->type(), stream_);
    return absl::OkStatus();
  }
  // A piece of several rows reads the old shift in its first row and saves its last: the save
  // waits for every read (a kernel of its own).
  RWKV_CUDA_LAUNCH(LayerNorm, x_, nullptr, rows, C, ln_w, ln_b, cpu::kLayerNormEps, z_, stream_);
  RWKV_CUDA_LAUNCH(TokenShiftMix, z_, rows, C, dt_, shift, mixes, weights_->type(), stream_);
  RWKV_CUDA_LAUNCH(SaveShift, z_, pieces, C, dt_, shift, stream_);
  return absl::OkStatus();
}

absl::Status CudaBackend::TimeMix(int l, int rows, int pieces) {
  const ModelConfig& c = config();
  const CudaLayer& w = weights_->layer(l);
  const WeightType wt = weights_->type();
  const int C = c.n_embd, H = c.n_head, N = c.head_size;
  const int64_t layer_off = LayerOffset(l);
  const StateView shift{pool_->device_data(), pool_->slot_floats(), layer_off};

  // r, k and v's mixes side by side (as their matrices and outputs are): one batched GEMM.
  MixSet mixes{{w.x_r, w.x_k, w.x_v, w.x_w, w.x_a, w.x_g}, {mix_[0], mix_[1], mix_[2], mix_[3], mix_[4], mix_[5]}, 6};
  RWKV_RETURN_IF_ERROR(NormShift(rows, pieces, w.ln1_w, w.ln1_b, shift, mixes));
  void *xr = mix_[0], *xk = mix_[1], *xv = mix_[2], *xw = mix_[3], *xa = mix_[4], *xg = mix_[5];

  // r, k, v and the LoRA down-projections (activated, in the weight type, each hidden row in its
  // own region of lora_typed_) read only the mixes: one group; the up-projections a second.
  const size_t tb = WeightTypeBytes(wt);
  const int64_t T = max_tokens_;
  char* hw = lora_typed_.as<char>();
  char* ha = hw + T * w.w1.n * tb;
  char* hg = ha + T * w.a1.n * tb;
  char* hv = hg + T * w.g1.n * tb;
  const bool value_lora = l > 0;  // Layer 0's value is v_first itself.
  const Projection down[] = {
      {xr, C, &w.receptance, r_, C},
      {xk, C, &w.key, k_, C},
      {xv, C, &w.value, v_, C},
      {xw, C, &w.w1, hw, w.w1.n, Act::kTanh, GemvOut::kTyped},
      {xa, C, &w.a1, ha, w.a1.n, Act::kNone, GemvOut::kTyped},
      {xg, C, &w.g1, hg, w.g1.n, Act::kSigmoid, GemvOut::kTyped},
      {xv, C, &w.v1, hv, w.v1.n, Act::kNone, GemvOut::kTyped},
  };
  RWKV_RETURN_IF_ERROR(Project(rows, std::span(down, value_lora ? 7 : 6)));
  const Projection up[] = {
      {hw, w.w1.n, &w.w2, d_, C},
      {ha, w.a1.n, &w.a2, alpha_, C},
      {hg, w.g1.n, &w.g2, g_, C},
      {hv, w.v1.n, &w.v2, vg_, C},
  };
  RWKV_RETURN_IF_ERROR(Project(rows, std::span(up, value_lora ? 4 : 3)));
  if (!value_lora) {
    RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(v_first_, v_, int64_t{rows} * C * 4, cudaMemcpyDeviceToDevice, stream_));
  }
  const PrepArgs prep{v_, d_, alpha_, k_, vg_, l == 0 ? nullptr : v_first_, w.w0, w.a0, w.v0, w.k_k, w.k_a};
  const StateView S{pool_->device_data(), pool_->slot_floats(), layer_off + C};
  if (rows == pieces) {  // Decode: one kernel.
    RWKV_CUDA_LAUNCH(Wkv7Decode, S, dt_, pieces, H, N, C, prep, r_, g_, w.r_k, w.ln_x_w, w.ln_x_b, cpu::kGroupNormEps,
                     yt_, wt, stream_);
  } else {  // Prefill: the preparation and the group norm parallel over rows, the recurrence over pieces.
    RWKV_CUDA_LAUNCH(TimeMixPrep, prep, rows, C, N, stream_);
    RWKV_CUDA_LAUNCH(Wkv7, S, dt_, pieces, H, N, C, r_, d_, k_, v_, /*a=*/alpha_, /*b=*/vg_, y_, stream_);
    RWKV_CUDA_LAUNCH(GroupNormBonusGate, y_, r_, k_, v_, g_, w.r_k, w.ln_x_w, w.ln_x_b, cpu::kGroupNormEps, rows, C, N,
                     yt_, wt, stream_);
  }
  return Project(rows, {{yt_, C, &w.output, x_, C, Act::kNone, GemvOut::kF32Add}});
}

absl::Status CudaBackend::ChannelMix(int l, int rows, int pieces) {
  const ModelConfig& c = config();
  const CudaLayer& w = weights_->layer(l);
  const int C = c.n_embd;
  const StateView shift{pool_->device_data(), pool_->slot_floats(), LayerOffset(l + 1) - C};
  RWKV_RETURN_IF_ERROR(NormShift(rows, pieces, w.ln2_w, w.ln2_b, shift, MixSet{{w.ffn_x_k}, {mix_[2]}, 1}));
  RWKV_RETURN_IF_ERROR(
      Project(rows, {{mix_[2], C, &w.ffn_key, ffn_typed_.get(), c.ffn_dim, Act::kReluSquare, GemvOut::kTyped}}));
  return Project(rows, {{ffn_typed_.get(), c.ffn_dim, &w.ffn_value, x_, C, Act::kNone, GemvOut::kF32Add}});
}

int64_t CudaBackend::LayerOffset(int l) const { return l * (config().StateFloats() / config().n_layer); }

absl::Status CudaBackend::TimeMix6(int l, int rows, int pieces) {
  const ModelConfig& c = config();
  const CudaLayer& w = weights_->layer(l);
  const WeightType wt = weights_->type();
  const int C = c.n_embd, Dm = c.lora_mix;
  const size_t tb = WeightTypeBytes(wt);
  const StateView shift{pool_->device_data(), pool_->slot_floats(), LayerOffset(l)};
  RWKV_CUDA_LAUNCH(LayerNorm, x_, nullptr, rows, C, w.ln1_w, w.ln1_b, cpu::kLayerNormEps, z_, stream_);
  // Data-dependent mixes (spec 5.2): h = tanh(xx A1), m_j = h_j A2[j], x_j = z + (prev - z)(mu_j + m_j),
  // with xx = z + (prev - z) maa_x. Each m_j sits in the buffer its own projection fills later
  // (d k v r g), so that one token-shift pass makes all five mixes.
  RWKV_CUDA_LAUNCH(TokenShiftMix, z_, rows, C, dt_, shift, MixSet{{w.maa_x}, {mix_[5]}, 1}, wt, stream_);
  char* h = lora_typed_.as<char>();
  RWKV_RETURN_IF_ERROR(Project(rows, {{mix_[5], C, &w.maa_w1, h, 5 * Dm, Act::kTanh, GemvOut::kTyped}}));
  float* m[] = {d_, k_, v_, r_, g_};
  Projection terms[5];
  for (int j = 0; j < 5; ++j) terms[j] = {h + j * Dm * tb, 5 * Dm, &w.maa_w2[j], m[j], C};
  RWKV_RETURN_IF_ERROR(Project(rows, terms));
  MixSet mixes{{w.maa_w, w.mix_k, w.mix_v, w.mix_r, w.mix_g}, {mix_[0], mix_[1], mix_[2], mix_[3], mix_[4]}, 5};
  for (int j = 0; j < 5; ++j) mixes.add[j] = m[j];
  RWKV_CUDA_LAUNCH(TokenShiftMix, z_, rows, C, dt_, shift, mixes, wt, stream_);
  RWKV_CUDA_LAUNCH(SaveShift, z_, pieces, C, dt_, shift, stream_);
  void *xw = mix_[0], *xk = mix_[1], *xv = mix_[2], *xr = mix_[3], *xg = mix_[4];
  const Projection projections[] = {
      {xr, C, &w.receptance, r_, C},
      {xk, C, &w.key, k_, C},
      {xv, C, &w.value, v_, C},
      {xg, C, &w.gate, g_, C, Act::kSilu},
      {xw, C, &w.decay_w1, h, c.lora_decay, Act::kTanh, GemvOut::kTyped},
  };
  RWKV_RETURN_IF_ERROR(Project(rows, projections));
  RWKV_RETURN_IF_ERROR(Project(rows, {{h, c.lora_decay, &w.decay_w2, d_, C}}));
  RWKV_CUDA_LAUNCH(Rwkv6Decay, d_, w.decay, rows, C, stream_);
  return Wkv6Block(l, rows, pieces, /*d_stride=*/C);
}

absl::Status CudaBackend::TimeMix5(int l, int rows, int pieces) {
  const ModelConfig& c = config();
  const CudaLayer& w = weights_->layer(l);
  const WeightType wt = weights_->type();
  const int C = c.n_embd;
  const bool gated = w.mix_g != nullptr;
  const StateView shift{pool_->device_data(), pool_->slot_floats(), LayerOffset(l)};
  MixSet mixes{{w.mix_k, w.mix_v, w.mix_r, w.mix_g}, {mix_[0], mix_[1], mix_[2], mix_[3]}, gated ? 4 : 3};
  RWKV_RETURN_IF_ERROR(NormShift(rows, pieces, w.ln1_w, w.ln1_b, shift, mixes));
  const Projection projections[] = {
      {mix_[2], C, &w.receptance, r_, C},
      {mix_[0], C, &w.key, k_, C},
      {mix_[1], C, &w.value, v_, C},
      {mix_[3], C, &w.gate, g_, C, Act::kSilu},
  };
  RWKV_RETURN_IF_ERROR(Project(rows, std::span(projections, gated ? 4 : 3)));
  // RWKV-5's decay is one vector per layer: stride 0 over the rows.
  return Wkv6Block(l, rows, pieces, /*d_stride=*/0);
}

absl::Status CudaBackend::Wkv6Block(int l, int rows, int pieces, int64_t d_stride) {
  const ModelConfig& c = config();
  const CudaLayer& w = weights_->layer(l);
  const int C = c.n_embd, N = c.head_size;
  const StateView S{pool_->device_data(), pool_->slot_floats(), LayerOffset(l) + C};
  RWKV_CUDA_LAUNCH(Wkv6, S, dt_, pieces, c.n_head, N, C, r_, d_stride == 0 ? w.decay : d_, d_stride, k_, v_, w.bonus, y_, stream_);
  RWKV_CUDA_LAUNCH(GroupNormBonusGate, y_, nullptr, nullptr, nullptr, w.mix_g != nullptr ? g_ : nullptr, /*r_k=*/nullptr, w.ln_x_w,
                     w.ln_x_b, cpu::kGroupNormEps, rows, C, N, yt_, weights_->type(), stream_);
  return Project(rows, {{yt_, C, &w.output, x_, C, Act::kNone, GemvOut::kF32Add}});
}

absl::Status CudaBackend::TimeMix4(int l, int rows, int pieces) {
  const ModelConfig& c = config();
  const CudaLayer& w = weights_->layer(l);
  const WeightType wt = weights_->type();
  const int C = c.n_embd;
  const StateView shift{pool_->device_data(), pool_->slot_floats(), LayerOffset(l)};
  RWKV_RETURN_IF_ERROR(
      NormShift(rows, pieces, w.ln1_w, w.ln1_b, shift, MixSet{{w.mix_k, w.mix_v, w.mix_r}, {mix_[0], mix_[1], mix_[2]}, 3}));
  const Projection projections[] = {
      {mix_[2], C, &w.receptance, r_, C, Act::kSigmoid},
      {mix_[0], C, &w.key, k_, C},
      {mix_[1], C, &w.value, v_, C},
  };
  RWKV_RETURN_IF_ERROR(Project(rows, projections));
  const StateView S{pool_->device_data(), pool_->slot_floats(), LayerOffset(l) + C};  // aa bb pp
  RWKV_CUDA_LAUNCH(Wkv4, S, dt_, pieces, C, r_, k_, v_, w.decay, w.bonus, yt_, wt, stream_);
  return Project(rows, {{yt_, C, &w.output, x_, C, Act::kNone, GemvOut::kF32Add}});
}

absl::Status CudaBackend::ChannelMixKRV(int l, int rows, int pieces) {
  const ModelConfig& c = config();
  const CudaLayer& w = weights_->layer(l);
  const WeightType wt = weights_->type();
  const int C = c.n_embd;
  const StateView shift{pool_->device_data(), pool_->slot_floats(), LayerOffset(l + 1) - C};
  RWKV_RETURN_IF_ERROR(
      NormShift(rows, pieces, w.ln2_w, w.ln2_b, shift, MixSet{{w.ffn_mix_k, w.ffn_mix_r}, {mix_[0], mix_[1]}, 2}));
  const Projection in[] = {
      {mix_[0], C, &w.ffn_key, ffn_typed_.get(), c.ffn_dim, Act::kReluSquare, GemvOut::kTyped},
      {mix_[1], C, &w.ffn_receptance, r_, C},
  };
  RWKV_RETURN_IF_ERROR(Project(rows, in));
  RWKV_RETURN_IF_ERROR(Project(rows, {{ffn_typed_.get(), c.ffn_dim, &w.ffn_value, y_, C}}));
  RWKV_CUDA_LAUNCH(AddGated, x_, r_, y_, int64_t{rows} * C, stream_);
  return absl::OkStatus();
}

}  // namespace rwkv::cuda
