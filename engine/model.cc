#include "engine/model.h"

#include <cmath>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/absl_compat.h"
#include "engine/cpu/gemm.h"
#include "engine/name_map.h"
#include "engine/status.h"

namespace rwkv {
namespace model_internal {

// One tensor the model needs: where it goes and the shape it must have in the file.
struct Slot {
  std::string name;
  std::vector<int64_t> shape;
  const float** vec = nullptr;     // A vector: stored as is.
  PackedMatrix* matrix = nullptr;  // A matrix: stored packed, [out, in].
  bool transpose = false;          // LoRA [in, out] in the file.
  MatrixType type = MatrixType::kF32;  // A matrix's element type (LoRA stays float32).
  int slice = -1;                  // >= 0: this index of the file tensor's first dimension.
  std::vector<int64_t> file_shape = {};  // With `slice`: the whole tensor's shape in the file.
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int rows() const { return static_cast<int>(transpose ? shape[1] : shape[0]); }
  int cols() const { return static_cast<int>(transpose ? shape[0] : shape[1]); }
  int64_t stored_floats() const { return matrix ? PackedMatrix::Floats(rows(), cols()) : numel(); }
};

}  // namespace model_internal

namespace {

using model_internal::Slot;

// A matrix's type when the model's are `t`. int4 keeps the head at int8: the head is a large
// share of a small model's bytes, but its error lands on the logits directly (bench/NOTES.md has
// the measured difference).
MatrixType SlotMatrixType(MatrixType t, const Slot& s) {
  return t == MatrixType::kInt4 && s.name == "head.weight" ? MatrixType::kInt8 : t;
}

std::vector<int64_t> Squeezed(const std::vector<int64_t>& s) {
  size_t i = 0;
  while (i + 1 < s.size() && s[i] == 1) ++i;
  return {s.begin() + i, s.end()};
}

std::string ShapeStr(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

// Builds a load plan: the embedding and ln0 first, then each layer's tensors, then ln_out and
// the head, laid out in the arena in that order.
class PlanBuilder {
 public:
  PlanBuilder(const ModelConfig& c, const float** emb, const float** ln0_w, const float** ln0_b) : c_(c) {
    const int64_t C = c.n_embd, V = c.vocab;
    plan_.push_back({"emb.weight", {V, C}, emb});  // Row-major: rows are gathered by token.
    plan_.push_back({"blocks.0.ln0.weight", {C}, ln0_w});
    plan_.push_back({"blocks.0.ln0.bias", {C}, ln0_b});
  }
  // A vector (or small table) stored as is.
  void Vec(const std::string& name, std::vector<int64_t> shape, const float** target) {
    plan_.push_back({name, std::move(shape), target});
  }
  // An nn.Linear weight, [out, in] in the file.
  void Linear(const std::string& name, int64_t out, int64_t in, PackedMatrix* target) {
    plan_.push_back({name, {out, in}, nullptr, target});
  }
  // A LoRA matrix, [in, out] in the file, transposed at load.
  void Lora(const std::string& name, int64_t in, int64_t out, PackedMatrix* target) {
    plan_.push_back({name, {in, out}, nullptr, target, /*transpose=*/true});
  }
  void Add(Slot s) { plan_.push_back(std::move(s)); }
  // Every generation's ln1 and ln2 of layer prefix `p`.
  void LayerNorms(const std::string& p, const float** ln1_w, const float** ln1_b, const float** ln2_w,
                  const float** ln2_b) {
    const int64_t C = c_.n_embd;
    Vec(p + "ln1.weight", {C}, ln1_w);
    Vec(p + "ln1.bias", {C}, ln1_b);
    Vec(p + "ln2.weight", {C}, ln2_w);
    Vec(p + "ln2.bias", {C}, ln2_b);
  }
  // The RWKV-4/5/6 channel mix matrices under prefix `f` ("blocks.N.ffn.").
  void KeyReceptanceValue(const std::string& f, PackedMatrix* key, PackedMatrix* receptance, PackedMatrix* value) {
    const int64_t C = c_.n_embd, F = c_.ffn_dim;
    Linear(f + "key.weight", F, C, key);
    Linear(f + "receptance.weight", C, C, receptance);
    Linear(f + "value.weight", C, F, value);
  }
  std::vector<Slot> Finish(const float** ln_out_w, const float** ln_out_b, PackedMatrix* head) {
    const int64_t C = c_.n_embd, V = c_.vocab;
    plan_.push_back({"ln_out.weight", {C}, ln_out_w});
    plan_.push_back({"ln_out.bias", {C}, ln_out_b});
    plan_.push_back({"head.weight", {V, C}, nullptr, head});
    return std::move(plan_);
  }

 private:
  const ModelConfig& c_;
  std::vector<Slot> plan_;
};

// The tensors of an RWKV-7 model, in arena order. ln0 goes to the two locals, folded after loading.
std::vector<Slot> Rwkv7Plan(const ModelConfig& c, std::vector<Rwkv7Layer>* layers, const float** emb,
                            const float** ln_out_w, const float** ln_out_b, PackedMatrix* head, const float** ln0_w,
                            const float** ln0_b) {
  const int64_t C = c.n_embd, A = c.n_att, F = c.ffn_dim;
  PlanBuilder b(c, emb, ln0_w, ln0_b);
  layers->assign(c.n_layer, Rwkv7Layer{});
  for (int l = 0; l < c.n_layer; ++l) {
    Rwkv7Layer& L = (*layers)[l];
    const std::string p = absl::StrCat("blocks.", l, ".");
    const std::string a = p + "att.";
    b.LayerNorms(p, &L.ln1_w, &L.ln1_b, &L.ln2_w, &L.ln2_b);
    b.Vec(a + "x_r", {C}, &L.x_r);
    b.Vec(a + "x_w", {C}, &L.x_w);
    b.Vec(a + "x_k", {C}, &L.x_k);
    b.Vec(a + "x_v", {C}, &L.x_v);
    b.Vec(a + "x_a", {C}, &L.x_a);
    b.Vec(a + "x_g", {C}, &L.x_g);
    b.Vec(a + "w0", {C}, &L.w0);
    b.Lora(a + "w1", C, c.lora_decay, &L.w1);
    b.Lora(a + "w2", c.lora_decay, C, &L.w2);
    b.Vec(a + "a0", {C}, &L.a0);
    b.Lora(a + "a1", C, c.lora_iclr, &L.a1);
    b.Lora(a + "a2", c.lora_iclr, C, &L.a2);
    if (l > 0) {
      b.Vec(a + "v0", {C}, &L.v0);
      b.Lora(a + "v1", C, c.lora_value, &L.v1);
      b.Lora(a + "v2", c.lora_value, C, &L.v2);
    }
    b.Lora(a + "g1", C, c.lora_gate, &L.g1);
    b.Lora(a + "g2", c.lora_gate, C, &L.g2);
    b.Vec(a + "k_k", {C}, &L.k_k);
    b.Vec(a + "k_a", {C}, &L.k_a);
    b.Vec(a + "r_k", {c.n_head, c.head_size}, &L.r_k);
    b.Linear(a + "receptance.weight", A, C, &L.receptance);
    b.Linear(a + "key.weight", A, C, &L.key);
    b.Linear(a + "value.weight", A, C, &L.value);
    b.Linear(a + "output.weight", C, A, &L.output);
    b.Vec(a + "ln_x.weight", {A}, &L.ln_x_w);
    b.Vec(a + "ln_x.bias", {A}, &L.ln_x_b);
    b.Vec(p + "ffn.x_k", {C}, &L.ffn_x_k);
    b.Linear(p + "ffn.key.weight", F, C, &L.ffn_key);
    b.Linear(p + "ffn.value.weight", C, F, &L.ffn_value);
  }
  return b.Finish(ln_out_w, ln_out_b, head);
}

// The tensors of an RWKV-6 model (spec 5.1), in arena order.
std::vector<Slot> Rwkv6Plan(const ModelConfig& c, std::vector<Rwkv6Layer>* layers, const float** emb,
                            const float** ln_out_w, const float** ln_out_b, PackedMatrix* head, const float** ln0_w,
                            const float** ln0_b) {
  const int64_t C = c.n_embd, A = c.n_att, Dm = c.lora_mix, Dd = c.lora_decay;
  PlanBuilder b(c, emb, ln0_w, ln0_b);
  layers->assign(c.n_layer, Rwkv6Layer{});
  for (int l = 0; l < c.n_layer; ++l) {
    Rwkv6Layer& L = (*layers)[l];
    const std::string p = absl::StrCat("blocks.", l, ".");
    const std::string a = p + "att.", f = p + "ffn.";
    b.LayerNorms(p, &L.ln1_w, &L.ln1_b, &L.ln2_w, &L.ln2_b);
    b.Vec(a + "time_maa_x", {C}, &L.maa_x);
    b.Vec(a + "time_maa_w", {C}, &L.maa_w);
    b.Vec(a + "time_maa_k", {C}, &L.maa_k);
    b.Vec(a + "time_maa_v", {C}, &L.maa_v);
    b.Vec(a + "time_maa_r", {C}, &L.maa_r);
    b.Vec(a + "time_maa_g", {C}, &L.maa_g);
    b.Lora(a + "time_maa_w1", C, 5 * Dm, &L.maa_w1);
    for (int j = 0; j < 5; ++j) {
      Slot s{a + "time_maa_w2", {Dm, C}, nullptr, &L.maa_w2[j], /*transpose=*/true};
      s.slice = j;
      s.file_shape = {5, Dm, C};
      b.Add(s);
    }
    b.Vec(a + "time_decay", {A}, &L.time_decay);
    b.Lora(a + "time_decay_w1", C, Dd, &L.decay_w1);
    b.Lora(a + "time_decay_w2", Dd, A, &L.decay_w2);
    b.Vec(a + "time_faaaa", {c.n_head, c.head_size}, &L.faaaa);
    b.Linear(a + "receptance.weight", A, C, &L.receptance);
    b.Linear(a + "key.weight", A, C, &L.key);
    b.Linear(a + "value.weight", A, C, &L.value);
    b.Linear(a + "gate.weight", A, C, &L.gate);
    b.Linear(a + "output.weight", C, A, &L.output);
    b.Vec(a + "ln_x.weight", {A}, &L.ln_x_w);
    b.Vec(a + "ln_x.bias", {A}, &L.ln_x_b);
    b.Vec(f + "time_maa_k", {C}, &L.ffn_maa_k);
    b.Vec(f + "time_maa_r", {C}, &L.ffn_maa_r);
    b.KeyReceptanceValue(f, &L.ffn_key, &L.ffn_receptance, &L.ffn_value);
  }
  return b.Finish(ln_out_w, ln_out_b, head);
}

// The tensors of an RWKV-5.x model (spec 4.1), in arena order. `first` = the bonus comes as
// att.time_first (log space) rather than att.time_faaaa.
std::vector<Slot> Rwkv5Plan(const ModelConfig& c, bool first, std::vector<Rwkv5Layer>* layers, const float** emb,
                            const float** ln_out_w, const float** ln_out_b, PackedMatrix* head, const float** ln0_w,
                            const float** ln0_b) {
  const int64_t C = c.n_embd, A = c.n_att, H = c.n_head, N = c.head_size;
  const bool gated = c.arch != Architecture::kRwkv5_0;
  const std::vector<int64_t> per = c.arch == Architecture::kRwkv5_2 ? std::vector<int64_t>{H, N} : std::vector<int64_t>{H};
  PlanBuilder b(c, emb, ln0_w, ln0_b);
  layers->assign(c.n_layer, Rwkv5Layer{});
  for (int l = 0; l < c.n_layer; ++l) {
    Rwkv5Layer& L = (*layers)[l];
    const std::string p = absl::StrCat("blocks.", l, ".");
    const std::string a = p + "att.", f = p + "ffn.";
    b.LayerNorms(p, &L.ln1_w, &L.ln1_b, &L.ln2_w, &L.ln2_b);
    b.Vec(a + "time_mix_k", {C}, &L.mix_k);
    b.Vec(a + "time_mix_v", {C}, &L.mix_v);
    b.Vec(a + "time_mix_r", {C}, &L.mix_r);
    if (gated) b.Vec(a + "time_mix_g", {C}, &L.mix_g);
    b.Vec(a + "time_decay", per, &L.time_decay);
    b.Vec(a + (first ? "time_first" : "time_faaaa"), per, &L.bonus);
    L.bonus_is_log = first;
    b.Linear(a + "receptance.weight", A, C, &L.receptance);
    b.Linear(a + "key.weight", A, C, &L.key);
    b.Linear(a + "value.weight", A, C, &L.value);
    if (gated) b.Linear(a + "gate.weight", A, C, &L.gate);
    b.Linear(a + "output.weight", C, A, &L.output);
    b.Vec(a + "ln_x.weight", {A}, &L.ln_x_w);
    b.Vec(a + "ln_x.bias", {A}, &L.ln_x_b);
    b.Vec(f + "time_mix_k", {C}, &L.ffn_mix_k);
    b.Vec(f + "time_mix_r", {C}, &L.ffn_mix_r);
    b.KeyReceptanceValue(f, &L.ffn_key, &L.ffn_receptance, &L.ffn_value);
  }
  return b.Finish(ln_out_w, ln_out_b, head);
}

// The tensors of an RWKV-4 model (spec 3.1), in arena order.
std::vector<Slot> Rwkv4Plan(const ModelConfig& c, std::vector<Rwkv4Layer>* layers, const float** emb,
                            const float** ln_out_w, const float** ln_out_b, PackedMatrix* head, const float** ln0_w,
                            const float** ln0_b) {
  const int64_t C = c.n_embd, A = c.n_att;
  PlanBuilder b(c, emb, ln0_w, ln0_b);
  layers->assign(c.n_layer, Rwkv4Layer{});
  for (int l = 0; l < c.n_layer; ++l) {
    Rwkv4Layer& L = (*layers)[l];
    const std::string p = absl::StrCat("blocks.", l, ".");
    const std::string a = p + "att.", f = p + "ffn.";
    b.LayerNorms(p, &L.ln1_w, &L.ln1_b, &L.ln2_w, &L.ln2_b);
    b.Vec(a + "time_mix_k", {C}, &L.mix_k);
    b.Vec(a + "time_mix_v", {C}, &L.mix_v);
    b.Vec(a + "time_mix_r", {C}, &L.mix_r);
    b.Vec(a + "time_decay", {A}, &L.time_decay);
    b.Vec(a + "time_first", {A}, &L.time_first);
    b.Linear(a + "receptance.weight", A, C, &L.receptance);
    b.Linear(a + "key.weight", A, C, &L.key);
    b.Linear(a + "value.weight", A, C, &L.value);
    b.Linear(a + "output.weight", C, A, &L.output);
    b.Vec(f + "time_mix_k", {C}, &L.ffn_mix_k);
    b.Vec(f + "time_mix_r", {C}, &L.ffn_mix_r);
    b.KeyReceptanceValue(f, &L.ffn_key, &L.ffn_receptance, &L.ffn_value);
  }
  return b.Finish(ln_out_w, ln_out_b, head);
}

}  // namespace

std::vector<model_internal::Slot> Model::Plan(bool time_first, const float** ln0_w, const float** ln0_b) {
  switch (config_.arch) {
    case Architecture::kRwkv4:
      return Rwkv4Plan(config_, &layers4_, &emb_, &ln_out_w_, &ln_out_b_, &head_, ln0_w, ln0_b);
    case Architecture::kRwkv5_0:
    case Architecture::kRwkv5_1:
    case Architecture::kRwkv5_2:
      return Rwkv5Plan(config_, time_first, &layers5_, &emb_, &ln_out_w_, &ln_out_b_, &head_, ln0_w, ln0_b);
    case Architecture::kRwkv6:
      return Rwkv6Plan(config_, &layers6_, &emb_, &ln_out_w_, &ln_out_b_, &head_, ln0_w, ln0_b);
    case Architecture::kRwkv7:
      break;
  }
  return Rwkv7Plan(config_, &layers_, &emb_, &ln_out_w_, &ln_out_b_, &head_, ln0_w, ln0_b);
}

template <typename Fill>
absl::Status Model::Store(const std::vector<model_internal::Slot>& plan, Fill fill) {
  // Arena sizes: float32 (vectors, float32 matrices), 16-bit (bf16/f16 matrices, quantized
  // matrices' scales), bytes (quantized codes).
  size_t floats = 0, halves = 0, codes = 0;
  for (const Slot& s : plan) {
    if (!s.matrix || s.type == MatrixType::kF32) {
      floats += static_cast<size_t>(s.stored_floats());
    } else if (IsQuantized(s.type)) {
      codes += static_cast<size_t>(PackedMatrix::CodeBytes(s.rows(), s.cols(), s.type));
      halves += static_cast<size_t>(PackedMatrix::Scales(s.rows(), s.cols()));
    } else {
      halves += static_cast<size_t>(s.stored_floats());
    }
  }
  arena_.resize(floats);
  half_arena_.resize(halves);
  code_arena_.resize(codes);
  floats = halves = codes = 0;
  // Matrices are filled and packed one panel (16 rows) at a time: besides the result, loading
  // holds 16 rows of one tensor.
  std::vector<float> rows;
  for (const Slot& s : plan) {
    if (!s.matrix) {
      float* dst = arena_.data() + floats;
      fill(s, 0, -1, dst);
      *s.vec = dst;
      floats += static_cast<size_t>(s.stored_floats());
      continue;
    }
    PackedMatrix m;
    m.n = s.rows();
    m.k = s.cols();
    m.type = s.type;
    rows.resize(static_cast<size_t>(kPanel) * m.k);
    const int64_t panel = int64_t{kPanel} * m.k;
    const int64_t panel_codes = IsQuantized(m.type) ? PackedMatrix::CodeBytes(kPanel, m.k, m.type) : 0;
    const int64_t panel_scales = int64_t{kPanel} * PackedMatrix::Groups(m.k);
    for (int r0 = 0; r0 < m.n; r0 += kPanel) {
      const int count = std::min(kPanel, m.n - r0);
      fill(s, r0, count, rows.data());
      const int64_t p = r0 / kPanel;
      switch (m.type) {
        case MatrixType::kF32:
          cpu::Pack(rows.data(), count, m.k, arena_.data() + floats + p * panel);
          break;
        case MatrixType::kBF16:
        case MatrixType::kF16:
          cpu::PackHalf(rows.data(), count, m.k, m.type, half_arena_.data() + halves + p * panel);
          break;
        case MatrixType::kInt8:
        case MatrixType::kInt4:
          if (!cpu::PackQuantized(rows.data(), count, m.k, m.type, code_arena_.data() + codes + p * panel_codes,
                                  half_arena_.data() + halves + p * panel_scales)) {
            return absl::InvalidArgumentError(absl::StrCat(
                "tensor ", s.name, ": a weight in rows [", r0, ", ", r0 + count, ") is not finite or beyond ",
                MatrixTypeName(m.type), "'s range (float16 scales: |w| up to about 8e6); load it as f32 or bf16"));
          }
          break;
      }
    }
    if (m.type == MatrixType::kF32) {
      m.data = arena_.data() + floats;
      floats += static_cast<size_t>(s.stored_floats());
    } else if (IsQuantized(m.type)) {
      m.codes = code_arena_.data() + codes;
      m.scales = half_arena_.data() + halves;
      codes += static_cast<size_t>(PackedMatrix::CodeBytes(m.n, m.k, m.type));
      halves += static_cast<size_t>(PackedMatrix::Scales(m.n, m.k));
    } else {
      m.half = half_arena_.data() + halves;
      halves += static_cast<size_t>(s.stored_floats());
    }
    *s.matrix = m;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<MatrixType>> ParseMatrixType(std::string_view value, std::string_view flag) {
  if (value == "auto") return std::optional<MatrixType>();
  if (value == "f32") return std::optional<MatrixType>(MatrixType::kF32);
  if (value == "bf16") return std::optional<MatrixType>(MatrixType::kBF16);
  if (value == "f16") return std::optional<MatrixType>(MatrixType::kF16);
  if (value == "int8") return std::optional<MatrixType>(MatrixType::kInt8);
  if (value == "int4") return std::optional<MatrixType>(MatrixType::kInt4);
  return absl::InvalidArgumentError(absl::StrCat(AV(flag), " is '", AV(value.substr(0, 32)),
                                                 "'; it must be auto, f32, bf16, f16, int8 or int4"));
}

void ApplyLn0Row(const float* ln0_w, const float* ln0_b, int C, const float* row, float* out) {
  // In double, so the fold adds no error of its own.
  double mean = 0, var = 0;
  for (int i = 0; i < C; ++i) mean += row[i];
  mean /= C;
  for (int i = 0; i < C; ++i) var += (row[i] - mean) * (row[i] - mean);
  const double inv = 1.0 / std::sqrt(var / C + 1e-5);
  for (int i = 0; i < C; ++i) out[i] = static_cast<float>((row[i] - mean) * inv * ln0_w[i] + ln0_b[i]);
}

void Model::ApplyLn0(const float* row, float* out) const { ApplyLn0Row(ln0_w_, ln0_b_, config_.n_embd, row, out); }

void Model::FoldLn0(const float* w, const float* b) {
  ln0_w_ = w;
  ln0_b_ = b;
  float* e = const_cast<float*>(emb_);
  for (int64_t v = 0; v < config_.vocab; ++v) ApplyLn0(e + v * config_.n_embd, e + v * config_.n_embd);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path, const ModelOptions& options) {
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<TensorFile> file, TensorFile::Open(path));
  std::vector<TensorInfo> tensors = file->tensors();
  RWKV_RETURN_IF_ERROR(MapToOfficialNames(path, &tensors));
  file->ReplaceTensors(std::move(tensors));
  RWKV_ASSIGN_OR_RETURN(ModelConfig config, DetectModelConfig(*file));
  const bool v5 = config.arch == Architecture::kRwkv5_0 || config.arch == Architecture::kRwkv5_1 ||
                  config.arch == Architecture::kRwkv5_2;
  if (config.n_att != config.n_embd) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": attention width ", config.n_att,
                                                   " differs from the embedding width ", config.n_embd,
                                                   "; this engine requires them equal"));
  }
  std::unique_ptr<Model> m(new Model());
  m->config_ = config;
  m->source_ = path;
  const float *ln0_w = nullptr, *ln0_b = nullptr;
  std::vector<Slot> plan = m->Plan(v5 && file->Find("blocks.0.att.time_faaaa") == nullptr, &ln0_w, &ln0_b);

