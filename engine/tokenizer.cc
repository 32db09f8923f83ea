#include "engine/tokenizer.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/absl_compat.h"

namespace rwkv {
namespace {

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

bool ParseHex(std::string_view s, uint32_t* out) {
  uint32_t v = 0;
  for (char ch : s) {
    int d;
    if (ch >= '0' && ch <= '9')
      d = ch - '0';
    else if (ch >= 'a' && ch <= 'f')
      d = ch - 'a' + 10;
    else if (ch >= 'A' && ch <= 'F')
      d = ch - 'A' + 10;
    else
      return false;
    v = v * 16 + d;
  }
  *out = v;
  return !s.empty();
}

// A Python str or bytes literal -> its bytes. In a str, \xHH and \uHHHH are code points (UTF-8
// encoded); in bytes, \xHH is one raw byte (spec pitfall 13).
bool ParsePythonLiteral(std::string_view lit, std::string* out) {
  bool is_bytes = false;
  if (!lit.empty() && lit[0] == 'b') {
    is_bytes = true;
    lit.remove_prefix(1);
  }
  if (lit.size() < 2 || (lit[0] != '\'' && lit[0] != '"') || lit.back() != lit[0]) return false;
  lit = lit.substr(1, lit.size() - 2);
  out->clear();
  for (size_t i = 0; i < lit.size(); ++i) {
    if (lit[i] != '\\') {
      out->push_back(lit[i]);
      continue;
    }
    if (++i >= lit.size()) return false;
    uint32_t cp;
    switch (lit[i]) {
      case '\\':
        out->push_back('\\');
        break;
      case '\'':
        out->push_back('\'');
        break;
      case '"':
        out->push_back('"');
        break;
      case 'n':
        out->push_back('\n');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 't':
        out->push_back('\t');
        break;
      case 'x':
        if (i + 2 >= lit.size() || !ParseHex(lit.substr(i + 1, 2), &cp)) return false;
        if (is_bytes)
          out->push_back(static_cast<char>(cp));
        else
          AppendUtf8(cp, out);
        i += 2;
        break;
      case 'u':
        if (is_bytes || i + 4 >= lit.size() || !ParseHex(lit.substr(i + 1, 4), &cp)) return false;
        AppendUtf8(cp, out);
        i += 4;
        break;
      case 'U':
        if (is_bytes || i + 8 >= lit.size() || !ParseHex(lit.substr(i + 1, 8), &cp) || cp > 0x10ffff) return false;
        AppendUtf8(cp, out);
        i += 8;
        break;
      default:
        return false;
    }
  }
  return true;
}

// Length of a UTF-8 sequence from its lead byte, 0 if it cannot lead one.
int SeqLen(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return 2;
  if (c >= 0xe0 && c <= 0xef) return 3;
  if (c >= 0xf0 && c <= 0xf4) return 4;
  return 0;
}

// Whether byte `i` (1-based within the sequence) is a valid continuation after lead `c`.
bool ValidCont(unsigned char lead, int i, unsigned char c) {
  if ((c & 0xc0) != 0x80) return false;
  if (i != 1) return true;
  if (lead == 0xe0) return c >= 0xa0;  // No overlongs.
  if (lead == 0xed) return c <= 0x9f;  // No surrogates.
  if (lead == 0xf0) return c >= 0x90;
  if (lead == 0xf4) return c <= 0x8f;  // <= U+10FFFF.
  return true;
}

constexpr char kReplacement[] = "\xef\xbf\xbd";

class WorldTokenizer final : public Tokenizer {
 public:
  std::string_view kind() const override { return "world"; }
  std::vector<int32_t> Encode(std::string_view text) const override;
  const std::string* TokenBytes(int32_t id) const override;
  int32_t id_limit() const override { return static_cast<int32_t>(bytes_.size()); }

