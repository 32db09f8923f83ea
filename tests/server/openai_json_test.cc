// The OpenAI wire format without a socket: request bodies into SequenceRequests (fields,
// defaults, refusals naming the param), status codes, and the JSON of responses and chunks.
#include "server/http/openai_json.h"

#include "engine/sampler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rwkv::server::openai {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

class OpenAiJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tok_ = *Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/engine/vocab/rwkv_vocab_v20230424.txt");
    limits_.vocab = 65536;
    limits_.max_tokens = 1000;
  }
  absl::StatusOr<Request> Chat(const json& body) {
    return ParseRequest(body.dump(), Endpoint::kChat, *tok_, limits_, ChatTemplate::World());
  }
  absl::StatusOr<Request> Completion(const json& body) {
    return ParseRequest(body.dump(), Endpoint::kCompletions, *tok_, limits_, ChatTemplate::World());
  }
  // The error's param and message.
  std::pair<std::string, std::string> Error(const absl::StatusOr<Request>& r) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    return {ParamOf(r.status()).value_or("(none)"), std::string(r.status().message())};
  }
  std::unique_ptr<Tokenizer> tok_;
  RequestLimits limits_;
  const json hi_ = json::array({{{"role", "user"}, {"content", "Hi"}}});
};

TEST_F(OpenAiJsonTest, DefaultsAreTheServersOwn) {
  absl::StatusOr<Request> r = Chat({{"messages", hi_}});
  ASSERT_TRUE(r.ok()) << r.status();
  const SamplingParams d = DefaultSampling();
  EXPECT_EQ(r->seq.sampling.temperature, d.temperature);
  EXPECT_EQ(r->seq.sampling.top_p, d.top_p);
  EXPECT_EQ(r->seq.sampling.presence_penalty, d.presence_penalty);
  EXPECT_EQ(r->seq.max_tokens, DefaultMaxTokens(limits_));
  EXPECT_EQ(r->seq.stop_tokens, std::vector<int32_t>{Tokenizer::kEndOfText});
  EXPECT_EQ(r->seq.stop_strings, std::vector<std::string>{"\n\n"});  // The template's.
  EXPECT_EQ(r->seq.prompt, tok_->Encode("User: Hi\n\nAssistant:"));
  EXPECT_FALSE(r->stream);
  EXPECT_EQ(r->n, 1);
}

TEST_F(OpenAiJsonTest, FieldsMapOntoTheRequest) {
  absl::StatusOr<Request> r = Chat({{"messages", hi_},
                                    {"temperature", 0.5},
                                    {"top_p", 0.9},
                                    {"top_k", 40},
                                    {"min_p", 0.05},
                                    {"presence_penalty", 0.2},
                                    {"frequency_penalty", 0.3},
                                    {"penalty_decay", 0.996},
                                    {"seed", 42},
                                    {"logit_bias", {{"300", 5}, {"7", -100}}},
                                    {"max_tokens", 999},
                                    {"max_completion_tokens", 12},
                                    {"stop", {"END", "STOP"}},
                                    {"n", 3},
                                    {"stream", true},
                                    {"stream_options", {{"include_usage", true}}},
                                    {"logprobs", true},
                                    {"top_logprobs", 4},
                                    {"user", "u-1"},
                                    {"initial_state", "tuned"},
                                    {"ignore_eos", true},
                                    {"model", "anything"}});
  ASSERT_TRUE(r.ok()) << r.status();
  const SamplingParams& s = r->seq.sampling;
  EXPECT_FLOAT_EQ(s.temperature, 0.5f);
  EXPECT_FLOAT_EQ(s.top_p, 0.9f);
  EXPECT_EQ(s.top_k, 40);
  EXPECT_FLOAT_EQ(s.min_p, 0.05f);
  EXPECT_FLOAT_EQ(s.presence_penalty, 0.2f);
  EXPECT_FLOAT_EQ(s.frequency_penalty, 0.3f);
  EXPECT_FLOAT_EQ(s.penalty_decay, 0.996f);
  EXPECT_EQ(s.seed, 42u);
  EXPECT_EQ(s.logit_bias, (std::vector<std::pair<int32_t, float>>{{7, -100.0f}, {300, 5.0f}}));  // Sorted by id.
  EXPECT_EQ(r->seq.max_tokens, 12) << "max_completion_tokens wins over the older max_tokens";
  EXPECT_EQ(r->seq.stop_strings, (std::vector<std::string>{"END", "STOP", "\n\n"}));
  EXPECT_TRUE(r->seq.stop_tokens.empty()) << "ignore_eos";
  EXPECT_EQ(r->n, 3);
  EXPECT_TRUE(r->stream && r->include_usage && r->logprobs);
  EXPECT_EQ(r->top_logprobs, 4);
  EXPECT_TRUE(r->seq.want_logprobs);
  EXPECT_EQ(r->seq.top_logprobs, 4);
  EXPECT_EQ(r->initial_state, "tuned");
  EXPECT_EQ(r->user, "u-1");
}

