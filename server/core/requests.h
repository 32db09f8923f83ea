// What every edge (gRPC, HTTP) checks in a request before it becomes a SequenceRequest: the
// limits, token ids, prompt sizes, stop strings, and the chat template's part. Errors are
// INVALID_ARGUMENT naming the field (as the edge's API spells it) and the limit.
#ifndef RWKV_SERVER_CORE_REQUESTS_H_
#define RWKV_SERVER_CORE_REQUESTS_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"
#include "server/core/chat_template.h"
#include "server/core/sequence.h"
#include "server/core/vision.h"

namespace rwkv::server {

struct RequestLimits {
  int vocab = 0;
  size_t max_request_id_bytes = 128;
  int max_prompt_tokens = 65536;
  int max_tokens = 4096;
  int max_stop_strings = 16;
  int max_stop_string_bytes = 256;
  int max_top_logprobs = 20;
  int max_choices = 16;             // OpenAI's n.
  int max_messages = 4096;          // Chat messages in one request.
};

// Tokens a request generates when it does not say (every edge).
inline int DefaultMaxTokens(const RequestLimits& limits) { return limits.max_tokens < 256 ? limits.max_tokens : 256; }

// Every id in [0, vocab): "field[i] is X, outside the vocabulary [0, V)".
absl::Status CheckTokenIds(std::span<const int32_t> ids, std::string_view field, int vocab);
// `text` tokenized, refused beyond max_prompt_tokens (huge texts before tokenizing them).
absl::StatusOr<std::vector<int32_t>> EncodePrompt(std::string_view text, std::string_view field,
                                                  const Tokenizer& tokenizer, const RequestLimits& limits);
absl::Status CheckPromptLength(size_t tokens, const RequestLimits& limits);
// A request's image count: INVALID_ARGUMENT naming `field` when the model takes no images or past
// vision.max_images.
absl::Status CheckImageCount(size_t images, std::string_view field, const VisionLimits& vision);
// The image files a request carries, decoded and digested: at most vision.max_images, each
// checked by ReadPromptImage; `field`[i] names one in errors.
absl::StatusOr<std::vector<PromptImage>> ReadImages(std::span<const std::string_view> files, std::string_view field,
                                                    const VisionLimits& vision);
// The marker that places an image in a text prompt.
inline constexpr std::string_view kImageMarker = "<image>";
// `text` as out->prompt with out->images: one image where each "<image>" marker is (the text
// around the markers tokenized piece by piece, as VisualRWKV's tokenize_with_image_token does).
// Without images the text is tokenized whole, markers and all. INVALID_ARGUMENT when the counts of
// markers and images differ, or for the prompt's length with vision.tokens per image.
absl::Status EncodePromptWithImages(std::string_view text, std::string_view field, std::vector<PromptImage> images,
                                    std::string_view images_field, const Tokenizer& tokenizer,
                                    const RequestLimits& limits, const VisionLimits& vision, SequenceRequest* out);
// max_tokens in [1, limit]: "field is X; it must be in [1, L]".
absl::Status CheckMaxTokens(int64_t max_tokens, std::string_view field, const RequestLimits& limits);
// top_logprobs in [0, limit].
absl::Status CheckTopLogprobs(int64_t top, std::string_view field, const RequestLimits& limits);
// Count, lengths (1..limit bytes) and UTF-8.
absl::Status CheckStopStrings(std::span<const std::string> stops, std::string_view field, const RequestLimits& limits);
// Chat messages through the template into `out`: prompt, message boundaries for the prefix
// cache, the reply's cache entry, the template's stop strings (after the caller's), trimming.
// `images` are the messages' images in order (ChatMessage::images of each, message by message).
absl::Status ApplyChat(std::span<const ChatMessage> messages, std::string_view field, const ChatTemplate& chat,
                       const Tokenizer& tokenizer, const RequestLimits& limits, SequenceRequest* out,
                       std::vector<PromptImage> images = {}, int image_tokens = 0);

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_REQUESTS_H_
