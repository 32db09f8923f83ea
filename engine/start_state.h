// Initial states from state-tuning files (spec section 7): `blocks.N.att.time_state`, [H, N, N]
// per layer, stored [H][value][key]. State tuning trains only these tensors; a session that starts
// from them behaves like the tuned model without touching the weights.
#ifndef RWKV_ENGINE_START_STATE_H_
#define RWKV_ENGINE_START_STATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"

namespace rwkv {

// Reads a state-tuning file (.pth or .safetensors) for a model of `config` (RWKV-6 or RWKV-7) into
// a whole slot state in the backends' layout: per layer the WKV state S (RWKV-7 value-major as in
// the file; RWKV-6 key-major, so transposed), token-shift vectors zero. INVALID_ARGUMENT naming the
// file and the tensor for a missing, misshapen or unexpected tensor, or another generation.
absl::StatusOr<std::vector<float>> LoadStateTuning(const std::string& path, const ModelConfig& config);

}  // namespace rwkv

#endif  // RWKV_ENGINE_START_STATE_H_