  // Validate everything before allocating, so a bad file never yields a partial model.
  std::set<std::string> used;
  for (const Slot& s : plan) {
    const TensorInfo* t = file->Find(s.name);
    if (!t)
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": missing tensor ", s.name, " (expected shape ", ShapeStr(s.shape), ")"));
    if (!IsFloat(t->dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", s.name, " has dtype ", DTypeName(t->dtype), ", expected f32, f16 or bf16"));
    }
    const std::vector<int64_t>& want = s.slice >= 0 ? s.file_shape : s.shape;
    if (Squeezed(t->shape) != Squeezed(want) || (s.slice >= 0 && t->shape.size() != want.size())) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", s.name, " has shape ", t->ShapeString(),
                                                     ", expected ", ShapeStr(want), " (", config.Describe(), ")"));
    }
    used.insert(s.name);
  }
  // Matrix element types: as asked, or as stored (a 16-bit tensor keeps its type, exactly).
  for (Slot& s : plan) {
    if (s.matrix == nullptr || s.transpose) continue;  // LoRA factors stay float32.
    const DType stored = file->Find(s.name)->dtype;
    const MatrixType t = options.matrices ? *options.matrices
                         : stored == DType::kBF16 ? MatrixType::kBF16
                         : stored == DType::kF16  ? MatrixType::kF16
                                                  : MatrixType::kF32;
    s.type = SlotMatrixType(t, s);
    if (s.name == "head.weight") m->matrices_ = t;
  }
  for (const TensorInfo& t : file->tensors()) {
    if (used.count(t.name)) continue;
    // Layer 0's value-residual LoRA ships in official files but is never used (spec 6.2).
    if (t.name == "blocks.0.att.v0" || t.name == "blocks.0.att.v1" || t.name == "blocks.0.att.v2") continue;
    std::string why =
        absl::EndsWith(t.name, "att.time_state")
            ? " (a state-tuning tensor: give the state file to rwkv-server --states, the base model to --model)"
            : "";
    return absl::InvalidArgumentError(absl::StrCat(path, ": unexpected tensor ", t.name, " ", t.ShapeString(), " in an ",
                                                   ArchitectureName(config.arch), " checkpoint", why));
  }
  const absl::Status stored = m->Store(plan, [&](const Slot& s, int row0, int count, float* out) {
    TensorInfo t = *file->Find(s.name);
    const int64_t elem = static_cast<int64_t>(DTypeSize(t.dtype));
    if (s.slice >= 0) {  // One matrix of a stacked [k, rows, cols] tensor: a view, no copy.
      t.data += s.slice * t.strides[0] * elem;
      t.shape.erase(t.shape.begin());
      t.strides.erase(t.strides.begin());
    }
    if (s.matrix != nullptr) {
      // The (squeezed) 2-D view, [out, in]: a LoRA factor's transposed.
      while (t.shape.size() > 2) {
        t.shape.erase(t.shape.begin());
        t.strides.erase(t.strides.begin());
      }
      while (t.shape.size() < 2) {  // A [1, k] matrix stored as [k].
        t.shape.insert(t.shape.begin(), 1);
        t.strides.insert(t.strides.begin(), 0);
      }
      if (s.transpose) {
        std::swap(t.shape[0], t.shape[1]);
        std::swap(t.strides[0], t.strides[1]);
      }
      t.data += row0 * t.strides[0] * elem;  // Rows [row0, row0 + count).
      t.shape[0] = count;
    }
    CopyToFloat(t, out);
    ReleaseTensorPages(t);
  });
  if (!stored.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", stored.message()));
  m->FoldLn0(ln0_w, ln0_b);
  return m;
}