TEST_F(OpenAiJsonTest, CompletionPrompts) {
  EXPECT_EQ(Completion({{"prompt", "Hello"}})->seq.prompt, tok_->Encode("Hello"));
  EXPECT_EQ(Completion({{"prompt", {"Hello"}}})->seq.prompt, tok_->Encode("Hello"));
  EXPECT_EQ(Completion({{"prompt", {1, 2, 3}}})->seq.prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(Completion({{"prompt", {{4, 5}}}})->seq.prompt, (std::vector<int32_t>{4, 5}));
  absl::StatusOr<Request> r = Completion({{"prompt", "x"}, {"logprobs", 3}});
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->top_logprobs, 3);
  EXPECT_TRUE(r->seq.stop_strings.empty()) << "no template stops outside chats";
  EXPECT_EQ(Error(Completion({{"prompt", {"a", "b"}}})).second,
            "prompt has 2 prompts; this server takes one per request (send each as its own request: they are "
            "batched together anyway)");
  EXPECT_EQ(Error(Completion({{"prompt", {1, 70000}}})).second, "prompt[1] is 70000, outside the vocabulary [0, 65536)");
  EXPECT_EQ(Error(Completion(json::object())).first, "prompt");
  EXPECT_EQ(Error(Completion({{"prompt", 5}})).first, "prompt");
  limits_.max_prompt_tokens = 2;
  EXPECT_THAT(Error(Completion({{"prompt", {1, 2, 3}}})).second, HasSubstr("max_prompt_tokens is 2"));
  EXPECT_EQ(Error(Completion({{"prompt", "a long prompt of many tokens"}})).first, "prompt");
}

