// Request validation from protobuf bytes, as the gRPC edge receives them: the first byte picks
// GenerateRequest or CreateSessionRequest; the rest is the message. Any message is turned into
// a scheduler request or refused with INVALID_ARGUMENT, never anything else, and an accepted
// one holds only ids inside the vocabulary and sampling parameters that validate.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "server/grpc/validation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<rwkv::Tokenizer> tok =
      *rwkv::Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/byte-vocab.txt");
  static const rwkv::server::RequestLimits limits = [] {
    rwkv::server::RequestLimits l;
    l.vocab = 257;
    l.max_prompt_tokens = 512;
    l.max_tokens = 64;
    return l;
  }();
  if (size == 0) return 0;
  absl::StatusOr<rwkv::server::SequenceRequest> r = absl::InvalidArgumentError("unparsed");
  if (data[0] & 1) {
    rwkv::v1::GenerateRequest req;
    if (!req.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    r = rwkv::server::ToSequenceRequest(req, *tok, limits, rwkv::server::ChatTemplate::World());
  } else {
    rwkv::v1::CreateSessionRequest req;
    if (!req.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    r = rwkv::server::ToCreateRequest(req, *tok, limits);
  }
  if (!r.ok()) {
    if (r.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    if (r.status().message().size() > 512) std::abort();  // Messages never echo unbounded input.
    return 0;
  }
  for (int32_t id : r->prompt) {
    if (id < 0 || id >= limits.vocab) std::abort();
  }
  if (r->prompt.size() > static_cast<size_t>(limits.max_prompt_tokens)) std::abort();
  if (!rwkv::ValidateSamplingParams(r->sampling, limits.vocab).ok()) std::abort();
  return 0;
}
