// The state file reader (export/import and the disk tier): header, every field's range, the
// checksum, the payload size, for a tiny RWKV-7 shape. Decode and DecodeHeader must agree: a
// file Decode accepts has a header DecodeHeader accepts, and it re-encodes to the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/core/state_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const rwkv::server::StateCodec codec = [] {
    rwkv::server::StateCodec c;
    c.fingerprint = "fuzz-fingerprint";
    c.config.arch = rwkv::Architecture::kRwkv7;
    c.config.n_layer = 2;
    c.config.n_embd = 32;
    c.config.n_att = 32;
    c.config.n_head = 2;
    c.config.head_size = 16;
    c.config.ffn_dim = 128;
    c.config.vocab = 256;
    return c;
  }();
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)codec.HeaderBytes(bytes);
  absl::StatusOr<rwkv::server::StateHeader> header = codec.DecodeHeader(bytes);
  absl::StatusOr<rwkv::server::ExportedState> state = codec.Decode(bytes);
  if (state.ok()) {
    if (!header.ok()) std::abort();
    if (state->state.size() * sizeof(float) != static_cast<size_t>(codec.config.StateBytes())) std::abort();
    (void)codec.Encode(state->state, *state);
  }
  return 0;
}
