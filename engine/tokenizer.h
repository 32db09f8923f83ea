// The RWKV World tokenizer (vocab file rwkv_vocab_v20230424.txt, spec section 10): greedy longest
// match over UTF-8 bytes. Token 0 is end-of-text and decodes to nothing.
//
// Thread safety: immutable after Load; any thread may use it. IncrementalDecoder is per stream.
#ifndef RWKV_ENGINE_TOKENIZER_H_
#define RWKV_ENGINE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace rwkv {

class Tokenizer {
 public:
  static constexpr int32_t kEndOfText = 0;

  // Parses a vocab file (`<id> <python literal> <byte length>` per line). INVALID_ARGUMENT naming
  // the file and line on any malformed line, duplicate id or byte-length mismatch.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromText(std::string_view text, const std::string& name);

  // Greedy longest match; never fails (every byte is a token).
  std::vector<int32_t> Encode(std::string_view text) const;
  // Concatenated bytes of the tokens (not necessarily valid UTF-8). INVALID_ARGUMENT for an id
  // that is not in the vocabulary.
  absl::StatusOr<std::string> Decode(std::span<const int32_t> tokens) const;
  // Bytes of one token; empty for end-of-text; nullptr when the id is unknown.
  const std::string* TokenBytes(int32_t id) const;
  // One past the largest id.
  int32_t id_limit() const { return static_cast<int32_t>(bytes_.size()); }

 private:
  Tokenizer() = default;
  std::vector<std::string> bytes_;  // By id; empty = unused id.
  std::vector<bool> known_;         // By id.
  // Byte trie: edge (node << 8 | byte) -> child node; node 0 is the root.
  absl::flat_hash_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> node_token_;  // Token ending at node, or -1.
  size_t max_token_bytes_ = 0;
};

// Turns a stream of tokens into text that is always valid UTF-8: a character split across tokens
// is held back until complete; bytes that can never form a character become U+FFFD.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
  // Text that became complete with this token (possibly empty). Unknown ids decode to U+FFFD.
  std::string Push(int32_t token);
  // Whatever is still held back, with U+FFFD for an incomplete character. Resets the decoder.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
};

// Length of the longest prefix of `s` that is complete, valid UTF-8, with invalid bytes replaced
// by U+FFFD in `out`. Stops before a trailing incomplete (but so far valid) sequence.
size_t AppendValidUtf8(std::string_view s, std::string* out);

}  // namespace rwkv

#endif  // RWKV_ENGINE_TOKENIZER_H_
