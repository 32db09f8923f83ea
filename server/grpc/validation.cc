#include "server/grpc/validation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/status.h"
#include "server/core/session_store.h"

namespace rwkv::server {
namespace {

absl::Status CheckIds(const google::protobuf::RepeatedField<int32_t>& ids, const char* field,
                      const RequestLimits& limits) {
  return CheckTokenIds(std::span<const int32_t>(ids.data(), ids.size()), field, limits.vocab);
}

absl::StatusOr<std::vector<PromptImage>> Images(const google::protobuf::RepeatedPtrField<v1::Image>& images,
                                                const char* field, const VisionLimits& vision) {
  std::vector<std::string_view> files;
  for (const v1::Image& im : images) files.emplace_back(im.data());
  return ReadImages(files, field, vision);
}

// The prompt (text with its images, or ids) into out->prompt and out->images.
template <typename Req>
absl::Status Prompt(const Req& req, const Tokenizer& tokenizer, const RequestLimits& limits, const VisionLimits& vision,
                    SequenceRequest* out) {
  if (req.has_token_ids()) {
    if (req.images_size() > 0) {
      return absl::InvalidArgumentError(
          "images: a token_ids prompt takes no images; send text with \"<image>\" markers, or messages");
    }
    RWKV_RETURN_IF_ERROR(CheckIds(req.token_ids().ids(), "token_ids.ids", limits));
    RWKV_RETURN_IF_ERROR(CheckPromptLength(req.token_ids().ids_size(), limits));
    out->prompt.assign(req.token_ids().ids().begin(), req.token_ids().ids().end());
    return absl::OkStatus();
  }
  RWKV_ASSIGN_OR_RETURN(std::vector<PromptImage> images, Images(req.images(), "images", vision));
  return EncodePromptWithImages(req.text(), "text", std::move(images), "images", tokenizer, limits, vision, out);
}

}  // namespace

absl::StatusOr<SequenceRequest> ToSequenceRequest(const v1::GenerateRequest& req, const Tokenizer& tokenizer,
                                                  const RequestLimits& limits, const ChatTemplate& chat,
                                                  const VisionLimits& vision) {
  SequenceRequest out;
  out.kind = SequenceRequest::Kind::kGenerate;
  if (req.request_id().size() > limits.max_request_id_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat("request_id is %d bytes; the limit is %d",
                                                      req.request_id().size(), limits.max_request_id_bytes));
  }
  out.request_id = req.request_id();
  if (!req.session_id().empty()) {
    RWKV_RETURN_IF_ERROR(SessionStore::ValidateId(req.session_id(), "session_id"));
    out.session_id = req.session_id();
  }
  if (req.has_messages() && req.images_size() > 0) {
    return absl::InvalidArgumentError("images: with messages, each message carries its own (messages.messages[i].images)");
  }

  const v1::SamplingParams& p = req.sampling();
  SamplingParams& s = out.sampling;
  s = DefaultSampling();
  if (p.has_temperature()) s.temperature = p.temperature();
  if (p.has_top_k()) s.top_k = p.top_k();
  if (p.has_top_p()) s.top_p = p.top_p();
  if (p.has_min_p()) s.min_p = p.min_p();
  if (p.has_presence_penalty()) s.presence_penalty = p.presence_penalty();
  if (p.has_frequency_penalty()) s.frequency_penalty = p.frequency_penalty();
  if (p.has_penalty_decay()) s.penalty_decay = p.penalty_decay();
  for (const auto& [id, bias] : p.logit_bias()) s.logit_bias.emplace_back(id, bias);
  std::sort(s.logit_bias.begin(), s.logit_bias.end());  // Map order is unspecified; results must not be.
  s.banned_tokens.assign(p.banned_tokens().begin(), p.banned_tokens().end());
  s.seed = p.seed();
  {
    absl::Status st = ValidateSamplingParams(s, limits.vocab);
    if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("sampling.", st.message()));
  }


  const v1::StopConditions& stop = req.stop();
  out.max_tokens = stop.has_max_tokens() ? stop.max_tokens() : DefaultMaxTokens(limits);
  RWKV_RETURN_IF_ERROR(CheckMaxTokens(out.max_tokens, "stop.max_tokens", limits));
  out.stop_strings.assign(stop.stop_strings().begin(), stop.stop_strings().end());
  RWKV_RETURN_IF_ERROR(CheckStopStrings(out.stop_strings, "stop.stop_strings", limits));
  RWKV_RETURN_IF_ERROR(CheckIds(stop.stop_token_ids(), "stop.stop_token_ids", limits));
  out.stop_tokens.assign(stop.stop_token_ids().begin(), stop.stop_token_ids().end());
  if (!stop.ignore_eos()) out.stop_tokens.push_back(Tokenizer::kEndOfText);

  const v1::OutputOptions& o = req.output();
  out.want_token_ids = o.token_ids();
  out.want_logprobs = o.logprobs();
  RWKV_RETURN_IF_ERROR(CheckTopLogprobs(o.top_logprobs(), "output.top_logprobs", limits));
  if (o.top_logprobs() > 0 && !o.logprobs()) {
    return absl::InvalidArgumentError("output.top_logprobs needs output.logprobs set");
  }
  out.top_logprobs = o.top_logprobs();

  // The prompt last: images are the costly part to check.
  if (req.has_messages()) {
    std::vector<ChatMessage> messages;
    std::vector<PromptImage> images;
    const auto& ms = req.messages().messages();
    size_t count = 0;
    for (const v1::ChatMessage& m : ms) count += m.images_size();
    RWKV_RETURN_IF_ERROR(CheckImageCount(count, "messages.messages", vision));
    for (int i = 0; i < ms.size(); ++i) {
      messages.push_back({ms[i].role(), ms[i].content(), ms[i].images_size()});
      if (ms[i].images_size() == 0) continue;
      const std::string field = absl::StrFormat("messages.messages[%d].images", i);
      RWKV_ASSIGN_OR_RETURN(std::vector<PromptImage> more, Images(ms[i].images(), field.c_str(), vision));
      for (PromptImage& im : more) images.push_back(std::move(im));
    }
    RWKV_RETURN_IF_ERROR(
        ApplyChat(messages, "messages.messages", chat, tokenizer, limits, &out, std::move(images), vision.tokens));
  } else {
    RWKV_RETURN_IF_ERROR(Prompt(req, tokenizer, limits, vision, &out));
  }
  return out;
}

absl::StatusOr<SequenceRequest> ToCreateRequest(const v1::CreateSessionRequest& req, const Tokenizer& tokenizer,
                                                const RequestLimits& limits, const VisionLimits& vision) {
  SequenceRequest out;
  out.kind = SequenceRequest::Kind::kCreateSession;
  if (!req.session_id().empty()) {
    RWKV_RETURN_IF_ERROR(SessionStore::ValidateId(req.session_id(), "session_id"));
    out.session_id = req.session_id();
  }
  RWKV_RETURN_IF_ERROR(Prompt(req, tokenizer, limits, vision, &out));
  if (!out.images.empty() && out.images.back().offset + vision.tokens == static_cast<int>(out.prompt.size())) {
    return absl::InvalidArgumentError("text ends with an image; a new session's prompt needs text after its last image");
  }
  return out;
}

}  // namespace rwkv::server
