#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/cpu/gemm.h"
#include "engine/cpu/kernels.h"
#include "engine/status.h"

namespace rwkv {
namespace {

// d = exp(-e^{-1/2} * sigmoid(w)) (spec 6.2).
const float kDecayScale = static_cast<float>(std::exp(-0.5));

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

CpuBackend::CpuBackend(std::shared_ptr<const Model> model, const BackendOptions& options)
    : model_(std::move(model)),
      pool_(options.pool_slots, model_->config().StateFloats()),
      max_tokens_(options.max_step_tokens),
      threads_(options.threads) {
  cpu::SetMathThreads(options.threads);
  const ModelConfig& c = model_->config();
  const size_t tc = static_cast<size_t>(max_tokens_) * c.n_embd;
  for (auto* buf : {&x_, &z_, &xr_, &xw_, &xk_, &xv_, &xa_, &xg_, &r_, &k_, &v_, &d_, &alpha_, &g_, &kk_, &b_, &y_,
                    &v_first_, &head_in_}) {
    buf->assign(tc, 0.0f);
  }
  const int rank = std::max({c.lora_decay, c.lora_iclr, c.lora_value, c.lora_gate, 1});
  lora_.assign(static_cast<size_t>(max_tokens_) * rank, 0.0f);
  ffn_.assign(static_cast<size_t>(max_tokens_) * c.ffn_dim, 0.0f);
  pieces_.reserve(options.pool_slots);
  done_.reserve(options.pool_slots);
}

void CpuBackend::MatMul(const float* X, int rows, const PackedMatrix& W, float* Y, int ldy, bool accumulate) const {
  cpu::Linear(X, rows, W, Y, ldy, accumulate, threads_);
}

float* CpuBackend::LayerState(int slot, int layer) {
  const ModelConfig& c = model_->config();
  const int64_t per_layer = 2 * int64_t{c.n_embd} + int64_t{c.n_head} * c.head_size * c.head_size;
  return pool_.slot_data(slot) + layer * per_layer;
}

absl::Status CpuBackend::Forward(std::span<const BatchEntry> batch, Logits* out) {
  RWKV_RETURN_IF_ERROR(ValidateBatch(batch));
  out->Prepare(batch, model_->config().vocab);
  done_.assign(batch.size(), 0);
  while (true) {
    // Fill one step with as many pending tokens as the scratch holds, entry by entry.
    pieces_.clear();
    int used = 0;
    for (size_t e = 0; e < batch.size() && used < max_tokens_; ++e) {
      const int remaining = static_cast<int>(batch[e].tokens.size()) - done_[e];
      if (remaining == 0) continue;
      const int take = std::min(remaining, max_tokens_ - used);
      pieces_.push_back({static_cast<int>(e), done_[e], take});
      used += take;
    }
    if (pieces_.empty()) break;
    Step(batch, pieces_, out);
    for (const Piece& p : pieces_) done_[p.entry] += p.count;
  }
  return absl::OkStatus();
}

void CpuBackend::Step(std::span<const BatchEntry> batch, std::span<const Piece> pieces, Logits* out) {
  const ModelConfig& c = model_->config();
  const int C = c.n_embd;
  int rows = 0;
  for (const Piece& p : pieces) {
    for (int t = 0; t < p.count; ++t, ++rows) {
      const int32_t tok = batch[p.entry].tokens[p.begin + t];
      std::memcpy(x_.data() + static_cast<size_t>(rows) * C, model_->emb() + static_cast<size_t>(tok) * C,
                  C * sizeof(float));
    }
  }
  for (int l = 0; l < c.n_layer; ++l) {
    TimeMix(l, batch, pieces, rows);
    ChannelMix(l, batch, pieces, rows);
  }
  Head(batch, pieces, out);
}

void CpuBackend::TimeMix(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows) {
  const ModelConfig& c = model_->config();
  const Rwkv7Layer& w = model_->layer(l);
  const int C = c.n_embd, H = c.n_head, N = c.head_size;
  const int64_t n = static_cast<int64_t>(rows) * C;

  cpu::LayerNormRows(x_.data(), rows, C, w.ln1_w, w.ln1_b, z_.data());
  // Token shift: each row mixes with the previous token of its own sequence (the slot's s_att
  // for the first row of a piece), then the slot keeps the piece's last normalised row.
  int row = 0;
  for (const Piece& p : pieces) {
    float* s_att = LayerState(batch[p.entry].slot, l);
    for (int t = 0; t < p.count; ++t, ++row) {
      const float* cur = z_.data() + static_cast<int64_t>(row) * C;
      const float* prev = t == 0 ? s_att : cur - C;
      const int64_t o = static_cast<int64_t>(row) * C;
      for (int i = 0; i < C; ++i) {
        const float z = cur[i], delta = prev[i] - z;
        xr_[o + i] = z + delta * w.x_r[i];
        xw_[o + i] = z + delta * w.x_w[i];
        xk_[o + i] = z + delta * w.x_k[i];
        xv_[o + i] = z + delta * w.x_v[i];
        xa_[o + i] = z + delta * w.x_a[i];
        xg_[o + i] = z + delta * w.x_g[i];
      }
    }
    std::memcpy(s_att, z_.data() + static_cast<int64_t>(row - 1) * C, C * sizeof(float));
  }

  MatMul(xr_.data(), rows, w.receptance, r_.data(), C, false);
  MatMul(xk_.data(), rows, w.key, k_.data(), C, false);
  MatMul(xv_.data(), rows, w.value, v_.data(), C, false);

  MatMul(xw_.data(), rows, w.w1, lora_.data(), c.lora_decay, false);
  cpu::TanhInPlace(lora_.data(), static_cast<int64_t>(rows) * c.lora_decay);
  MatMul(lora_.data(), rows, w.w2, d_.data(), C, false);
  MatMul(xa_.data(), rows, w.a1, lora_.data(), c.lora_iclr, false);
  MatMul(lora_.data(), rows, w.a2, alpha_.data(), C, false);
  MatMul(xg_.data(), rows, w.g1, lora_.data(), c.lora_gate, false);
  cpu::SigmoidInPlace(lora_.data(), static_cast<int64_t>(rows) * c.lora_gate);
  MatMul(lora_.data(), rows, w.g2, g_.data(), C, false);
  if (l == 0) {
    std::memcpy(v_first_.data(), v_.data(), n * sizeof(float));
  } else {
    MatMul(xv_.data(), rows, w.v1, lora_.data(), c.lora_value, false);
    MatMul(lora_.data(), rows, w.v2, b_.data(), C, false);  // b_ as scratch for the mix gate.
    for (int64_t o = 0; o < n; ++o) {
      const int i = static_cast<int>(o % C);
      v_[o] += (v_first_[o] - v_[o]) * Sigmoid(w.v0[i] + b_[o]);
    }
  }
  for (int64_t o = 0; o < n; ++o) {
    const int i = static_cast<int>(o % C);
    d_[o] = std::exp(-kDecayScale * Sigmoid(w.w0[i] + d_[o]));
    alpha_[o] = Sigmoid(w.a0[i] + alpha_[o]);
    kk_[o] = k_[o] * w.k_k[i];
  }
  // kk: L2-normalised per head, from k before its in-context-rate adjustment (spec pitfall 7).
  for (int64_t h0 = 0; h0 < n; h0 += N) {
    float ss = 0.0f;
    for (int j = 0; j < N; ++j) ss += kk_[h0 + j] * kk_[h0 + j];
    const float inv = 1.0f / std::max(std::sqrt(ss), 1e-12f);
    for (int j = 0; j < N; ++j) {
      const int64_t o = h0 + j;
      const float kn = kk_[o] * inv;
      kk_[o] = -kn;               // a = -kk
      b_[o] = kn * alpha_[o];     // b = kk * alpha
      k_[o] *= 1.0f + (alpha_[o] - 1.0f) * w.k_a[o % C];
    }
  }
  row = 0;
  for (const Piece& p : pieces) {
    float* S = LayerState(batch[p.entry].slot, l) + C;
    const int64_t o = static_cast<int64_t>(row) * C;
    for (int h = 0; h < H; ++h) {
      const int64_t hc = o + h * N;
      cpu::Wkv7Head(S + static_cast<int64_t>(h) * N * N, N, p.count, C, r_.data() + hc, d_.data() + hc,
                    k_.data() + hc, v_.data() + hc, kk_.data() + hc, b_.data() + hc, y_.data() + hc);
    }
    row += p.count;
  }
  cpu::GroupNormRows(y_.data(), rows, C, N, w.ln_x_w, w.ln_x_b);
  for (int64_t h0 = 0; h0 < n; h0 += N) {
    const float* rk = w.r_k + h0 % C;
    float bonus = 0.0f;
    for (int j = 0; j < N; ++j) bonus += r_[h0 + j] * k_[h0 + j] * rk[j];
    for (int j = 0; j < N; ++j) y_[h0 + j] = (y_[h0 + j] + bonus * v_[h0 + j]) * g_[h0 + j];
  }
  MatMul(y_.data(), rows, w.output, x_.data(), C, true);
}

void CpuBackend::ChannelMix(int l, std::span<const BatchEntry> batch, std::span<const Piece> pieces, int rows) {
  const ModelConfig& c = model_->config();
  const Rwkv7Layer& w = model_->layer(l);
  const int C = c.n_embd;
  cpu::LayerNormRows(x_.data(), rows, C, w.ln2_w, w.ln2_b, z_.data());
  int row = 0;
  const int64_t state_off = C + int64_t{c.n_head} * c.head_size * c.head_size;
  for (const Piece& p : pieces) {
    float* s_ffn = LayerState(batch[p.entry].slot, l) + state_off;
    for (int t = 0; t < p.count; ++t, ++row) {
      const float* cur = z_.data() + static_cast<int64_t>(row) * C;
      const float* prev = t == 0 ? s_ffn : cur - C;
      float* xk = xk_.data() + static_cast<int64_t>(row) * C;
      for (int i = 0; i < C; ++i) xk[i] = cur[i] + (prev[i] - cur[i]) * w.ffn_x_k[i];
    }
    std::memcpy(s_ffn, z_.data() + static_cast<int64_t>(row - 1) * C, C * sizeof(float));
  }
  MatMul(xk_.data(), rows, w.ffn_key, ffn_.data(), c.ffn_dim, false);
  cpu::ReluSquareInPlace(ffn_.data(), static_cast<int64_t>(rows) * c.ffn_dim);
  MatMul(ffn_.data(), rows, w.ffn_value, x_.data(), C, true);
}

void CpuBackend::Head(std::span<const BatchEntry> batch, std::span<const Piece> pieces, Logits* out) {
  const ModelConfig& c = model_->config();
  const int C = c.n_embd, V = c.vocab;
  // Gather the rows whose logits are wanted, normalised, then run the head GEMM over each run of
  // rows that are consecutive in `out` (one GEMM for a plain decode batch).
  int row = 0, gathered = 0, run_start = 0, run_dest = -1, next_dest = -1;
  auto flush = [&]() {
    if (gathered > run_start) {
      MatMul(head_in_.data() + static_cast<int64_t>(run_start) * C, gathered - run_start, model_->head(),
             out->MutableRow(0, 0) + static_cast<int64_t>(run_dest) * V, V, false);
    }
    run_start = gathered;
  };
  for (const Piece& p : pieces) {
    const BatchEntry& e = batch[p.entry];
    const bool last_piece = p.begin + p.count == static_cast<int>(e.tokens.size());
    for (int t = 0; t < p.count; ++t, ++row) {
      if (!e.all_logits && !(last_piece && t == p.count - 1)) continue;
      const int dest = out->first_row(p.entry) + (e.all_logits ? p.begin + t : 0);
      if (dest != next_dest) {
        flush();
        run_dest = dest;
      }
      cpu::LayerNormRows(x_.data() + static_cast<int64_t>(row) * C, 1, C, model_->ln_out_w(), model_->ln_out_b(),
                         head_in_.data() + static_cast<int64_t>(gathered) * C);
      ++gathered;
      next_dest = dest + 1;
    }
  }
  flush();
}

}  // namespace rwkv
