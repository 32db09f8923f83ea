// The state file format, one for exports, imports and the disk tier of sessions (format 2):
//
//   "RWKVSTAT" | header length (u32 LE) | header (JSON object) | payload | CRC-32 (u32 LE)
//
// The payload is the slot's float32 values in the backend's layout, little-endian. The header
// names the model (fingerprint, description), architecture, dimensions, dtype, payload bytes, the
// token count, the pending token and, for a stored session, its id and wall-clock times. The
// trailing CRC-32 (zlib's) covers every byte before it, header included.
//
// Decode checks, in this order: magic, header length, header JSON, every header field's type and
// range, the model (FAILED_PRECONDITION naming both models, before any size check), payload size,
// checksum. A truncated state at any length is DATA_LOSS; data that is not a state at all is
// INVALID_ARGUMENT. Format 1 (payload-only FNV-1a checksum in the header) is still read.
#ifndef RWKV_SERVER_CORE_STATE_CODEC_H_
#define RWKV_SERVER_CORE_STATE_CODEC_H_

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

// What a state file says besides the state itself.
struct StateHeader {
  std::optional<int32_t> pending;  // The last token of the last turn, not yet fed.
  int64_t token_count = 0;         // Tokens the state covers, the pending one included.
  std::string session_id;          // Empty when the file names no session.
  int64_t created_unix_ms = 0;     // 0 = not recorded.
  int64_t last_used_unix_ms = 0;
};

struct ExportedState : StateHeader {
  std::vector<float> state;
};

struct StateCodec {
  std::string fingerprint;
  ModelConfig config;

  // Bytes of the fixed prefix (magic and header length) that HeaderBytes needs first.
  static constexpr size_t kPrefixBytes = 12;
  // Given at least the first kPrefixBytes of a state, how many leading bytes hold the prefix and
  // the header. DATA_LOSS / INVALID_ARGUMENT as Decode.
  absl::StatusOr<size_t> HeaderBytes(std::string_view prefix) const;
  // The header alone, from at least the first HeaderBytes() bytes: every check of Decode but the
  // payload size and the checksum.
  absl::StatusOr<StateHeader> DecodeHeader(std::string_view prefix) const;

  std::string Encode(std::span<const float> state, const StateHeader& header) const;
  absl::StatusOr<ExportedState> Decode(std::string_view bytes) const;
  // The largest valid state (for bounding an import before reading it all).
  size_t MaxBytes() const;

 private:
  struct Layout {
    size_t header_end = 0;
    int format = 0;
    std::string fnv1a64;  // Format 1: the payload checksum the header carries.
  };
  absl::StatusOr<StateHeader> ParseHeader(std::string_view bytes, Layout* layout) const;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_STATE_CODEC_H_
