#include "server/http/openai_json.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/absl_compat.h"
#include "engine/sampler.h"
#include "engine/status.h"
#include "nlohmann/json.hpp"
#include "server/core/session_store.h"

namespace rwkv::server::openai {
namespace {

using json = nlohmann::json;

constexpr char kParamUrl[] = "type.rwkv-serve/openai.param";

absl::Status Bad(std::string_view param, std::string message) {
  absl::Status s = absl::InvalidArgumentError(message);
  s.SetPayload(kParamUrl, absl::Cord(AV(param)));
  return s;
}

// An INVALID_ARGUMENT from a shared check, tagged with the field it is about.
absl::Status Tag(absl::Status s, std::string_view param) {
  if (!s.ok() && s.code() == absl::StatusCode::kInvalidArgument && !s.GetPayload(kParamUrl)) {
    s.SetPayload(kParamUrl, absl::Cord(AV(param)));
  }
  return s;
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

const json* Field(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

const char* TypeName(const json& v) { return v.type_name(); }

absl::Status Number(const json& obj, const char* key, std::optional<double>* out) {
  const json* v = Field(obj, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number()) return Bad(key, absl::StrCat(key, " must be a number, not ", TypeName(*v)));
  *out = v->get<double>();
  return absl::OkStatus();
}

absl::Status Integer(const json& obj, const char* key, std::optional<int64_t>* out) {
  const json* v = Field(obj, key);
  if (v == nullptr) return absl::OkStatus();
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Bad(key, absl::StrCat(key, " is out of range"));
    }
    *out = v->get<int64_t>();
    return absl::OkStatus();
  }
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9e15) {
      *out = static_cast<int64_t>(d);
      return absl::OkStatus();
    }
  }
  return Bad(key, absl::StrCat(key, " must be an integer, not ", v->is_number() ? "a fraction" : TypeName(*v)));
}

absl::Status Bool(const json& obj, const char* key, std::optional<bool>* out) {
  const json* v = Field(obj, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_boolean()) return Bad(key, absl::StrCat(key, " must be true or false, not ", TypeName(*v)));
  *out = v->get<bool>();
  return absl::OkStatus();
}

absl::Status String(const json& obj, const char* key, size_t max_bytes, std::optional<std::string>* out) {
  const json* v = Field(obj, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return Bad(key, absl::StrCat(key, " must be a string, not ", TypeName(*v)));
  const std::string& s = v->get_ref<const std::string&>();
  if (s.size() > max_bytes) return Bad(key, absl::StrFormat("%s is %d bytes; the limit is %d", key, s.size(), max_bytes));
  *out = s;
  return absl::OkStatus();
}

// Token ids from a JSON array ("field[i]" in errors).
absl::Status Ids(const json& arr, const std::string& field, int vocab, std::vector<int32_t>* out) {
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& x = arr[i];
    if (!x.is_number_integer()) {
      return Bad(field, absl::StrFormat("%s[%d] must be a token id (an integer), not %s", field, i, TypeName(x)));
    }
    const int64_t id = x.get<int64_t>();
    if (id < 0 || id >= vocab) {
      return Bad(field, absl::StrFormat("%s[%d] is %d, outside the vocabulary [0, %d)", field, i, id, vocab));
    }
    out->push_back(static_cast<int32_t>(id));
  }
  return absl::OkStatus();
}

absl::Status Encode(const std::string& text, const Tokenizer& tokenizer, const RequestLimits& limits,
                    std::vector<int32_t>* out) {
  absl::StatusOr<std::vector<int32_t>> ids = EncodePrompt(text, "prompt", tokenizer, limits);
  if (!ids.ok()) return Tag(ids.status(), "prompt");
  *out = std::move(*ids);
  return absl::OkStatus();
}

