#include "server/grpc/validation.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "engine/status.h"
#include "server/core/session_store.h"

namespace rwkv::server {
namespace {

absl::Status CheckIds(const google::protobuf::RepeatedField<int32_t>& ids, const char* field,
                      const RequestLimits& limits) {
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= limits.vocab) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s[%d] is %d, outside the vocabulary [0, %d)", field, i, ids[i], limits.vocab));
    }
  }
  return absl::OkStatus();
}

template <typename Req>
absl::StatusOr<std::vector<int32_t>> Prompt(const Req& req, const Tokenizer& tokenizer, const RequestLimits& limits) {
  std::vector<int32_t> prompt;
  if (req.has_token_ids()) {
    RWKV_RETURN_IF_ERROR(CheckIds(req.token_ids().ids(), "token_ids.ids", limits));
    prompt.assign(req.token_ids().ids().begin(), req.token_ids().ids().end());
  } else {
    // Bytes bound the token count from above, so a huge text is refused before tokenizing it.
    if (req.text().size() > static_cast<size_t>(limits.max_prompt_tokens) * 64) {
      return absl::InvalidArgumentError(absl::StrFormat("text is %d bytes; the limit is %d tokens", req.text().size(),
                                                        limits.max_prompt_tokens));
    }
    prompt = tokenizer.Encode(req.text());
  }
  if (prompt.size() > static_cast<size_t>(limits.max_prompt_tokens)) {
    return absl::InvalidArgumentError(absl::StrFormat("prompt is %d tokens; max_prompt_tokens is %d", prompt.size(),
                                                      limits.max_prompt_tokens));
  }
  return prompt;
}

}  // namespace

absl::StatusOr<SequenceRequest> ToSequenceRequest(const v1::GenerateRequest& req, const Tokenizer& tokenizer,
                                                  const RequestLimits& limits) {
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
  RWKV_ASSIGN_OR_RETURN(out.prompt, Prompt(req, tokenizer, limits));

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
  out.max_tokens = stop.has_max_tokens() ? stop.max_tokens() : std::min(256, limits.max_tokens);
  if (out.max_tokens < 1 || out.max_tokens > limits.max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrFormat("stop.max_tokens is %d; it must be in [1, %d]", out.max_tokens, limits.max_tokens));
  }
  if (stop.stop_strings_size() > limits.max_stop_strings) {
    return absl::InvalidArgumentError(absl::StrFormat("stop.stop_strings has %d entries; the limit is %d",
                                                      stop.stop_strings_size(), limits.max_stop_strings));
  }
  for (int i = 0; i < stop.stop_strings_size(); ++i) {
    const std::string& ss = stop.stop_strings(i);
    if (ss.empty() || ss.size() > static_cast<size_t>(limits.max_stop_string_bytes)) {
      return absl::InvalidArgumentError(absl::StrFormat("stop.stop_strings[%d] is %d bytes; it must be 1..%d", i,
                                                        ss.size(), limits.max_stop_string_bytes));
    }
    std::string valid;
    if (AppendValidUtf8(ss, &valid) != ss.size() || valid != ss) {
      return absl::InvalidArgumentError(absl::StrFormat("stop.stop_strings[%d] is not valid UTF-8", i));
    }
    out.stop_strings.push_back(ss);
  }
  RWKV_RETURN_IF_ERROR(CheckIds(stop.stop_token_ids(), "stop.stop_token_ids", limits));
  out.stop_tokens.assign(stop.stop_token_ids().begin(), stop.stop_token_ids().end());
  if (!stop.ignore_eos()) out.stop_tokens.push_back(Tokenizer::kEndOfText);

  const v1::OutputOptions& o = req.output();
  out.want_token_ids = o.token_ids();
  out.want_logprobs = o.logprobs();
  if (o.top_logprobs() < 0 || o.top_logprobs() > limits.max_top_logprobs) {
    return absl::InvalidArgumentError(
        absl::StrFormat("output.top_logprobs is %d; it must be in [0, %d]", o.top_logprobs(), limits.max_top_logprobs));
  }
  if (o.top_logprobs() > 0 && !o.logprobs()) {
    return absl::InvalidArgumentError("output.top_logprobs needs output.logprobs set");
  }
  out.top_logprobs = o.top_logprobs();
  return out;
}

absl::StatusOr<SequenceRequest> ToCreateRequest(const v1::CreateSessionRequest& req, const Tokenizer& tokenizer,
                                                const RequestLimits& limits) {
  SequenceRequest out;
  out.kind = SequenceRequest::Kind::kCreateSession;
  if (!req.session_id().empty()) {
    RWKV_RETURN_IF_ERROR(SessionStore::ValidateId(req.session_id(), "session_id"));
    out.session_id = req.session_id();
  }
  RWKV_ASSIGN_OR_RETURN(out.prompt, Prompt(req, tokenizer, limits));
  return out;
}

}  // namespace rwkv::server
