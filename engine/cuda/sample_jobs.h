// Host-side packing of device sampling: one job per sampled row, with its parameters and the
// offsets of its logit-bias and ban lists in shared arrays. Plain C++, unit-tested without a GPU.
#ifndef RWKV_ENGINE_CUDA_SAMPLE_JOBS_H_
#define RWKV_ENGINE_CUDA_SAMPLE_JOBS_H_

#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/step_plan.h"
#include "engine/sampler.h"

namespace rwkv::cuda {

struct SampleJob {         // Copied to the device as is: plain data only.
  int32_t logits_row = 0;  // Row of the step's device logits.
  int32_t slot = 0;        // Whose penalty counts.
  int32_t out = 0;         // Index in the tokens output; < 0: no draw (a padding row or one sampled on the host).
  int32_t first = 0;       // Counts start at zero.
  float temperature = 1, top_p = 1, min_p = 0, presence = 0, frequency = 0, decay = 1;
  int32_t top_k = 0;
  int32_t bias_begin = 0, bias_count = 0, ban_begin = 0, ban_count = 0;
  double uniform = 0;  // The sequence's uniform draw, as the host sampler would use it.
  int32_t greedy = 0;
};

// Whether batch entry `entry` has its token drawn on the device this step.
inline bool SamplesOnDevice(std::span<const DeviceSample> sampling, int entry) {
  return entry >= 0 && !sampling.empty() && sampling[entry].sample;
}

struct SampleJobs {
  std::vector<SampleJob> jobs;
  std::vector<int32_t> bias_ids, ban_ids;
  std::vector<float> bias_values;

  void Clear() {
    jobs.clear();
    bias_ids.clear();
    ban_ids.clear();
    bias_values.clear();
  }
  void Add(int logits_row, int slot, int out, bool first, const SamplingParams& p, double uniform);
  // A job that draws nothing, holding a place in a graph's fixed-size job list.
  void AddSkip(int logits_row);
  // The step's jobs: one for each head row of `plan` whose entry samples on the device, and with
  // `skips` a skip job for every other head row (padding included), as a replayed graph samples a
  // job for every row it was captured with.
  void Fill(const StepPlan& plan, std::span<const DeviceSample> sampling, bool skips);
};

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_SAMPLE_JOBS_H_
