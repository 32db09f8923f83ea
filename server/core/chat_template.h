// Chat templates: how a list of messages becomes a prompt, and where its turns end.
//
// The default is the RWKV World chat format the official chat demos write:
//
//   System: {content}\n\nUser: {content}\n\nAssistant: {content}\n\nUser: {content}\n\nAssistant:
//
// each message's content stripped, "\r\n" made "\n" and runs of blank lines collapsed to one
// newline, so that no message can end a turn ("\n\n" is the turn separator the model stops at).
// The reply the model writes after "Assistant:" begins with a space, which the stream drops.
//
// `--chat-template FILE` takes a JSON object instead (docs/server.md):
//
//   {"roles": {"system": {"prefix": "System: ", "suffix": "\n\n"},
//              "user": {"prefix": "User: ", "suffix": "\n\n"},
//              "assistant": {"prefix": "Assistant: ", "suffix": "\n\n"}},
//    "generation_prompt": "Assistant:", "stop": ["\n\n"],
//    "collapse_blank_lines": true, "trim_reply": true}
//
// Tokens: every message is tokenized on its own, so that a conversation's tokens are a prefix of
// the next turn's (what the prefix-state cache needs); an assistant message whose text begins
// with the generation prompt is tokenized as the prompt, then the rest, as the model saw it when
// it wrote the reply.
//
// Thread safety: immutable after construction.
#ifndef RWKV_SERVER_CORE_CHAT_TEMPLATE_H_
#define RWKV_SERVER_CORE_CHAT_TEMPLATE_H_

#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"

namespace rwkv::server {

struct ChatMessage {
  std::string role;
  std::string content;
  // Images of the message (VisualRWKV-7): before its content, each as image_tokens placeholder
  // tokens and a newline, as the model was trained ("User: <image>\n<image>\nquestion").
  int images = 0;
};

struct ChatPrompt {
  std::vector<int32_t> tokens;
  std::vector<int> boundaries;  // Token offsets where a message ends (the last = tokens.size()).
  std::vector<int> images;      // Token offsets where an image's placeholders begin, in order.
};

class ChatTemplate {
 public:
  static ChatTemplate World();
  // A template file (above). INVALID_ARGUMENT naming the file and the field at fault.
  static absl::StatusOr<ChatTemplate> Load(const std::string& path);
  static absl::StatusOr<ChatTemplate> Parse(std::string_view json, std::string_view name);

  // The prompt for `messages`, then the generation prompt. INVALID_ARGUMENT naming
  // `field`[i].role for a role the template lacks, and `field` when there are no messages.
  // "developer" (OpenAI's newer name) is "system" when the template has no such role.
  // Images take `image_tokens` placeholder tokens each (kImagePlaceholder).
  absl::StatusOr<ChatPrompt> Render(std::span<const ChatMessage> messages, const Tokenizer& tokenizer,
                                    const char* field = "messages", int image_tokens = 0) const;
  // Every message's text as Render would write it (tests, docs).
  std::string Text(std::span<const ChatMessage> messages) const;

  const std::vector<std::string>& stop() const { return stop_; }
  // Whether a reply's leading whitespace is dropped from the stream.
  bool trim_reply() const { return trim_reply_; }

 private:
  struct Role {
    std::string prefix, suffix;
  };
  const Role* FindRole(const std::string& name) const;
  std::string Normalize(std::string_view content) const;

  std::map<std::string, Role> roles_;
  std::string generation_prompt_;
  std::vector<std::string> stop_;
  bool collapse_ = true;
  bool trim_reply_ = true;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_CHAT_TEMPLATE_H_
