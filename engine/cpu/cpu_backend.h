// The CPU backend: every RWKV generation (4, 5.x, 6, 7) on our packed GEMM (gemm.h) plus our own loops (kernels.h).
//
// All scratch is sized at construction for max_step_tokens tokens; Forward allocates nothing
// once its Logits buffer has grown to the batch. Thread safety: one owning thread.
#ifndef RWKV_ENGINE_CPU_CPU_BACKEND_H_
#define RWKV_ENGINE_CPU_CPU_BACKEND_H_

#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/gemm.h"

namespace rwkv {

class CpuBackend final : public Backend {
 public:
  // REQUIRES: options validated by CreateBackend; options validated by CreateBackend.
  CpuBackend(std::shared_ptr<const Model> model, const BackendOptions& options);

  std::string_view name() const override { return "cpu"; }
  bool takes_embedding_rows() const override { return true; }
  const ModelConfig& config() const override { return model_->config(); }
  StatePool& pool() override { return pool_; }
  int max_step_tokens() const override { return max_tokens_; }
  absl::Status Forward(std::span<const BatchEntry> batch, Logits* out) override;

 private:
  // Rows per step from which the elementwise loops and the recurrences use every thread.
  static constexpr int kParallelRows = 4;
  // A run of consecutive tokens of one entry processed in one internal step.
  struct Piece {
    int entry;
    int begin;  // First token index within the entry.
    int count;
  };
  void Step(std::span<const BatchEntry> batch, std::span<const Piece> pieces, Logits* out);
  // The token-shift mixes of one half-layer: outs[m][row] = z + (prev - z) * mixes[m], with prev
  // the row before in the same sequence or the state at `state_offset` of layer l; then saves
  // each piece's last row there.
  void TokenShift(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows,
                  int64_t state_offset, const float* const* mixes, float* const* outs, int n_mix);
  void TimeMix(int layer, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows);
  void ChannelMix(int layer, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows);
  // RWKV-6 (spec 5.2).
  void TimeMix6(int layer, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows);
  // The RWKV-5/6 recurrence over every piece and head (r_, d_, k_, v_ in, bonus u [C]), then the
  // group norm and, with `gate`, y_ *= g_ (already activated). Result in y_.
  void Wkv6Block(int layer, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows,
                 const float* u, const float* ln_x_w, const float* ln_x_b, bool gate);
  // RWKV-4 (spec 3.2).
  void TimeMix4(int layer, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows);
  // RWKV-5.x (spec 4.2).
  void TimeMix5(int layer, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows);
  // The RWKV-4/5/6 channel mix: x += sigmoid(Wr xr) * Wv relu^2(Wk xk), with token-shift mixes
  // mix_k and mix_r in this backend's convention (weight of the previous token).
  void ChannelMixKRV(int layer, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows,
                     const float* ln_w, const float* ln_b, const float* mix_k, const float* mix_r,
                     const PackedMatrix& key, const PackedMatrix& receptance, const PackedMatrix& value);
  // RWKV-4 and -5 per-layer vectors, derived at construction (KrvLayerVectors, engine/model.h).
  const float* Derived(int layer, KrvVector which) const {
    return derived_.data() + (int64_t{layer} * kKrvVectors + which) * model_->config().n_embd;
  }
  void Head(std::span<const BatchEntry> batch, std::span<const Piece> pieces, Logits* out);
  // Y[rows, W.n] (+)= X[rows, W.k] W^T (cpu::Linear with this backend's threads).
  void MatMul(const float* X, int rows, const PackedMatrix& W, float* Y, int ldy, bool accumulate,
              cpu::Activation act = cpu::Activation::kNone) const;
  // out[r] = LayerNorm(in[r]) over `rows` rows of the embedding width, on every thread.
  void LayerNorm(const float* in, int rows, const float* w, const float* b, float* out) const;
  // Runs fn(piece index, head) for every piece and head of the step, on every thread when the step
  // is big enough (the recurrences: sequential within a piece, independent across pieces and heads).
  template <typename Fn>
  void ForEachPieceHead(int pieces, int heads, int rows, Fn fn) {
    const int tasks = pieces * heads;
#pragma omp parallel for schedule(static) num_threads(threads_) if (rows >= kParallelRows && tasks > 1)
    for (int t = 0; t < tasks; ++t) fn(t / heads, t % heads);
  }
  // Layer l's part of a slot's state (spec 7): [s_att (C)][S (H*N*N), or aa bb pp (3C) for v4][s_ffn (C)].
  float* LayerState(int slot, int layer);

  std::shared_ptr<const Model> model_;
  HostStatePool pool_;
  int max_tokens_;
  int threads_;
  std::vector<Piece> pieces_;       // Reused by Forward.
  std::vector<int> done_;           // Tokens already processed per entry, reused by Forward.
  std::vector<int> piece_row_;      // First row of each piece in the current step.
  std::vector<int> row_piece_;      // Piece of each row [max_tokens].
  std::vector<uint8_t> row_first_;  // Whether a row is its piece's first [max_tokens].
  // Scratch, [max_tokens, width] each.
  std::vector<float> x_, z_, xr_, xw_, xk_, xv_, xa_, xg_, r_, k_, v_, d_, alpha_, g_, kk_, b_, y_, v_first_;
  std::vector<float> lora_, ffn_;  // [max_tokens, max LoRA rank], [max_tokens, F]
  std::vector<float> head_in_;     // [max_tokens, C]: normalised rows whose logits are wanted.
  std::vector<float> ones_;        // [C] of 1: a token-shift "mix" that yields the previous row.
  std::vector<float> derived_;     // RWKV-4/5: see Derived(); empty otherwise.
};

}  // namespace rwkv

#endif  // RWKV_ENGINE_CPU_CPU_BACKEND_H_
