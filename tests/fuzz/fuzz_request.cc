// Request validation from protobuf bytes, as the gRPC edge receives them: the first byte picks
// GenerateRequest or CreateSessionRequest; the rest is the message. Any message is turned into
// a scheduler request or refused with INVALID_ARGUMENT, never anything else, and an accepted
// one holds only ids inside the vocabulary, sampling parameters that validate, and images that
// fit the prompt apart from each other (4 tokens each; a new session's prompt never ends in one).
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
  static const rwkv::server::VisionLimits vision = [] {
    rwkv::server::VisionLimits v;
    v.tokens = 4;
    v.max_images = 3;
    v.image.max_bytes = 1 << 16;
    v.image.max_pixels = 64 * 64;
    return v;
  }();
  if (size == 0) return 0;
  absl::StatusOr<rwkv::server::SequenceRequest> r = absl::InvalidArgumentError("unparsed");
  if (data[0] & 1) {
    rwkv::v1::GenerateRequest req;
    if (!req.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    r = rwkv::server::ToSequenceRequest(req, *tok, limits, rwkv::server::ChatTemplate::World(), vision);
  } else {
    rwkv::v1::CreateSessionRequest req;
    if (!req.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    r = rwkv::server::ToCreateRequest(req, *tok, limits, vision);
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
  int end = 0;
  for (const rwkv::server::PromptImage& im : r->images) {
    if (im.pixels == nullptr || im.offset < end || static_cast<size_t>(im.offset) + vision.tokens > r->prompt.size()) std::abort();
    end = im.offset + vision.tokens;
  }
  if (r->images.size() > static_cast<size_t>(vision.max_images)) std::abort();
  if (!(data[0] & 1) && !r->images.empty() && static_cast<size_t>(end) == r->prompt.size()) std::abort();
  if (!rwkv::ValidateSamplingParams(r->sampling, limits.vocab).ok()) std::abort();
  return 0;
}