  std::vector<std::string> bytes_;  // By id; empty = unused id.
  std::vector<bool> known_;         // By id.
  // Byte trie: edge (node << 8 | byte) -> child node; node 0 is the root.
  absl::flat_hash_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> node_token_;  // Token ending at node, or -1.
};

}  // namespace

size_t AppendValidUtf8(std::string_view s, std::string* out) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char lead = s[i];
    const int len = SeqLen(lead);
    if (len == 0) {
      out->append(kReplacement);
      ++i;
      continue;
    }
    int ok = 1;
    while (ok < len && i + ok < s.size() && ValidCont(lead, ok, s[i + ok])) ++ok;
    if (ok == len) {
      out->append(s.substr(i, len));
      i += len;
    } else if (i + ok == s.size()) {
      return i;  // A valid but incomplete character at the end: hold it back.
    } else {
      out->append(kReplacement);
      i += ok;  // The bytes so far can never complete; resume at the offending byte.
    }
  }
  return i;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path, std::string_view kind,
                                                         int model_vocab) {
  if (kind == "auto") {
    const bool neox = model_vocab > 0 ? model_vocab == 50277 || model_vocab == 50304
                                      : path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
    kind = neox ? "neox" : "world";
  }
  if (kind == "world") return Tokenizer::Load(path);
  if (kind == "neox") return LoadNeoxTokenizer(path);
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer '", std::string(kind), "' is unknown; expected auto, world or neox"));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the vocabulary file"));
  std::stringstream ss;
  ss << in.rdbuf();
  return FromText(ss.str(), path);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromText(std::string_view text, const std::string& name) {
  auto t = std::make_unique<WorldTokenizer>();
  t->node_token_.push_back(-1);
  t->bytes_.resize(1);
  t->known_.assign(1, true);  // Id 0: end-of-text, no bytes.
  int line_no = 0;
  size_t pos = 0;
  std::string bytes;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": ", what));
    };
    const size_t first = line.find(' '), last = line.rfind(' ');
    if (first == std::string_view::npos || first == last) return bad("expected '<id> <literal> <length>'");
    int32_t id;
    int64_t len;
    if (!absl::SimpleAtoi(AV(line.substr(0, first)), &id) || id <= 0 || id > (1 << 24))
      return bad("id must be a positive integer");
    if (!absl::SimpleAtoi(AV(line.substr(last + 1)), &len)) return bad("byte length must be an integer");
    if (!ParsePythonLiteral(line.substr(first + 1, last - first - 1), &bytes)) return bad("malformed token literal");
    if (static_cast<int64_t>(bytes.size()) != len || bytes.empty()) {
      return bad(absl::StrCat("token is ", bytes.size(), " bytes, the line says ", len));
    }
    if (id >= static_cast<int32_t>(t->bytes_.size())) {
      t->bytes_.resize(id + 1);
      t->known_.resize(id + 1, false);
    }
    if (t->known_[id]) return bad(absl::StrCat("id ", id, " appears twice"));
    t->known_[id] = true;
    t->bytes_[id] = bytes;
    int32_t node = 0;
    for (unsigned char c : bytes) {
      auto [it, inserted] =
          t->edges_.try_emplace((static_cast<uint64_t>(node) << 8) | c, static_cast<int32_t>(t->node_token_.size()));
      if (inserted) t->node_token_.push_back(-1);
      node = it->second;
    }
    if (t->node_token_[node] >= 0) return bad(absl::StrCat("same bytes as id ", t->node_token_[node]));
    t->node_token_[node] = id;
  }
  for (int b = 0; b < 256; ++b) {
    if (!t->edges_.contains(static_cast<uint64_t>(b))) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": byte 0x", absl::Hex(b, absl::kZeroPad2),
                                                     " has no single-byte token; greedy encoding needs all 256"));
    }
  }
  return std::unique_ptr<Tokenizer>(std::move(t));
}

std::vector<int32_t> WorldTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> out;
  size_t p = 0;
  while (p < text.size()) {
    int32_t node = 0, best = -1;
    size_t best_len = 0;
    for (size_t i = p; i < text.size(); ++i) {
      auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[i]));
      if (it == edges_.end()) break;
      node = it->second;
      if (node_token_[node] >= 0) {
        best = node_token_[node];
        best_len = i - p + 1;
      }
    }
    out.push_back(best);  // Every byte has a token (checked at load), so best >= 0.
    p += best_len;
  }
  return out;
}

const std::string* WorldTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= id_limit() || !known_[id]) return nullptr;
  return &bytes_[id];
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> tokens) const {
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string* b = TokenBytes(tokens[i]);
    if (!b) {
      return absl::InvalidArgumentError(absl::StrCat("token ", tokens[i], " at position ", i,
                                                     " is not in the vocabulary (ids 0..", id_limit() - 1, ")"));
    }
    out += *b;
  }
  return out;
}

std::string IncrementalDecoder::Push(int32_t token) {
  const std::string* b = tokenizer_->TokenBytes(token);
  if (!b) return "";  // No bytes: a held-back character may still complete with the next token.
  pending_ += *b;
  std::string out;
  const size_t used = AppendValidUtf8(pending_, &out);
  pending_.erase(0, used);
  return out;
}

std::string IncrementalDecoder::Flush() {
  std::string out;
  const size_t used = AppendValidUtf8(pending_, &out);
  if (used < pending_.size()) out.append(kReplacement);
  pending_.clear();
  return out;
}

}  // namespace rwkv