std::unique_ptr<Model> Model::Random(const ModelConfig& config, uint64_t seed, MatrixType matrices) {
  std::unique_ptr<Model> m(new Model());
  m->config_ = config;
  m->source_ = absl::StrCat("random(seed=", seed, ")");
  const float *ln0_w = nullptr, *ln0_b = nullptr;
  std::vector<Slot> plan = m->Plan(/*time_first=*/false, &ln0_w, &ln0_b);
  m->matrices_ = matrices;
  for (Slot& s : plan) {
    if (s.matrix != nullptr && !s.transpose) s.type = SlotMatrixType(matrices, s);
  }
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  m->config_.parameter_count = 0;
  m->Store(plan, [&](const Slot& s, int row0, int count, float* out) {
    const int64_t n = count < 0 ? s.numel() : int64_t{count} * s.cols();  // In order: the stream is the tensor's.
    const bool is_ln_weight = absl::EndsWith(s.name, "ln0.weight") || absl::EndsWith(s.name, "ln1.weight") ||
                              absl::EndsWith(s.name, "ln2.weight") || absl::EndsWith(s.name, "ln_x.weight") ||
                              absl::EndsWith(s.name, "ln_out.weight");
    const float scale = s.shape.size() == 2 ? 1.0f / std::sqrt(static_cast<float>(s.cols())) : 0.5f;
    for (int64_t i = 0; i < n; ++i) out[i] = is_ln_weight ? 1.0f + 0.1f * u(rng) : scale * u(rng);
    m->config_.parameter_count += n;
  }).IgnoreError();  // Uniform weights in [-1, 1] always quantize.
  m->FoldLn0(ln0_w, ln0_b);
  return m;
}