// /v1/completions' prompt: a string, one string in an array, token ids, or one array of ids.
absl::Status CompletionPrompt(const json& body, const Tokenizer& tokenizer, const RequestLimits& limits,
                              SequenceRequest* out) {
  const json* p = Field(body, "prompt");
  if (p == nullptr) return Bad("prompt", "prompt is required");
  if (p->is_string()) {
    return Encode(p->get_ref<const std::string&>(), tokenizer, limits, &out->prompt);
  }
  if (!p->is_array()) return Bad("prompt", absl::StrCat("prompt must be a string or an array, not ", TypeName(*p)));
  if (p->empty()) return Bad("prompt", "prompt is an empty array");
  if ((*p)[0].is_string() || (*p)[0].is_array()) {
    if (p->size() > 1) {
      return Bad("prompt", absl::StrFormat("prompt has %d prompts; this server takes one per request (send each "
                                           "as its own request: they are batched together anyway)",
                                           p->size()));
    }
    const json& one = (*p)[0];
    if (one.is_string()) {
      return Encode(one.get_ref<const std::string&>(), tokenizer, limits, &out->prompt);
    }
    RWKV_RETURN_IF_ERROR(Ids(one, "prompt[0]", limits.vocab, &out->prompt));
  } else {
    RWKV_RETURN_IF_ERROR(Ids(*p, "prompt", limits.vocab, &out->prompt));
  }
  return Tag(CheckPromptLength(out->prompt.size(), limits), "prompt");
}

// An image_url part: a data URL ("data:image/png;base64,...") decoded and read as an image.
absl::StatusOr<PromptImage> ImagePart(const json& part, const std::string& at, const VisionLimits& vision) {
  if (vision.tokens <= 0) {
    return Bad("messages", absl::StrCat(at, ".type is 'image_url'; this model takes no images (it has no VisualRWKV "
                                            "vision encoder)"));
  }
  const json* iu = Field(part, "image_url");
  const json* url = iu == nullptr ? nullptr : iu->is_object() ? Field(*iu, "url") : iu;
  if (url == nullptr || !url->is_string()) return Bad("messages", absl::StrCat(at, ".image_url.url must be a string"));
  const std::string& u = url->get_ref<const std::string&>();
  const size_t comma = u.find(',');
  if (!absl::StartsWith(u, "data:") || comma == std::string::npos ||
      !absl::EndsWith(u.substr(0, comma), ";base64")) {
    return Bad("messages", absl::StrCat(at, ".image_url.url: only base64 data URLs (data:image/png;base64,...) are "
                                            "accepted; this server does not fetch remote images"));
  }
  const std::string_view payload = std::string_view(u).substr(comma + 1);
  if (static_cast<int64_t>(payload.size() / 4 * 3) > vision.image.max_bytes + 3) {
    return Bad("messages", absl::StrFormat("%s.image_url.url holds about %d bytes; the limit is %d bytes an image", at,
                                           payload.size() / 4 * 3, vision.image.max_bytes));
  }
  std::string bytes;
  if (!absl::Base64Unescape(AV(payload), &bytes)) {
    return Bad("messages", absl::StrCat(at, ".image_url.url: the data after the comma is not valid base64"));
  }
  absl::StatusOr<PromptImage> im = ReadPromptImage(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), at + ".image_url", vision);
  if (!im.ok()) return Bad("messages", std::string(im.status().message()));
  return im;
}

