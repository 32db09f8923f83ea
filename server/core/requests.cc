#include "server/core/requests.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/absl_compat.h"
#include "engine/status.h"

namespace rwkv::server {

absl::Status CheckTokenIds(std::span<const int32_t> ids, std::string_view field, int vocab) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s[%d] is %d, outside the vocabulary [0, %d)", AV(field), i, ids[i], vocab));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPromptLength(size_t tokens, const RequestLimits& limits) {
  if (tokens > static_cast<size_t>(limits.max_prompt_tokens)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("prompt is %d tokens; max_prompt_tokens is %d", tokens, limits.max_prompt_tokens));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> EncodePrompt(std::string_view text, std::string_view field,
                                                  const Tokenizer& tokenizer, const RequestLimits& limits) {
  // Bytes bound the token count from above, so a huge text is refused before tokenizing it.
  if (text.size() > static_cast<size_t>(limits.max_prompt_tokens) * 64) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s is %d bytes; the limit is %d tokens", AV(field), text.size(), limits.max_prompt_tokens));
  }
  std::vector<int32_t> ids = tokenizer.Encode(text);
  RWKV_RETURN_IF_ERROR(CheckPromptLength(ids.size(), limits));
  return ids;
}

absl::Status CheckImageCount(size_t images, std::string_view field, const VisionLimits& vision) {
  if (images == 0) return absl::OkStatus();
  if (vision.tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(AV(field), ": this server's model takes no images (it has no VisualRWKV vision encoder)"));
  }
  if (images > static_cast<size_t>(vision.max_images)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s has %d images; the limit is %d a request", AV(field), images, vision.max_images));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PromptImage>> ReadImages(std::span<const std::string_view> files, std::string_view field,
                                                    const VisionLimits& vision) {
  std::vector<PromptImage> out;
  RWKV_RETURN_IF_ERROR(CheckImageCount(files.size(), field, vision));
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string at = absl::StrFormat("%s[%d]", AV(field), i);
    RWKV_ASSIGN_OR_RETURN(PromptImage im, ReadPromptImage(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(
                                                                                       files[i].data()),
                                                                                   files[i].size()),
                                                          at, vision));
    out.push_back(std::move(im));
  }
  return out;
}

absl::Status EncodePromptWithImages(std::string_view text, std::string_view field, std::vector<PromptImage> images,
                                    std::string_view images_field, const Tokenizer& tokenizer,
                                    const RequestLimits& limits, const VisionLimits& vision, SequenceRequest* out) {
  if (images.empty()) {
    RWKV_ASSIGN_OR_RETURN(out->prompt, EncodePrompt(text, field, tokenizer, limits));
    return absl::OkStatus();
  }
  std::vector<std::string_view> pieces;
  for (size_t at = 0;;) {
    const size_t m = text.find(kImageMarker, at);
    pieces.push_back(text.substr(at, m == std::string_view::npos ? std::string_view::npos : m - at));
    if (m == std::string_view::npos) break;
    at = m + kImageMarker.size();
  }
  if (pieces.size() - 1 != images.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s has %d \"%s\" markers and %s has %d images; each image goes where a marker is", AV(field),
        pieces.size() - 1, AV(kImageMarker), AV(images_field), images.size()));
  }
  if (text.size() > static_cast<size_t>(limits.max_prompt_tokens) * 64) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s is %d bytes; the limit is %d tokens", AV(field), text.size(), limits.max_prompt_tokens));
  }
  out->prompt.clear();
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::vector<int32_t> ids = tokenizer.Encode(pieces[i]);
    out->prompt.insert(out->prompt.end(), ids.begin(), ids.end());
    if (i + 1 == pieces.size()) break;
    images[i].offset = static_cast<int>(out->prompt.size());
    out->prompt.insert(out->prompt.end(), static_cast<size_t>(vision.tokens), kImagePlaceholder);
  }
  RWKV_RETURN_IF_ERROR(CheckPromptLength(out->prompt.size(), limits));
  out->images = std::move(images);
  return absl::OkStatus();
}

absl::Status CheckMaxTokens(int64_t max_tokens, std::string_view field, const RequestLimits& limits) {
  if (max_tokens < 1 || max_tokens > limits.max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s is %d; it must be in [1, %d]", AV(field), max_tokens, limits.max_tokens));
  }
  return absl::OkStatus();
}

absl::Status CheckTopLogprobs(int64_t top, std::string_view field, const RequestLimits& limits) {
  if (top < 0 || top > limits.max_top_logprobs) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s is %d; it must be in [0, %d]", AV(field), top, limits.max_top_logprobs));
  }
  return absl::OkStatus();
}

absl::Status CheckStopStrings(std::span<const std::string> stops, std::string_view field, const RequestLimits& limits) {
  if (stops.size() > static_cast<size_t>(limits.max_stop_strings)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s has %d entries; the limit is %d", AV(field), stops.size(), limits.max_stop_strings));
  }
  for (size_t i = 0; i < stops.size(); ++i) {
    const std::string& ss = stops[i];
    if (ss.empty() || ss.size() > static_cast<size_t>(limits.max_stop_string_bytes)) {
      return absl::InvalidArgumentError(absl::StrFormat("%s[%d] is %d bytes; it must be 1..%d", AV(field), i, ss.size(),
                                                        limits.max_stop_string_bytes));
    }
    std::string valid;
    if (AppendValidUtf8(ss, &valid) != ss.size() || valid != ss) {
      return absl::InvalidArgumentError(absl::StrFormat("%s[%d] is not valid UTF-8", AV(field), i));
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyChat(std::span<const ChatMessage> messages, std::string_view field, const ChatTemplate& chat,
                       const Tokenizer& tokenizer, const RequestLimits& limits, SequenceRequest* out,
                       std::vector<PromptImage> images, int image_tokens) {
  if (messages.size() > static_cast<size_t>(limits.max_messages)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s has %d messages; the limit is %d", AV(field), messages.size(), limits.max_messages));
  }
  size_t bytes = 0;
  for (const ChatMessage& m : messages) bytes += m.content.size();
  if (bytes > static_cast<size_t>(limits.max_prompt_tokens) * 64) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s are %d bytes; the limit is %d tokens", AV(field), bytes, limits.max_prompt_tokens));
  }
  const std::string f(field);
  size_t image_count = 0;
  for (const ChatMessage& m : messages) image_count += static_cast<size_t>(std::max(m.images, 0));
  if (image_count != images.size()) {
    return absl::InternalError(absl::StrFormat("%s: %d images counted in the messages, %d read", AV(field), image_count,
                                               images.size()));
  }
  RWKV_ASSIGN_OR_RETURN(ChatPrompt p, chat.Render(messages, tokenizer, f.c_str(), image_tokens));
  RWKV_RETURN_IF_ERROR(CheckPromptLength(p.tokens.size(), limits));
  for (size_t i = 0; i < images.size(); ++i) images[i].offset = p.images[i];
  out->images = std::move(images);
  out->prompt = std::move(p.tokens);
  out->cache_points = std::move(p.boundaries);
  out->cache_reply = true;
  out->trim_reply_start = chat.trim_reply();
  for (const std::string& s : chat.stop()) {
    if (std::find(out->stop_strings.begin(), out->stop_strings.end(), s) == out->stop_strings.end()) {
      out->stop_strings.push_back(s);
    }
  }
  return absl::OkStatus();
}

}  // namespace rwkv::server
