#include "engine/cuda/sample_jobs.h"

namespace rwkv::cuda {

void SampleJobs::Add(int logits_row, int slot, int out, bool first, const SamplingParams& p, double uniform) {
  SampleJob j;
  j.logits_row = logits_row;
  j.slot = slot;
  j.out = out;
  j.first = first;
  j.temperature = p.temperature;
  j.top_p = p.top_p;
  j.min_p = p.min_p;
  j.presence = p.presence_penalty;
  j.frequency = p.frequency_penalty;
  j.decay = p.penalty_decay;
  j.top_k = p.top_k;
  j.uniform = uniform;
  j.greedy = p.temperature == 0 || p.top_p == 0;  // Sampler's rule 3.
  j.bias_begin = static_cast<int32_t>(bias_ids.size());
  for (const auto& [id, v] : p.logit_bias) {
    bias_ids.push_back(id);
    bias_values.push_back(v);
  }
  j.bias_count = static_cast<int32_t>(bias_ids.size()) - j.bias_begin;
  j.ban_begin = static_cast<int32_t>(ban_ids.size());
  ban_ids.insert(ban_ids.end(), p.banned_tokens.begin(), p.banned_tokens.end());
  j.ban_count = static_cast<int32_t>(ban_ids.size()) - j.ban_begin;
  jobs.push_back(j);
}

void SampleJobs::Fill(const StepPlan& plan, std::span<const DeviceSample> sampling, bool skips) {
  Clear();
  for (size_t i = 0; i < plan.head_rows.size(); ++i) {
    const int piece = plan.row_piece[plan.head_rows[i]];
    const int e = plan.piece_entry[piece];
    if (SamplesOnDevice(sampling, e)) {
      const DeviceSample& d = sampling[e];
      Add(static_cast<int>(i), plan.piece_slot[piece], e, d.first, *d.params, d.uniform);
    } else if (skips) {
      AddSkip(static_cast<int>(i));
    }
  }
}

void SampleJobs::AddSkip(int logits_row) {
  SampleJob j;
  j.logits_row = logits_row;
  j.out = -1;
  jobs.push_back(j);
}

}  // namespace rwkv::cuda