// /v1/chat/completions' messages: role and content (a string, or text and image_url parts).
absl::Status ChatPrompt(const json& body, const Tokenizer& tokenizer, const RequestLimits& limits,
                        const ChatTemplate& chat, const VisionLimits& vision, SequenceRequest* out) {
  const json* m = Field(body, "messages");
  if (m == nullptr) return Bad("messages", "messages is required");
  if (!m->is_array()) return Bad("messages", absl::StrCat("messages must be an array, not ", TypeName(*m)));
  if (m->size() > static_cast<size_t>(limits.max_messages)) {
    return Bad("messages", absl::StrFormat("messages has %d entries; the limit is %d", m->size(), limits.max_messages));
  }
  std::vector<ChatMessage> messages;
  std::vector<PromptImage> images;
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string at = absl::StrFormat("messages[%d]", i);
    if (!msg.is_object()) return Bad("messages", absl::StrCat(at, " must be an object, not ", TypeName(msg)));
    ChatMessage cm;
    const json* role = Field(msg, "role");
    if (role == nullptr || !role->is_string()) return Bad("messages", absl::StrCat(at, ".role must be a string"));
    cm.role = role->get<std::string>();
    if (const json* calls = Field(msg, "tool_calls"); calls != nullptr && !(calls->is_array() && calls->empty())) {
      return Bad("messages", absl::StrCat(at, ".tool_calls: tool calling is not supported by this server"));
    }
    const json* content = Field(msg, "content");
    if (content == nullptr) {
      // An empty message (an assistant turn with no text) is allowed.
    } else if (content->is_string()) {
      cm.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (size_t k = 0; k < content->size(); ++k) {
        const json& part = (*content)[k];
        const std::string pat = absl::StrFormat("%s.content[%d]", at, k);
        const json* type = part.is_object() ? Field(part, "type") : nullptr;
        if (type == nullptr || !type->is_string()) return Bad("messages", absl::StrCat(pat, ".type must be a string"));
        if (*type == "image_url") {
          if (vision.tokens > 0) {  // Counted before decoding (ImagePart refuses images on a text-only model).
            if (absl::Status st = CheckImageCount(images.size() + 1, "messages", vision); !st.ok()) {
              return Bad("messages", std::string(st.message()));
            }
          }
          RWKV_ASSIGN_OR_RETURN(PromptImage im, ImagePart(part, pat, vision));
          images.push_back(std::move(im));
          ++cm.images;
          continue;
        }
        if (*type != "text") {
          return Bad("messages", absl::StrCat(pat, ".type is '", type->get<std::string>().substr(0, 32),
                                              vision.tokens > 0 ? "'; parts are text or image_url"
                                                                : "'; this model reads text parts only"));
        }
        const json* text = Field(part, "text");
        if (text == nullptr || !text->is_string()) return Bad("messages", absl::StrCat(pat, ".text must be a string"));
        cm.content += text->get<std::string>();
      }
    } else {
      return Bad("messages", absl::StrCat(at, ".content must be a string or an array of parts, not ", TypeName(*content)));
    }
    messages.push_back(std::move(cm));
  }
  return Tag(ApplyChat(messages, "messages", chat, tokenizer, limits, out, std::move(images), vision.tokens), "messages");
}

