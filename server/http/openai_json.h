// The OpenAI wire format, apart from any socket: request bodies of /v1/completions and
// /v1/chat/completions parsed into a SequenceRequest (with OpenAI's field names in every error),
// and the JSON of responses, stream chunks and errors. docs/server.md lists what is accepted.
//
// Thread safety: pure functions.
#ifndef RWKV_SERVER_HTTP_OPENAI_JSON_H_
#define RWKV_SERVER_HTTP_OPENAI_JSON_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"
#include "server/core/chat_template.h"
#include "server/core/requests.h"
#include "server/core/sequence.h"

namespace rwkv::server::openai {

enum class Endpoint { kCompletions, kChat };

struct Request {
  Endpoint endpoint = Endpoint::kChat;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage.
  int n = 1;
  bool logprobs = false;
  int top_logprobs = 0;
  std::string initial_state;  // RWKV extra.
  std::string user;
  SequenceRequest seq;  // For choice 0; the edge adds the forks for n > 1.
};

// INVALID_ARGUMENT naming the OpenAI field (also carried as the error's `param`, ParamOf) for a
// body that is not a JSON object, a field of the wrong type or out of range, or a feature this
// server does not have (tools, response formats other than text, echo, suffix; images when
// vision.tokens is 0). Chat image parts are {"type": "image_url", "image_url": {"url":
// "data:image/...;base64,..."}}, placed before their message's text.
absl::StatusOr<Request> ParseRequest(std::string_view body, Endpoint endpoint, const Tokenizer& tokenizer,
                                     const RequestLimits& limits, const ChatTemplate& chat,
                                     const VisionLimits& vision = {});

// The field an INVALID_ARGUMENT from ParseRequest names, if any.
std::optional<std::string> ParamOf(const absl::Status& s);

// HTTP status for a Status code (400, 401, 403, 404, 409, 429, 499, 500, 501, 503, 504).
int HttpStatus(absl::StatusCode code);
// {"error": {"message", "type", "param", "code"}}.
std::string ErrorJson(const absl::Status& s);

// What one choice produced, for the responses below.
struct Choice {
  std::string text;
  std::vector<TokenLogprob> logprobs;
  FinishReason reason = FinishReason::kNone;
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;
};

// Fields every response and chunk carries.
struct Envelope {
  std::string id;
  int64_t created = 0;
  std::string model;
  std::string fingerprint;
};

// A whole response (stream false).
std::string ResponseJson(Endpoint endpoint, const Envelope& env, const std::vector<Choice>& choices, const Usage& usage,
                         bool logprobs, const Tokenizer& tokenizer);
// One stream chunk for choice `index`: `delta` text and its log-probs; `role` on a chat's first
// chunk; `reason` set on the choice's last chunk.
std::string ChunkJson(Endpoint endpoint, const Envelope& env, int index, bool role, std::string_view delta,
                      const std::vector<TokenLogprob>* logprobs, FinishReason reason, const Tokenizer& tokenizer);
// The usage chunk at the end of a stream (stream_options.include_usage): no choices.
std::string UsageChunkJson(Endpoint endpoint, const Envelope& env, const Usage& usage);
// GET /v1/models.
std::string ModelsJson(const std::string& model, int64_t created);
std::string ModelJson(const std::string& model, int64_t created);

}  // namespace rwkv::server::openai

#endif  // RWKV_SERVER_HTTP_OPENAI_JSON_H_
