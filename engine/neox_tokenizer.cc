// The GPT-NeoX "20B" tokenizer (spec section 11): a Hugging Face tokenizer.json with an NFC
// normaliser, GPT-2 byte-level pre-tokenisation and BPE merges, plus added tokens split out first.
// Unicode classes come from RE2 and normalisation from utf8proc, not from tables of our own.
#include <re2/re2.h>
#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <fstream>
#include <queue>
#include <sstream>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer.h"
#include "nlohmann/json.hpp"

namespace rwkv {
namespace {

using Json = nlohmann::json;

constexpr char kReplacement[] = "\xef\xbf\xbd";

// GPT-2's byte-level alphabet: printable bytes stand for themselves, the other 68 map to
// U+0100 + n in increasing byte order (space -> U+0120 'Ġ', newline -> U+010A 'Ċ').
std::array<uint32_t, 256> ByteToCodepoint() {
  std::array<uint32_t, 256> t{};
  uint32_t n = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    t[b] = printable ? b : 256 + n++;
  }
  return t;
}

void AppendCodepoint(uint32_t cp, std::string* out) {
  utf8proc_uint8_t buf[4];
  const utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  out->append(reinterpret_cast<const char*>(buf), n);
}

// The GPT-2 pre-tokeniser pattern,
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with \s spelled as Unicode White_Space (ASCII controls, U+0085 and the \p{Z} separators), as in
// the regex engine of the reference implementation. RE2 has no look-ahead: the last two
// alternatives are one capture group, and Pretokenize gives back a run's last character when a
// non-space follows it, which is what \s+(?!\S) does.
constexpr char kPattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\pL+| ?\pN+| ?[^\t\n\x0B\f\r\x{85}\pZ\pL\pN]+|([\t\n\x0B\f\r\x{85}\pZ]+))";

class NeoxTokenizer final : public Tokenizer {
 public:
  std::string_view kind() const override { return "neox"; }
  std::vector<int32_t> Encode(std::string_view text) const override;
  const std::string* TokenBytes(int32_t id) const override {
    if (id < 0 || id >= id_limit() || !known_[id]) return nullptr;
    return &bytes_[id];
  }
  int32_t id_limit() const override { return static_cast<int32_t>(bytes_.size()); }

  // INVALID_ARGUMENT naming the file for anything malformed, a JSON value of the wrong type
  // included (nlohmann's accessors throw on those; Parse turns that into the status).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Parse(const Json& j, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> ParseUnchecked(const Json& j, const std::string& path);

 private:
  NeoxTokenizer() : pattern_(kPattern) {}
  void EncodeSegment(std::string_view text, std::vector<int32_t>* out) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;

  RE2 pattern_;
  bool nfc_ = false, add_prefix_space_ = false;
  std::vector<std::string> bytes_;  // Decoded bytes by id.
  std::vector<bool> known_;
  std::array<int32_t, 256> byte_id_{};  // The token of each byte's symbol.
  struct Merge {
    int32_t rank, id;
  };
  absl::flat_hash_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rank, merged id.
  struct Added {
    std::string content;
    int32_t id;
  };
  std::vector<Added> added_;             // Longest first.
  std::array<bool, 256> added_first_{};  // Bytes an added token starts with.
};

