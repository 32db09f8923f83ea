// The export format of a session's state: "RWKVSTAT", a little-endian u32 header length, a JSON
// header, then the payload (the slot's float32 values in the backend's layout, little-endian).
// The header names the model (fingerprint), architecture, dimensions, dtype, token count, the
// pending token and an FNV-1a 64 checksum of the payload; Decode refuses a state of another model
// (FAILED_PRECONDITION) and a corrupt one (DATA_LOSS).
#ifndef RWKV_SERVER_STATE_CODEC_H_
#define RWKV_SERVER_STATE_CODEC_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model.h"

namespace rwkv::server {

// Identity of a model's weights: a hash of its dimensions and a sample of its embedding.
std::string ModelFingerprint(const Model& model);

uint64_t Fnv1a64(std::string_view bytes);

struct ExportedState {
  std::vector<float> state;
  std::optional<int32_t> pending;
  int64_t token_count = 0;
};

struct StateCodec {
  std::string fingerprint;
  ModelConfig config;

  std::string Encode(std::span<const float> state, std::optional<int32_t> pending, int64_t token_count) const;
  absl::StatusOr<ExportedState> Decode(std::string_view bytes) const;
  // The largest valid export (for bounding an import before reading it all).
  size_t MaxBytes() const;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_STATE_CODEC_H_
