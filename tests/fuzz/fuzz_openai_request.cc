// The OpenAI-compatible API's parsers, as the HTTP edge receives their input: byte 0 picks a
// /v1/chat/completions body (0), a /v1/completions body (1) or a --chat-template file (2); the
// rest is the JSON. Any body becomes a scheduler request or INVALID_ARGUMENT, never anything else;
// an accepted one holds only ids inside the vocabulary, sampling parameters that validate,
// images apart and inside the prompt, limits kept; every error renders as valid JSON, and an accepted template renders any chat.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "engine/sampler.h"
#include "nlohmann/json.hpp"
#include "server/http/openai_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rwkv::server;
  static const std::unique_ptr<rwkv::Tokenizer> tok =
      *rwkv::Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/byte-vocab.txt");
  static const RequestLimits limits = [] {
    RequestLimits l;
    l.vocab = 257;
    l.max_prompt_tokens = 512;
    l.max_tokens = 64;
    l.max_messages = 64;
    return l;
  }();
  static const VisionLimits vision = [] {
    VisionLimits v;
    v.tokens = 4;
    v.max_images = 3;
    v.image.max_bytes = 1 << 16;
    v.image.max_pixels = 64 * 64;
    return v;
  }();
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 3 == 2) {
    absl::StatusOr<ChatTemplate> t = ChatTemplate::Parse(body, "fuzz.json");
    if (!t.ok()) {
      if (t.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
      return 0;
    }
    const std::vector<ChatMessage> chat = {{"user", "hi\n\n\nthere"}, {"assistant", "ok"}};
    (void)t->Render(chat, *tok);
    return 0;
  }
  const auto endpoint = data[0] % 3 == 0 ? openai::Endpoint::kChat : openai::Endpoint::kCompletions;
  absl::StatusOr<openai::Request> r = openai::ParseRequest(body, endpoint, *tok, limits, ChatTemplate::World(), vision);
  if (!r.ok()) {
    if (r.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    if (r.status().message().size() > 512) std::abort();  // Messages never echo unbounded input.
    if (nlohmann::json::parse(openai::ErrorJson(r.status()), nullptr, false).is_discarded()) std::abort();
    return 0;
  }
  const SequenceRequest& s = r->seq;
  for (int32_t id : s.prompt) {
    if (id < 0 || id >= limits.vocab) std::abort();
  }
  for (int32_t id : s.stop_tokens) {
    if (id < 0 || id >= limits.vocab) std::abort();
  }
  if (s.prompt.size() > static_cast<size_t>(limits.max_prompt_tokens)) std::abort();
  int end = 0;  // Images (chat image_url parts): apart, inside the prompt, within the count limit.
  for (const PromptImage& im : s.images) {
    if (im.pixels == nullptr || im.offset < end || static_cast<size_t>(im.offset) + vision.tokens > s.prompt.size()) std::abort();
    end = im.offset + vision.tokens;
  }
  if (s.images.size() > static_cast<size_t>(vision.max_images)) std::abort();
  if (s.max_tokens < 1 || s.max_tokens > limits.max_tokens) std::abort();
  if (r->n < 1 || r->n > limits.max_choices || (r->n > 1 && !s.session_id.empty())) std::abort();
  if (r->top_logprobs < 0 || r->top_logprobs > limits.max_top_logprobs) std::abort();
  if (!rwkv::ValidateSamplingParams(s.sampling, limits.vocab).ok()) std::abort();
  return 0;
}