std::vector<float> KrvLayerVectors(const Model& model, int layer) {
  const ModelConfig& c = model.config();
  const int C = c.n_embd;
  std::vector<float> out(static_cast<size_t>(kKrvVectors) * C, 0.0f);
  auto put = [&](KrvVector which, auto f) {
    for (int i = 0; i < C; ++i) out[static_cast<size_t>(which) * C + i] = f(i);
  };
  auto mixes = [&](std::initializer_list<std::pair<KrvVector, const float*>> list) {
    for (auto [which, mu] : list) {
      if (mu != nullptr) put(which, [mu = mu](int i) { return 1.0f - mu[i]; });
    }
  };
  if (c.arch == Architecture::kRwkv4) {
    const Rwkv4Layer& w = model.layer4(layer);
    put(kKrvDecay, [&](int i) { return -std::exp(w.time_decay[i]); });
    put(kKrvBonus, [&](int i) { return w.time_first[i]; });
    mixes({{kKrvMixK, w.mix_k}, {kKrvMixV, w.mix_v}, {kKrvMixR, w.mix_r}, {kKrvFfnMixK, w.ffn_mix_k},
           {kKrvFfnMixR, w.ffn_mix_r}});
    return out;
  }
  const Rwkv5Layer& w = model.layer5(layer);
  const int N = c.head_size;
  const bool per_channel = c.arch == Architecture::kRwkv5_2;  // 5.0 and 5.1: one per head.
  put(kKrvDecay, [&](int i) { return std::exp(-std::exp(w.time_decay[per_channel ? i : i / N])); });
  put(kKrvBonus, [&](int i) {
    const float u = w.bonus[per_channel ? i : i / N];
    return w.bonus_is_log ? std::exp(u) : u;
  });
  mixes({{kKrvMixK, w.mix_k}, {kKrvMixV, w.mix_v}, {kKrvMixR, w.mix_r}, {kKrvMixG, w.mix_g},
         {kKrvFfnMixK, w.ffn_mix_k}, {kKrvFfnMixR, w.ffn_mix_r}});
  return out;
}

}  // namespace rwkv
