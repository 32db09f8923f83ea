// Maps other publishers' tensor names to the official RWKV names at load time.
#ifndef RWKV_ENGINE_NAME_MAP_H_
#define RWKV_ENGINE_NAME_MAP_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/tensor_file.h"

namespace rwkv {

// If the tensors use the Hugging Face fla-hub RWKV-7 names (model.layers.N.attn.r_proj ...), renames
// them to the official ones (blocks.N.att.receptance ...) and turns the transposed LoRA matrices
// back into [in, out] views (no copy). A VisualRWKV checkpoint (the language model under "rwkv.",
// the vision encoder under "vit." and "proj.") becomes its language model's tensors, unprefixed.
// Official names pass through unchanged.
// Fails with INVALID_ARGUMENT naming `path` and the first name it cannot map.
absl::Status MapToOfficialNames(const std::string& path, std::vector<TensorInfo>* tensors);

}  // namespace rwkv

#endif  // RWKV_ENGINE_NAME_MAP_H_