TEST_F(OpenAiJsonTest, ChatContentParts) {
  const json parts = json::array({{{"role", "user"},
                                   {"content", json::array({{{"type", "text"}, {"text", "Hello "}},
                                                            {{"type", "text"}, {"text", "world"}}})}},
                                  {{"role", "assistant"}, {"content", nullptr}}});
  absl::StatusOr<Request> r = Chat({{"messages", parts}});
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<int32_t> want;
  for (std::string_view part : {"User: Hello world\n\n", "Assistant:", " \n\n", "Assistant:"}) {
    const std::vector<int32_t> ids = tok_->Encode(part);
    want.insert(want.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(r->seq.prompt, want) << "parts are joined; an empty assistant message still takes its turn";
  const json image = json::array({{{"role", "user"},
                                   {"content", json::array({{{"type", "image_url"}, {"image_url", {{"url", "x"}}}}})}}});
  EXPECT_THAT(Error(Chat({{"messages", image}})).second, HasSubstr("messages[0].content[0].type is 'image_url'"));
  EXPECT_EQ(Error(Chat({{"messages", "hi"}})).first, "messages");
  EXPECT_EQ(Error(Chat({{"messages", json::array({5})}})).second, "messages[0] must be an object, not number");
  EXPECT_THAT(Error(Chat({{"messages", json::array({{{"role", "user"}, {"content", 3}}})}})).second,
              HasSubstr("messages[0].content must be a string or an array"));
  EXPECT_THAT(Error(Chat({{"messages", json::array({{{"content", "x"}}})}})).second, HasSubstr("messages[0].role"));
  EXPECT_THAT(
      Error(Chat({{"messages", json::array({{{"role", "assistant"}, {"tool_calls", json::array({{{"id", "1"}}})}}})}}))
          .second,
      HasSubstr("tool calling is not supported"));
  EXPECT_EQ(Error(Chat({{"messages", json::array()}})).first, "messages");
}

TEST_F(OpenAiJsonTest, RefusalsNameTheParam) {
  const std::vector<std::pair<json, std::pair<std::string, std::string>>> cases = {
      {{{"temperature", "hot"}}, {"temperature", "temperature must be a number, not string"}},
      {{{"temperature", 101}}, {"temperature", "temperature is 101; it must be in [0, 100]"}},
      {{{"top_p", 1.5}}, {"top_p", "top_p is 1.5; it must be in [0, 1]"}},
      {{{"top_k", -1}}, {"top_k", "top_k is -1; it must be in [0, 65536]"}},
      {{{"max_tokens", 0}}, {"max_tokens", "max_tokens is 0; it must be in [1, 1000]"}},
      {{{"max_completion_tokens", 1001}}, {"max_completion_tokens", "max_completion_tokens is 1001; it must be in [1, 1000]"}},
      {{{"max_tokens", 2.5}}, {"max_tokens", "max_tokens must be an integer, not a fraction"}},
      {{{"n", 0}}, {"n", "n is 0; it must be in [1, 16]"}},
      {{{"n", 17}}, {"n", "n is 17; it must be in [1, 16]"}},
      {{{"n", 2}, {"session_id", "abc"}}, {"n", "n > 1 forks a stateless prompt; a session_id request takes n = 1"}},
      {{{"stream", "yes"}}, {"stream", "stream must be true or false, not string"}},
      {{{"stream_options", {{"include_usage", true}}}}, {"stream_options", "stream_options needs stream set to true"}},
      {{{"top_logprobs", 3}}, {"top_logprobs", "top_logprobs needs logprobs set to true"}},
      {{{"logprobs", true}, {"top_logprobs", 21}}, {"top_logprobs", "top_logprobs is 21; it must be in [0, 20]"}},
      {{{"logit_bias", {{"x", 1}}}}, {"logit_bias", "logit_bias key 'x' is not a token id"}},
      {{{"logit_bias", {{"5", 300}}}}, {"logit_bias", "logit_bias for token 5 is 300; it must be in [-100, 100]"}},
      {{{"stop", 5}}, {"stop", "stop must be a string or an array of strings, not number"}},
      {{{"stop", {""}}}, {"stop", "stop[0] is 0 bytes; it must be 1..256"}},
      {{{"stop_token_ids", {70000}}}, {"stop_token_ids", "stop_token_ids[0] is 70000, outside the vocabulary [0, 65536)"}},
      {{{"tools", {{{"type", "function"}}}}}, {"tools", "tools: tool calling is not supported by this server"}},
      {{{"response_format", {{"type", "json_object"}}}},
       {"response_format", "response_format: only {\"type\": \"text\"} is supported by this server"}},
      {{{"session_id", "bad id!"}}, {"session_id", ""}},
      {{{"user", std::string(300, 'u')}}, {"user", "user is 300 bytes; the limit is 256"}},
  };
  for (const auto& [extra, want] : cases) {
    json body = {{"messages", hi_}};
    for (const auto& [k, v] : extra.items()) body[k] = v;
    const auto [param, message] = Error(Chat(body));
    EXPECT_EQ(param, want.first) << body.dump();
    if (!want.second.empty()) {
      EXPECT_EQ(message, want.second) << body.dump();
    }
  }
  EXPECT_EQ(Error(Completion({{"prompt", "x"}, {"echo", true}})).first, "echo");
  EXPECT_EQ(Error(Completion({{"prompt", "x"}, {"suffix", "y"}})).first, "suffix");
  EXPECT_EQ(Error(Completion({{"prompt", "x"}, {"best_of", 3}})).first, "best_of");
  EXPECT_TRUE(Completion({{"prompt", "x"}, {"best_of", 1}, {"echo", false}, {"suffix", ""}}).ok());
  EXPECT_TRUE(Chat({{"messages", hi_}, {"tools", json::array()}, {"response_format", {{"type", "text"}}}}).ok());
  EXPECT_EQ(Error(ParseRequest("{not json", Endpoint::kChat, *tok_, limits_, ChatTemplate::World())).second,
            "the request body is not valid JSON");
  EXPECT_EQ(Error(ParseRequest("[1]", Endpoint::kChat, *tok_, limits_, ChatTemplate::World())).second,
            "the request body must be a JSON object, not array");
}

TEST_F(OpenAiJsonTest, StatusesAndErrorShape) {
  EXPECT_EQ(HttpStatus(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatus(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatus(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatus(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatus(absl::StatusCode::kFailedPrecondition), 409);  // A session's turn is running.
  EXPECT_EQ(HttpStatus(absl::StatusCode::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatus(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatus(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatus(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatus(absl::StatusCode::kDataLoss), 500);
  const json e = json::parse(ErrorJson(absl::ResourceExhaustedError("queue is full (256)")));
  EXPECT_EQ(e, json({{"error",
                      {{"message", "queue is full (256)"},
                       {"type", "rate_limit_error"},
                       {"param", nullptr},
                       {"code", "resource_exhausted"}}}}));
  const json p = json::parse(ErrorJson(Chat({{"messages", hi_}, {"n", 0}}).status()));
  EXPECT_EQ(p["error"]["param"], "n");
  EXPECT_EQ(p["error"]["type"], "invalid_request_error");
}

TEST_F(OpenAiJsonTest, ResponsesAndChunks) {
  const Envelope env{"chatcmpl-1", 1700000000, "rwkv7", "fp"};
  Choice c;
  c.text = "Hello";
  c.reason = FinishReason::kStop;
  c.logprobs = {{tok_->Encode("Hello")[0], -0.5f, {{tok_->Encode("Hello")[0], -0.5f}}}};
  const Usage u{10, 5, 4};
  const json r = json::parse(ResponseJson(Endpoint::kChat, env, {c}, u, true, *tok_));
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["id"], "chatcmpl-1");
  EXPECT_EQ(r["model"], "rwkv7");
  EXPECT_EQ(r["choices"][0]["message"], json({{"role", "assistant"}, {"content", "Hello"}}));
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(r["choices"][0]["logprobs"]["content"][0]["token"], "Hello");
  EXPECT_EQ(r["choices"][0]["logprobs"]["content"][0]["bytes"], json({72, 101, 108, 108, 111}));
  EXPECT_EQ(r["usage"], json({{"prompt_tokens", 10},
                              {"completion_tokens", 5},
                              {"total_tokens", 15},
                              {"prompt_tokens_details", {{"cached_tokens", 4}}}}));
  const json t = json::parse(ResponseJson(Endpoint::kCompletions, env, {c}, u, true, *tok_));
  EXPECT_EQ(t["object"], "text_completion");
  EXPECT_EQ(t["choices"][0]["text"], "Hello");
  EXPECT_EQ(t["choices"][0]["logprobs"]["tokens"], json({"Hello"}));
  EXPECT_EQ(t["choices"][0]["logprobs"]["top_logprobs"][0], json({{"Hello", -0.5}}));

  const json first = json::parse(ChunkJson(Endpoint::kChat, env, 1, true, "Hi", nullptr, FinishReason::kNone, *tok_));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["index"], 1);
  EXPECT_EQ(first["choices"][0]["delta"], json({{"role", "assistant"}, {"content", "Hi"}}));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const json last = json::parse(ChunkJson(Endpoint::kChat, env, 0, false, "", nullptr, FinishReason::kLength, *tok_));
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  const json usage = json::parse(UsageChunkJson(Endpoint::kChat, env, u));
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_EQ(usage["usage"]["total_tokens"], 15);
  // Bytes that are not UTF-8 (half a character in a token) are replaced, never invalid JSON.
  const std::string bad = ChunkJson(Endpoint::kCompletions, env, 0, false, "\xE4\xBD", nullptr, FinishReason::kNone, *tok_);
  EXPECT_FALSE(json::parse(bad, nullptr, false).is_discarded());
  EXPECT_EQ(json::parse(ModelsJson("m", 5))["data"][0], json({{"id", "m"}, {"object", "model"}, {"created", 5},
                                                             {"owned_by", "rwkv-serve"}}));
}

}  // namespace
}  // namespace rwkv::server::openai
