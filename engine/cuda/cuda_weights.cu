#include <cmath>
#include <cstring>
#include <deque>
#include <functional>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_weights.h"
#include "engine/cuda/ops.h"
#include "engine/dtype.h"
#include "engine/status.h"

namespace rwkv::cuda {

// Every tensor: where it goes in the arena, and how to produce its values.
struct CudaWeights::Plan {
  struct Tensor {
    size_t offset = 0;
    int64_t elements = 0;
    bool typed = false;                    // In WeightType (matrices, embedding) or float32 (vectors).
    const float* host = nullptr;           // Upload: float32 source, row-major.
    const PackedMatrix* packed = nullptr;  // Upload: a packed matrix to unpack.
    float lo = 0, hi = 0;                  // Random: uniform range.
    void** dst = nullptr;                  // Where the device pointer goes.
  };
  std::vector<Tensor> tensors;
  std::deque<std::vector<float>> derived;  // Host values computed at upload (kept until it ends).
  size_t size = 0;
  void Add(Tensor t, WeightType type) {
    const size_t bytes = t.elements * (t.typed ? WeightTypeBytes(type) : 4);
    size = (size + 255) / 256 * 256;
    t.offset = size;
    size += bytes;
    tensors.push_back(t);
  }
};

namespace {

using Plan = CudaWeights::Plan;  // Only for the builder below.

}  // namespace

absl::Status CudaWeights::Allocate(Plan* plan) {
  RWKV_RETURN_IF_ERROR(arena_.Allocate(plan->size, "model weights"));
  char* base = arena_.as<char>();
  for (Plan::Tensor& t : plan->tensors) *t.dst = base + t.offset;
  return absl::OkStatus();
}

namespace {

// Builds the plan for every tensor of the model with `layers` pointing into the arena. Vector
// and matrix sources come from `model` (Upload) or are random ranges (model == nullptr, RWKV-7).
void BuildPlan(const ModelConfig& c, const Model* model, WeightType type, std::vector<CudaLayer>* layers,
               const void** emb, const float** ln_out_w, const float** ln_out_b, DeviceMatrix* head,
               CudaWeights::Plan* plan) {
  const int C = c.n_embd;
  auto vec = [&](const float** dst, const float* host, float lo, float hi) {
    Plan::Tensor t;
    t.elements = C;
    t.host = host;
    t.lo = lo;
    t.hi = hi;
    t.dst = reinterpret_cast<void**>(const_cast<float**>(dst));
    plan->Add(t, type);
  };
  auto mat = [&](DeviceMatrix* dst, const PackedMatrix* packed, int n, int k) {
    dst->n = n;
    dst->k = k;
    Plan::Tensor t;
    t.elements = int64_t{n} * k;
    t.typed = true;
    t.packed = packed;
    t.lo = -1.0f / std::sqrt(static_cast<float>(k));
    t.hi = -t.lo;
    t.dst = const_cast<void**>(&dst->data);
    plan->Add(t, type);
  };
  // RWKV-4/5's vectors as the backends use them (KrvLayerVectors), kept until the upload ends;
  // the gate's mix only where the model has a gate.
  auto krv_vectors = [&](CudaLayer& L, int l, bool gated) {
    const std::vector<float>& v = plan->derived.emplace_back(KrvLayerVectors(*model, l));
    auto at = [&](KrvVector which) { return v.data() + static_cast<size_t>(which) * C; };
    for (auto [dst, which] : {std::pair{&L.decay, kKrvDecay}, {&L.bonus, kKrvBonus}, {&L.mix_k, kKrvMixK},
                              {&L.mix_v, kKrvMixV}, {&L.mix_r, kKrvMixR}, {&L.ffn_mix_k, kKrvFfnMixK},
                              {&L.ffn_mix_r, kKrvFfnMixR}}) {
      vec(dst, at(which), 0, 0);
    }
    if (gated) vec(&L.mix_g, at(kKrvMixG), 0, 0);
  };
  {
    Plan::Tensor t;
    t.elements = int64_t{c.vocab} * C;
    t.typed = true;
    t.host = model ? model->emb() : nullptr;
    t.lo = -1;
    t.hi = 1;
    t.dst = const_cast<void**>(emb);
    plan->Add(t, type);
  }
  vec(ln_out_w, model ? model->ln_out_w() : nullptr, 0.9f, 1.1f);
  vec(ln_out_b, model ? model->ln_out_b() : nullptr, -0.1f, 0.1f);
  mat(head, model ? &model->head() : nullptr, c.vocab, C);
  layers->resize(c.n_layer);
  const int F = c.ffn_dim;
  // What RWKV-4, 5 and 6 layers share, by the same field names: the layer norms and the
  // projections of the time mix and of the channel mix.
  auto krv = [&](CudaLayer& L, const auto& H) {
    for (auto [dst, src] :
         {std::pair{&L.ln1_w, H.ln1_w}, {&L.ln1_b, H.ln1_b}, {&L.ln2_w, H.ln2_w}, {&L.ln2_b, H.ln2_b}})
      vec(dst, src, 0, 0);
    mat(&L.receptance, &H.receptance, C, C);
    mat(&L.key, &H.key, C, C);
    mat(&L.value, &H.value, C, C);
    mat(&L.output, &H.output, C, C);
    mat(&L.ffn_key, &H.ffn_key, F, C);
    mat(&L.ffn_receptance, &H.ffn_receptance, C, C);
    mat(&L.ffn_value, &H.ffn_value, C, F);
  };
  for (int l = 0; l < c.n_layer; ++l) {
    CudaLayer& L = (*layers)[l];
    if (c.arch == Architecture::kRwkv4) {
      const Rwkv4Layer& H = model->layer4(l);
      krv(L, H);
      krv_vectors(L, l, /*gated=*/false);
      continue;
    }
    if (c.arch == Architecture::kRwkv5_0 || c.arch == Architecture::kRwkv5_1 || c.arch == Architecture::kRwkv5_2) {
      const Rwkv5Layer& H = model->layer5(l);
      krv(L, H);
      vec(&L.ln_x_w, H.ln_x_w, 0, 0);
      vec(&L.ln_x_b, H.ln_x_b, 0, 0);
      krv_vectors(L, l, /*gated=*/H.mix_g != nullptr);
      if (H.mix_g != nullptr) mat(&L.gate, &H.gate, C, C);
      continue;
    }
    if (c.arch == Architecture::kRwkv6) {
      const Rwkv6Layer& H = model->layer6(l);
      krv(L, H);
      for (auto [dst, src] : {std::pair{&L.ln_x_w, H.ln_x_w},
                              {&L.ln_x_b, H.ln_x_b},
                              {&L.maa_x, H.maa_x},
                              {&L.maa_w, H.maa_w},
                              {&L.mix_k, H.maa_k},
                              {&L.mix_v, H.maa_v},
                              {&L.mix_r, H.maa_r},
                              {&L.mix_g, H.maa_g},
                              {&L.decay, H.time_decay},
                              {&L.bonus, H.faaaa},
                              {&L.ffn_mix_k, H.ffn_maa_k},
                              {&L.ffn_mix_r, H.ffn_maa_r}})
        vec(dst, src, 0, 0);
      const int Dm = c.lora_mix, Dd = c.lora_decay;
      mat(&L.maa_w1, &H.maa_w1, 5 * Dm, C);
      for (int j = 0; j < 5; ++j) mat(&L.maa_w2[j], &H.maa_w2[j], C, Dm);
      mat(&L.decay_w1, &H.decay_w1, Dd, C);
      mat(&L.decay_w2, &H.decay_w2, C, Dd);
      mat(&L.gate, &H.gate, C, C);
      continue;
    }
    const Rwkv7Layer* H = model ? &model->layer(l) : nullptr;
    auto v = [&](const float** dst, const float* Rwkv7Layer::*src, float lo, float hi) {
      vec(dst, H ? H->*src : nullptr, lo, hi);
    };
    auto m = [&](DeviceMatrix* dst, PackedMatrix Rwkv7Layer::*src, int n, int k) {
      mat(dst, H ? &(H->*src) : nullptr, n, k);
    };
    v(&L.ln1_w, &Rwkv7Layer::ln1_w, 0.9f, 1.1f);
    v(&L.ln1_b, &Rwkv7Layer::ln1_b, -0.1f, 0.1f);
    v(&L.ln2_w, &Rwkv7Layer::ln2_w, 0.9f, 1.1f);
    v(&L.ln2_b, &Rwkv7Layer::ln2_b, -0.1f, 0.1f);
    v(&L.x_r, &Rwkv7Layer::x_r, 0, 1);
    v(&L.x_w, &Rwkv7Layer::x_w, 0, 1);
    v(&L.x_k, &Rwkv7Layer::x_k, 0, 1);
    v(&L.x_v, &Rwkv7Layer::x_v, 0, 1);
    v(&L.x_a, &Rwkv7Layer::x_a, 0, 1);
    v(&L.x_g, &Rwkv7Layer::x_g, 0, 1);
    v(&L.w0, &Rwkv7Layer::w0, -2, 2);
    v(&L.a0, &Rwkv7Layer::a0, -1, 1);
    if (l > 0)
      v(&L.v0, &Rwkv7Layer::v0, -1, 1);
    else
      L.v0 = nullptr;
    v(&L.k_k, &Rwkv7Layer::k_k, 0.5f, 1.5f);
    v(&L.k_a, &Rwkv7Layer::k_a, 0, 1);
    v(&L.r_k, &Rwkv7Layer::r_k, -0.5f, 0.5f);
    v(&L.ln_x_w, &Rwkv7Layer::ln_x_w, 0.9f, 1.1f);
    v(&L.ln_x_b, &Rwkv7Layer::ln_x_b, -0.1f, 0.1f);
    v(&L.ffn_x_k, &Rwkv7Layer::ffn_x_k, 0, 1);
    m(&L.w1, &Rwkv7Layer::w1, c.lora_decay, C);
    m(&L.w2, &Rwkv7Layer::w2, C, c.lora_decay);
    m(&L.a1, &Rwkv7Layer::a1, c.lora_iclr, C);
    m(&L.a2, &Rwkv7Layer::a2, C, c.lora_iclr);
    if (l > 0) {
      m(&L.v1, &Rwkv7Layer::v1, c.lora_value, C);
      m(&L.v2, &Rwkv7Layer::v2, C, c.lora_value);
    }
    m(&L.g1, &Rwkv7Layer::g1, c.lora_gate, C);
    m(&L.g2, &Rwkv7Layer::g2, C, c.lora_gate);
    m(&L.receptance, &Rwkv7Layer::receptance, C, C);
    m(&L.key, &Rwkv7Layer::key, C, C);
    m(&L.value, &Rwkv7Layer::value, C, C);
    m(&L.output, &Rwkv7Layer::output, C, C);
    m(&L.ffn_key, &Rwkv7Layer::ffn_key, c.ffn_dim, C);
    m(&L.ffn_value, &Rwkv7Layer::ffn_value, C, c.ffn_dim);
  }
}

int64_t Parameters(const Plan& plan) {
  int64_t n = 0;
  for (const Plan::Tensor& t : plan.tensors) n += t.elements;
  return n;
}

size_t StepBytes(const Plan& plan, WeightType type, int64_t emb_elements) {
  size_t total = 0;
  for (const Plan::Tensor& t : plan.tensors) total += t.elements * (t.typed ? WeightTypeBytes(type) : 4);
  return total - emb_elements * WeightTypeBytes(type);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaWeights>> CudaWeights::Upload(const Model& model, WeightType type, cudaStream_t s) {
  std::unique_ptr<CudaWeights> w(new CudaWeights(model.config(), type));
  Plan plan;
  BuildPlan(model.config(), &model, type, &w->layers_, &w->emb_, &w->ln_out_w_, &w->ln_out_b_, &w->head_, &plan);
  RWKV_RETURN_IF_ERROR(w->Allocate(&plan));
  w->step_bytes_ = StepBytes(plan, type, int64_t{model.config().vocab} * model.config().n_embd);
  w->parameters_ = Parameters(plan);
  std::vector<float> rows;
  std::vector<uint16_t> half;
  for (const Plan::Tensor& t : plan.tensors) {
    const float* src = t.host;
    if (t.packed != nullptr) {  // Unpack the CPU panel layout to row-major [n, k].
      const PackedMatrix& p = *t.packed;
      rows.resize(static_cast<size_t>(p.n) * p.k);
      for (int r = 0; r < p.n; ++r) {
        if (p.type != MatrixType::kF32) {  // A model loaded with 16-bit matrices: widened exactly.
          for (int j = 0; j < p.k; ++j) rows[static_cast<size_t>(r) * p.k + j] = p.At(r, j);
          continue;
        }
        const float* panel = p.data + int64_t{r / kPanel} * p.k * kPanel + r % kPanel;
        for (int j = 0; j < p.k; ++j) rows[static_cast<size_t>(r) * p.k + j] = panel[int64_t{j} * kPanel];
      }
      src = rows.data();
    }
    void* dst = w->arena_.as<char>() + t.offset;
    if (!t.typed || type == WeightType::kF32) {
      RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, t.elements * 4, cudaMemcpyHostToDevice));
    } else {
      half.resize(t.elements);
      for (int64_t i = 0; i < t.elements; ++i) {
        half[i] = type == WeightType::kF16 ? FloatToF16(src[i]) : FloatToBf16(src[i]);
      }
      RWKV_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, half.data(), t.elements * 2, cudaMemcpyHostToDevice));
    }
  }
  return w;
}