absl::StatusOr<std::unique_ptr<Tokenizer>> NeoxTokenizer::Parse(const Json& j, const std::string& path) {
  try {
    return ParseUnchecked(j, path);
  } catch (const Json::exception& e) {
    // Found by fuzz_tokenizer_json: a section of the wrong type (a null pre_tokenizer) threw
    // through value().
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed tokenizer.json: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> NeoxTokenizer::ParseUnchecked(const Json& j, const std::string& path) {
  auto bad = [&](const std::string& what) { return absl::InvalidArgumentError(absl::StrCat(path, ": ", what)); };
  std::unique_ptr<NeoxTokenizer> t(new NeoxTokenizer());
  if (!t->pattern_.ok()) return absl::InternalError(absl::StrCat("pre-tokeniser pattern: ", t->pattern_.error()));
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) return bad("not a tokenizer.json (no model)");
  const Json& model = j["model"];
  if (model.value("type", "") != "BPE") return bad("model.type must be BPE");
  for (const char* k : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(k) && !model[k].is_null()) return bad(absl::StrCat("model.", k, " is not supported"));
  }
  const Json norm = j.value("normalizer", Json());
  if (!norm.is_null()) {
    if (norm.value("type", "") != "NFC")
      return bad(absl::StrCat("normalizer ", norm.dump(), " is not supported (NFC or none)"));
    t->nfc_ = true;
  }
  const Json pre = j.value("pre_tokenizer", Json());
  if (pre.value("type", "") != "ByteLevel" || !pre.value("use_regex", true)) {
    return bad(absl::StrCat("pre_tokenizer ", pre.dump(), " is not supported (ByteLevel with its regex)"));
  }
  t->add_prefix_space_ = pre.value("add_prefix_space", false);

  // Token strings -> ids; every id's bytes through the inverse byte table (a token with a
  // character outside it contributes its raw UTF-8, as the byte-level decoder does).
  const std::array<uint32_t, 256> b2c = ByteToCodepoint();
  absl::flat_hash_map<uint32_t, uint8_t> c2b;
  for (int b = 0; b < 256; ++b) c2b[b2c[b]] = static_cast<uint8_t>(b);
  absl::flat_hash_map<std::string, int32_t> vocab;
  auto define = [&](const std::string& s, int64_t id, bool special) -> absl::Status {
    if (id < 0 || id > (1 << 24)) return bad(absl::StrCat("token '", s, "' has id ", id));
    if (id >= static_cast<int64_t>(t->bytes_.size())) {
      t->bytes_.resize(id + 1);
      t->known_.resize(id + 1, false);
    }
    std::string decoded;
    if (!special) {
      bool all_mapped = true;
      for (utf8proc_ssize_t i = 0; i < static_cast<utf8proc_ssize_t>(s.size());) {
        utf8proc_int32_t cp;
        const utf8proc_ssize_t n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data()) + i,
                                                    static_cast<utf8proc_ssize_t>(s.size()) - i, &cp);
        if (n <= 0) return bad(absl::StrCat("token id ", id, " is not valid UTF-8"));
        auto it = c2b.find(static_cast<uint32_t>(cp));
        if (it == c2b.end()) {
          all_mapped = false;
          break;
        }
        decoded.push_back(static_cast<char>(it->second));
        i += n;
      }
      if (!all_mapped) decoded = s;
    }
    t->bytes_[id] = std::move(decoded);
    t->known_[id] = true;
    return absl::OkStatus();
  };
  if (!model.contains("vocab") || !model["vocab"].is_object()) return bad("model.vocab must be an object");
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) return bad(absl::StrCat("model.vocab['", it.key(), "'] is not an integer"));
    const int64_t id = it.value().get<int64_t>();
    if (absl::Status st = define(it.key(), id, false); !st.ok()) return st;
    vocab[it.key()] = static_cast<int32_t>(id);
  }
  for (int b = 0; b < 256; ++b) {
    std::string sym;
    AppendCodepoint(b2c[b], &sym);
    auto it = vocab.find(sym);
    if (it == vocab.end()) return bad(absl::StrCat("byte ", b, " has no token; byte-level BPE needs all 256"));
    t->byte_id_[b] = it->second;
  }
  const Json merges = model.value("merges", Json::array());
  if (!merges.is_array()) return bad("model.merges must be an array");
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Json& m = merges[rank];
    std::string a, b;
    if (m.is_string()) {  // "left right"
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return bad(absl::StrCat("merge ", rank, " '", s, "' is not two tokens"));
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["left", "right"]
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      return bad(absl::StrCat("merge ", rank, " is neither \"a b\" nor [a, b]"));
    }
    auto ia = vocab.find(a), ib = vocab.find(b), ic = vocab.find(a + b);
    if (ia == vocab.end() || ib == vocab.end() || ic == vocab.end()) {
      return bad(absl::StrCat("merge ", rank, " '", a, " ", b, "' uses or makes a token not in the vocabulary"));
    }
    const uint64_t key = (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    t->merges_.try_emplace(key, Merge{static_cast<int32_t>(rank), ic->second});  // The first rank wins.
  }
  for (const Json& a : j.value("added_tokens", Json::array())) {
    if (!a.is_object() || !a.contains("id") || !a.contains("content")) return bad("an added token lacks id or content");
    for (const char* k : {"single_word", "lstrip", "rstrip"}) {
      if (a.value(k, false)) return bad(absl::StrCat("added token ", a["id"].dump(), " sets ", k, ", not supported"));
    }
    const std::string content = a["content"].get<std::string>();
    const int64_t id = a["id"].get<int64_t>();
    if (content.empty()) return bad(absl::StrCat("added token ", id, " is empty"));
    if (absl::Status st = define(content, id, a.value("special", false)); !st.ok()) return st;
    t->added_.push_back({content, static_cast<int32_t>(id)});
    t->added_first_[static_cast<unsigned char>(content[0])] = true;
  }
  std::stable_sort(t->added_.begin(), t->added_.end(),
                   [](const Added& x, const Added& y) { return x.content.size() > y.content.size(); });
  if (t->id_limit() == 0 || !t->known_[kEndOfText]) return bad("id 0 (end-of-text) is not defined");
  t->bytes_[kEndOfText].clear();  // End-of-text decodes to nothing.
  return std::unique_ptr<Tokenizer>(std::move(t));
}

