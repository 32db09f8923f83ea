#include "server/core/chat_template.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "engine/absl_compat.h"
#include "nlohmann/json.hpp"
#include "server/core/vision.h"

namespace rwkv::server {

ChatTemplate ChatTemplate::World() {
  ChatTemplate t;
  t.roles_["system"] = {"System: ", "\n\n"};
  t.roles_["user"] = {"User: ", "\n\n"};
  t.roles_["assistant"] = {"Assistant: ", "\n\n"};
  t.generation_prompt_ = "Assistant:";
  t.stop_ = {"\n\n"};
  return t;
}

absl::StatusOr<ChatTemplate> ChatTemplate::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--chat-template: cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path);
}

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(std::string_view text, std::string_view name) {
  using nlohmann::json;
  const auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("--chat-template ", AV(name), ": ", what));
  };
  const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  static const char* const kKeys[] = {"roles", "generation_prompt", "stop", "collapse_blank_lines", "trim_reply"};
  for (const auto& [k, v] : j.items()) {
    if (std::find(std::begin(kKeys), std::end(kKeys), k) == std::end(kKeys)) return bad(absl::StrCat("unknown key '", k, "'"));
  }
  ChatTemplate t;
  const auto roles = j.find("roles");
  if (roles == j.end() || !roles->is_object() || roles->empty()) return bad("'roles' must be an object of roles");
  for (const auto& [role, v] : roles->items()) {
    if (!v.is_object()) return bad(absl::StrCat("roles.", role, " must be an object"));
    Role r;
    for (const auto& [k, s] : v.items()) {
      if ((k != "prefix" && k != "suffix") || !s.is_string()) {
        return bad(absl::StrCat("roles.", role, ".", k, ": only string 'prefix' and 'suffix'"));
      }
      (k == "prefix" ? r.prefix : r.suffix) = s.get<std::string>();
    }
    t.roles_[role] = std::move(r);
  }
  if (const auto g = j.find("generation_prompt"); g != j.end()) {
    if (!g->is_string()) return bad("'generation_prompt' must be a string");
    t.generation_prompt_ = g->get<std::string>();
  }
  if (const auto s = j.find("stop"); s != j.end()) {
    if (!s->is_array() || s->size() > 8) return bad("'stop' must be an array of at most 8 strings");
    for (const json& x : *s) {
      if (!x.is_string() || x.get<std::string>().empty() || x.get<std::string>().size() > 256) {
        return bad("'stop' entries must be strings of 1..256 bytes");
      }
      t.stop_.push_back(x.get<std::string>());
    }
  }
  for (const auto& [key, field] : {std::pair{"collapse_blank_lines", &t.collapse_}, std::pair{"trim_reply", &t.trim_reply_}}) {
    if (const auto b = j.find(key); b != j.end()) {
      if (!b->is_boolean()) return bad(absl::StrCat("'", key, "' must be true or false"));
      *field = b->get<bool>();
    }
  }
  return t;
}

const ChatTemplate::Role* ChatTemplate::FindRole(const std::string& name) const {
  auto it = roles_.find(name);
  if (it == roles_.end() && name == "developer") it = roles_.find("system");
  return it == roles_.end() ? nullptr : &it->second;
}

std::string ChatTemplate::Normalize(std::string_view content) const {
  if (!collapse_) return std::string(content);
  std::string s = absl::StrReplaceAll(AV(content), {{"\r\n", "\n"}});
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\n' && !out.empty() && out.back() == '\n') continue;  // A blank line would end the turn.
    out.push_back(c);
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

std::string ChatTemplate::Text(std::span<const ChatMessage> messages) const {
  std::string out;
  for (const ChatMessage& m : messages) {
    if (const Role* r = FindRole(m.role)) absl::StrAppend(&out, r->prefix, Normalize(m.content), r->suffix);
  }
  return out + generation_prompt_;
}

absl::StatusOr<ChatPrompt> ChatTemplate::Render(std::span<const ChatMessage> messages, const Tokenizer& tokenizer,
                                                const char* field, int image_tokens) const {
  if (messages.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty: a chat needs a message"));
  ChatPrompt p;
  const auto append = [&](std::string_view text) {
    const std::vector<int32_t> ids = tokenizer.Encode(text);
    p.tokens.insert(p.tokens.end(), ids.begin(), ids.end());
  };
  for (size_t i = 0; i < messages.size(); ++i) {
    const Role* r = FindRole(messages[i].role);
    if (r == nullptr) {
      std::string known;
      for (const auto& [name, unused] : roles_) absl::StrAppend(&known, known.empty() ? "" : ", ", name);
      return absl::InvalidArgumentError(absl::StrFormat("%s[%d].role '%s' is not one of the chat template's roles (%s)",
                                                        field, i, messages[i].role.substr(0, 64), known));
    }
    std::string text = absl::StrCat(r->prefix, Normalize(messages[i].content), r->suffix);
    if (messages[i].images > 0) {
      // The prefix, then each image and the newline after it; the newline and the content are
      // tokenized together (VisualRWKV's text pieces between "<image>" markers).
      append(r->prefix);
      for (int k = 0; k < messages[i].images; ++k) {
        if (k > 0) append("\n");
        p.images.push_back(static_cast<int>(p.tokens.size()));
        p.tokens.insert(p.tokens.end(), static_cast<size_t>(image_tokens), kImagePlaceholder);
      }
      append("\n" + text.substr(r->prefix.size()));
    } else if (!generation_prompt_.empty() && absl::StartsWith(text, generation_prompt_)) {
      append(generation_prompt_);  // As the model saw it before writing this reply.
      append(std::string_view(text).substr(generation_prompt_.size()));
    } else {
      append(text);
    }
    p.boundaries.push_back(static_cast<int>(p.tokens.size()));
  }
  append(generation_prompt_);
  if (p.boundaries.back() != static_cast<int>(p.tokens.size())) p.boundaries.push_back(static_cast<int>(p.tokens.size()));
  return p;
}

}  // namespace rwkv::server