absl::StatusOr<std::unique_ptr<CudaWeights>> CudaWeights::Random(const ModelConfig& config, WeightType type,
                                                                 uint64_t seed, cudaStream_t s) {
  if (config.arch != Architecture::kRwkv7) {
    return absl::UnimplementedError(
        absl::StrCat("random device weights are made for rwkv7 only, not ", ArchitectureName(config.arch)));
  }
  std::unique_ptr<CudaWeights> w(new CudaWeights(config, type));
  Plan plan;
  BuildPlan(config, nullptr, type, &w->layers_, &w->emb_, &w->ln_out_w_, &w->ln_out_b_, &w->head_, &plan);
  RWKV_RETURN_IF_ERROR(w->Allocate(&plan));
  w->step_bytes_ = StepBytes(plan, type, int64_t{config.vocab} * config.n_embd);
  w->parameters_ = Parameters(plan);
  w->config_.parameter_count = w->parameters_;
  uint64_t k = seed;
  for (const Plan::Tensor& t : plan.tensors) {
    RWKV_CUDA_LAUNCH(FillRandom, w->arena_.as<char>() + t.offset, t.typed ? type : WeightType::kF32, t.elements, t.lo, t.hi, ++k, s);
  }
  RWKV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
  return w;
}

}  // namespace rwkv::cuda