std::vector<int32_t> NeoxTokenizer::Encode(std::string_view text) const {
  // Valid UTF-8 first (the normaliser and the pattern need it): invalid bytes become U+FFFD.
  std::string clean;
  const size_t valid = AppendValidUtf8(text, &clean);
  if (valid < text.size()) clean += kReplacement;
  std::string normalized;
  if (nfc_) {
    utf8proc_uint8_t* dst = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(clean.data()),
                                            static_cast<utf8proc_ssize_t>(clean.size()), &dst,
                                            static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n >= 0) normalized.assign(reinterpret_cast<const char*>(dst), n);
    std::free(dst);
    if (n < 0) normalized = clean;  // Cannot happen on valid UTF-8; keep the text as is.
  } else {
    normalized = std::move(clean);
  }
  // Added tokens split the text first: at each position the longest one that matches.
  std::vector<int32_t> out;
  const std::string_view s = normalized;
  size_t seg = 0;
  for (size_t i = 0; i < s.size();) {
    const Added* hit = nullptr;
    if (added_first_[static_cast<unsigned char>(s[i])]) {
      for (const Added& a : added_) {
        if (s.compare(i, a.content.size(), a.content) == 0) {
          hit = &a;
          break;
        }
      }
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    EncodeSegment(s.substr(seg, i - seg), &out);
    out.push_back(hit->id);
    i += hit->content.size();
    seg = i;
  }
  EncodeSegment(s.substr(seg), &out);
  return out;
}

void NeoxTokenizer::EncodeSegment(std::string_view text, std::vector<int32_t>* out) const {
  if (text.empty()) return;
  std::string prefixed;
  if (add_prefix_space_ && text[0] != ' ') {
    prefixed = absl::StrCat(" ", std::string(text));
    text = prefixed;
  }
  const re2::StringPiece in(text.data(), text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    re2::StringPiece m[2];
    size_t len;
    if (pattern_.Match(in, pos, text.size(), RE2::ANCHOR_START, m, 2) && !m[0].empty()) {
      len = m[0].size();
      if (m[1].data() != nullptr && pos + len < text.size()) {
        // A whitespace run followed by a non-space keeps its last character for the next piece,
        // unless it is that one character.
        size_t last = len - 1;
        while (last > 0 && (static_cast<unsigned char>(text[pos + last]) & 0xc0) == 0x80) --last;
        if (last > 0) len = last;
      }
    } else {  // Every character matches some alternative; one code point, defensively.
      len = 1;
      while (pos + len < text.size() && (static_cast<unsigned char>(text[pos + len]) & 0xc0) == 0x80) ++len;
    }
    EncodeWord(text.substr(pos, len), out);
    pos += len;
  }
}

void NeoxTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  const int n = static_cast<int>(word.size());
  std::vector<int32_t> sym(n), next(n), prev(n);
  for (int i = 0; i < n; ++i) {
    sym[i] = byte_id_[static_cast<unsigned char>(word[i])];
    next[i] = i + 1;
    prev[i] = i - 1;
  }
  // Lowest rank first, leftmost among equal ranks; entries whose pair has changed are skipped.
  using Entry = std::tuple<int32_t, int32_t, int32_t, int32_t>;  // rank, position, left, right
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
  auto push = [&](int i) {
    if (i < 0 || next[i] >= n) return;
    auto it = merges_.find((static_cast<uint64_t>(sym[i]) << 32) | static_cast<uint32_t>(sym[next[i]]));
    if (it != merges_.end()) heap.emplace(it->second.rank, i, sym[i], sym[next[i]]);
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const auto [rank, i, left, right] = heap.top();
    heap.pop();
    if (!alive[i] || next[i] >= n || sym[i] != left || sym[next[i]] != right) continue;
    const int j = next[i];
    sym[i] = merges_.find((static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right))->second.id;
    alive[j] = false;
    next[i] = next[j];
    if (next[j] < n) prev[next[j]] = i;
    push(prev[i]);
    push(i);
  }
  for (int i = 0; i < n; i = next[i]) out->push_back(sym[i]);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadNeoxTokenizer(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the tokenizer file"));
  std::stringstream ss;
  ss << in.rdbuf();
  Json j = Json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  return NeoxTokenizer::Parse(j, path);
}

}  // namespace rwkv