absl::Status Refusals(const json& body, Endpoint endpoint, int n) {
  for (const char* key : {"tools", "functions"}) {
    if (const json* t = Field(body, key); t != nullptr && !(t->is_array() && t->empty())) {
      return Bad(key, absl::StrCat(key, ": tool calling is not supported by this server"));
    }
  }
  if (const json* f = Field(body, "response_format"); f != nullptr) {
    const json* type = f->is_object() ? Field(*f, "type") : nullptr;
    if (type == nullptr || *type != "text") {
      return Bad("response_format", "response_format: only {\"type\": \"text\"} is supported by this server");
    }
  }
  if (endpoint == Endpoint::kCompletions) {
    std::optional<bool> echo;
    RWKV_RETURN_IF_ERROR(Bool(body, "echo", &echo));
    if (echo.value_or(false)) return Bad("echo", "echo is not supported by this server");
    std::optional<std::string> suffix;
    RWKV_RETURN_IF_ERROR(String(body, "suffix", 1 << 20, &suffix));
    if (suffix && !suffix->empty()) return Bad("suffix", "suffix (insertion) is not supported by this server");
    std::optional<int64_t> best_of;
    RWKV_RETURN_IF_ERROR(Integer(body, "best_of", &best_of));
    if (best_of && *best_of != n) return Bad("best_of", "best_of must equal n (ranking of choices is not supported)");
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> ParamOf(const absl::Status& s) {
  absl::optional<absl::Cord> p = s.GetPayload(kParamUrl);
  if (!p) return std::nullopt;
  return std::string(*p);
}

absl::StatusOr<Request> ParseRequest(std::string_view body, Endpoint endpoint, const Tokenizer& tokenizer,
                                     const RequestLimits& limits, const ChatTemplate& chat, const VisionLimits& vision) {
  const json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("", "the request body is not valid JSON");
  if (!j.is_object()) return Bad("", absl::StrCat("the request body must be a JSON object, not ", TypeName(j)));
  Request r;
  r.endpoint = endpoint;
  SequenceRequest& seq = r.seq;
  seq.kind = SequenceRequest::Kind::kGenerate;

  std::optional<bool> b;
  std::optional<int64_t> i;
  std::optional<std::string> s;

  RWKV_RETURN_IF_ERROR(Integer(j, "n", &i));
  r.n = static_cast<int>(std::clamp<int64_t>(i.value_or(1), -1, 1 << 20));
  if (r.n < 1 || r.n > limits.max_choices) {
    return Bad("n", absl::StrFormat("n is %d; it must be in [1, %d]", i.value_or(1), limits.max_choices));
  }
  RWKV_RETURN_IF_ERROR(Refusals(j, endpoint, r.n));

  RWKV_RETURN_IF_ERROR(String(j, "session_id", 4096, &s));
  if (s) {
    RWKV_RETURN_IF_ERROR(Tag(SessionStore::ValidateId(*s, "session_id"), "session_id"));
    seq.session_id = *s;
    if (r.n > 1) return Bad("n", "n > 1 forks a stateless prompt; a session_id request takes n = 1");
  }
  s.reset();
  RWKV_RETURN_IF_ERROR(String(j, "initial_state", 256, &s));
  r.initial_state = s.value_or("");
  s.reset();
  RWKV_RETURN_IF_ERROR(String(j, "user", 256, &s));
  r.user = s.value_or("");

  // Sampling: the server's defaults (docs/server.md) where the body says nothing.
  SamplingParams& sp = seq.sampling;
  sp = DefaultSampling();
  const auto number = [&](const char* key, float* field) -> absl::Status {
    std::optional<double> v;
    RWKV_RETURN_IF_ERROR(Number(j, key, &v));
    if (v) *field = static_cast<float>(*v);
    return absl::OkStatus();
  };
  RWKV_RETURN_IF_ERROR(number("temperature", &sp.temperature));
  RWKV_RETURN_IF_ERROR(number("top_p", &sp.top_p));
  RWKV_RETURN_IF_ERROR(number("min_p", &sp.min_p));
  RWKV_RETURN_IF_ERROR(number("presence_penalty", &sp.presence_penalty));
  RWKV_RETURN_IF_ERROR(number("frequency_penalty", &sp.frequency_penalty));
  RWKV_RETURN_IF_ERROR(number("penalty_decay", &sp.penalty_decay));
  i.reset();
  RWKV_RETURN_IF_ERROR(Integer(j, "top_k", &i));
  if (i) {
    if (*i < 0 || *i > limits.vocab) return Bad("top_k", absl::StrFormat("top_k is %d; it must be in [0, %d]", *i, limits.vocab));
    sp.top_k = static_cast<int>(*i);
  }
  i.reset();
  RWKV_RETURN_IF_ERROR(Integer(j, "seed", &i));
  if (i) sp.seed = static_cast<uint64_t>(*i);
  if (const json* lb = Field(j, "logit_bias"); lb != nullptr) {
    if (!lb->is_object()) return Bad("logit_bias", "logit_bias must be an object of token id -> bias");
    for (const auto& [key, v] : lb->items()) {
      int32_t id;
      if (!absl::SimpleAtoi(key, &id)) {
        return Bad("logit_bias", absl::StrCat("logit_bias key '", key.substr(0, 32), "' is not a token id"));
      }
      if (!v.is_number()) return Bad("logit_bias", absl::StrCat("logit_bias[", id, "] must be a number"));
      sp.logit_bias.emplace_back(id, v.get<float>());
    }
    std::sort(sp.logit_bias.begin(), sp.logit_bias.end());
  }
  {
    absl::Status st = ValidateSamplingParams(sp, limits.vocab);
    if (!st.ok()) {
      const std::string m(st.message());
      return Bad(m.substr(0, m.find(' ')), m);  // Its messages begin with the field's name.
    }
  }

  // Stop conditions.
  i.reset();
  RWKV_RETURN_IF_ERROR(Integer(j, "max_completion_tokens", &i));
  const char* max_field = "max_completion_tokens";
  if (!i) {
    RWKV_RETURN_IF_ERROR(Integer(j, "max_tokens", &i));
    max_field = "max_tokens";
  }
  seq.max_tokens = DefaultMaxTokens(limits);
  if (i) {
    RWKV_RETURN_IF_ERROR(Tag(CheckMaxTokens(*i, max_field, limits), max_field));
    seq.max_tokens = static_cast<int>(*i);
  }
  if (const json* stop = Field(j, "stop"); stop != nullptr) {
    if (stop->is_string()) {
      seq.stop_strings.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& x : *stop) {
        if (!x.is_string()) return Bad("stop", "stop must be a string or an array of strings");
        seq.stop_strings.push_back(x.get<std::string>());
      }
    } else {
      return Bad("stop", absl::StrCat("stop must be a string or an array of strings, not ", TypeName(*stop)));
    }
    RWKV_RETURN_IF_ERROR(Tag(CheckStopStrings(seq.stop_strings, "stop", limits), "stop"));
  }
  if (const json* ids = Field(j, "stop_token_ids"); ids != nullptr) {
    if (!ids->is_array()) return Bad("stop_token_ids", "stop_token_ids must be an array of token ids");
    RWKV_RETURN_IF_ERROR(Ids(*ids, "stop_token_ids", limits.vocab, &seq.stop_tokens));
  }
  b.reset();
  RWKV_RETURN_IF_ERROR(Bool(j, "ignore_eos", &b));
  if (!b.value_or(false)) seq.stop_tokens.push_back(Tokenizer::kEndOfText);

  // Streaming and log-probs.
  b.reset();
  RWKV_RETURN_IF_ERROR(Bool(j, "stream", &b));
  r.stream = b.value_or(false);
  if (const json* so = Field(j, "stream_options"); so != nullptr) {
    if (!r.stream) return Bad("stream_options", "stream_options needs stream set to true");
    if (!so->is_object()) return Bad("stream_options", "stream_options must be an object");
    b.reset();
    RWKV_RETURN_IF_ERROR(Tag(Bool(*so, "include_usage", &b), "stream_options"));
    r.include_usage = b.value_or(false);
  }
  if (endpoint == Endpoint::kChat) {
    b.reset();
    RWKV_RETURN_IF_ERROR(Bool(j, "logprobs", &b));
    r.logprobs = b.value_or(false);
    i.reset();
    RWKV_RETURN_IF_ERROR(Integer(j, "top_logprobs", &i));
    if (i) {
      RWKV_RETURN_IF_ERROR(Tag(CheckTopLogprobs(*i, "top_logprobs", limits), "top_logprobs"));
      if (!r.logprobs) return Bad("top_logprobs", "top_logprobs needs logprobs set to true");
      r.top_logprobs = static_cast<int>(*i);
    }
  } else {
    // Completions: logprobs is the number of alternatives (0 = the chosen tokens' alone).
    i.reset();
    RWKV_RETURN_IF_ERROR(Integer(j, "logprobs", &i));
    if (i) {
      RWKV_RETURN_IF_ERROR(Tag(CheckTopLogprobs(*i, "logprobs", limits), "logprobs"));
      r.logprobs = true;
      r.top_logprobs = static_cast<int>(*i);
    }
  }
  seq.want_logprobs = r.logprobs;
  seq.top_logprobs = r.top_logprobs;

  // The prompt last: its errors come after the cheap checks, and a chat adds its stop strings
  // after the caller's.
  if (endpoint == Endpoint::kChat) {
    RWKV_RETURN_IF_ERROR(ChatPrompt(j, tokenizer, limits, chat, vision, &seq));
  } else {
    RWKV_RETURN_IF_ERROR(CompletionPrompt(j, tokenizer, limits, &seq));
  }
  return r;
}

int HttpStatus(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

std::string ErrorJson(const absl::Status& s) {
  const int status = HttpStatus(s.code());
  const char* type = status == 400   ? "invalid_request_error"
                     : status == 401 ? "authentication_error"
                     : status == 403 ? "permission_error"
                     : status == 404 ? "not_found_error"
                     : status == 409 ? "conflict_error"
                     : status == 429 ? "rate_limit_error"
                     : status == 503 ? "overloaded_error"
                                     : "server_error";
  std::string code = absl::StatusCodeToString(s.code());
  for (char& c : code) c = c == ' ' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  json e = {{"message", std::string(s.message())}, {"type", type}, {"param", nullptr}, {"code", code}};
  if (std::optional<std::string> p = ParamOf(s); p && !p->empty()) e["param"] = *p;
  return Dump(json{{"error", e}});
}

namespace {

const char* Reason(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    default: return nullptr;
  }
}

json ReasonJson(FinishReason r) {
  const char* s = Reason(r);
  return s == nullptr ? json(nullptr) : json(s);
}

std::string TokenText(const Tokenizer& tokenizer, int32_t id) {
  const std::string* b = tokenizer.TokenBytes(id);
  return b == nullptr ? std::string() : *b;
}

json Bytes(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

// Chat: {"content": [{token, logprob, bytes, top_logprobs}]}.
json ChatLogprobs(const std::vector<TokenLogprob>& lps, const Tokenizer& tokenizer) {
  json content = json::array();
  for (const TokenLogprob& lp : lps) {
    const std::string t = TokenText(tokenizer, lp.token);
    json top = json::array();
    for (const TopLogprob& alt : lp.top) {
      const std::string a = TokenText(tokenizer, alt.token);
      top.push_back({{"token", a}, {"logprob", alt.logprob}, {"bytes", Bytes(a)}});
    }
    content.push_back({{"token", t}, {"logprob", lp.logprob}, {"bytes", Bytes(t)}, {"top_logprobs", top}});
  }
  return json{{"content", content}};
}

// Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}.
json CompletionLogprobs(const std::vector<TokenLogprob>& lps, const Tokenizer& tokenizer) {
  json tokens = json::array(), logprobs = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = 0;
  for (const TokenLogprob& lp : lps) {
    const std::string t = TokenText(tokenizer, lp.token);
    tokens.push_back(t);
    logprobs.push_back(lp.logprob);
    json top = json::object();
    for (const TopLogprob& alt : lp.top) top[TokenText(tokenizer, alt.token)] = alt.logprob;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += t.size();
  }
  return json{{"tokens", tokens}, {"token_logprobs", logprobs}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json UsageJson(const Usage& u) {
  return json{{"prompt_tokens", u.prompt_tokens},
              {"completion_tokens", u.completion_tokens},
              {"total_tokens", u.prompt_tokens + u.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json Head(Endpoint endpoint, const Envelope& env, bool chunk) {
  const char* object = endpoint == Endpoint::kChat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                   : "text_completion";
  json j = {{"id", env.id}, {"object", object}, {"created", env.created}, {"model", env.model}};
  j["system_fingerprint"] = env.fingerprint;
  return j;
}

}  // namespace

std::string ResponseJson(Endpoint endpoint, const Envelope& env, const std::vector<Choice>& choices, const Usage& usage,
                         bool logprobs, const Tokenizer& tokenizer) {
  json j = Head(endpoint, env, false);
  json arr = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const Choice& c = choices[i];
    json choice = {{"index", i}, {"finish_reason", ReasonJson(c.reason)}};
    if (endpoint == Endpoint::kChat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      choice["logprobs"] = logprobs ? ChatLogprobs(c.logprobs, tokenizer) : json(nullptr);
    } else {
      choice["text"] = c.text;
      choice["logprobs"] = logprobs ? CompletionLogprobs(c.logprobs, tokenizer) : json(nullptr);
    }
    arr.push_back(std::move(choice));
  }
  j["choices"] = std::move(arr);
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

std::string ChunkJson(Endpoint endpoint, const Envelope& env, int index, bool role, std::string_view delta,
                      const std::vector<TokenLogprob>* logprobs, FinishReason reason, const Tokenizer& tokenizer) {
  json j = Head(endpoint, env, true);
  json choice = {{"index", index}, {"finish_reason", ReasonJson(reason)}};
  if (endpoint == Endpoint::kChat) {
    json d = json::object();
    if (role) d["role"] = "assistant";
    if (!delta.empty() || role) d["content"] = std::string(delta);
    choice["delta"] = std::move(d);
    choice["logprobs"] = logprobs != nullptr ? ChatLogprobs(*logprobs, tokenizer) : json(nullptr);
  } else {
    choice["text"] = std::string(delta);
    choice["logprobs"] = logprobs != nullptr ? CompletionLogprobs(*logprobs, tokenizer) : json(nullptr);
  }
  j["choices"] = json::array({std::move(choice)});
  return Dump(j);
}

std::string UsageChunkJson(Endpoint endpoint, const Envelope& env, const Usage& usage) {
  json j = Head(endpoint, env, true);
  j["choices"] = json::array();
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

std::string ModelJson(const std::string& model, int64_t created) {
  return Dump(json{{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "rwkv-serve"}});
}

std::string ModelsJson(const std::string& model, int64_t created) {
  return Dump(json{{"object", "list"}, {"data", json::array({json::parse(ModelJson(model, created))})}});
}

}  // namespace rwkv::server::openai
