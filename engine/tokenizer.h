// Tokenizers: the RWKV World tokenizer (vocab file rwkv_vocab_v20230424.txt, spec section 10:
// greedy longest match over UTF-8 bytes), used by RWKV-4 World, 5, 6 and 7, and the GPT-NeoX
// "20B" BPE (tokenizer.json, spec section 11), used by RWKV-4 Pile/Raven and RWKV-7 Pile. In
// both, token 0 is end-of-text and decodes to nothing.
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
  virtual ~Tokenizer() = default;

  // A World vocabulary file (`<id> <python literal> <byte length>` per line). INVALID_ARGUMENT
  // naming the file and line on any malformed line, duplicate id or byte-length mismatch.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromText(std::string_view text, const std::string& name);

  virtual std::string_view kind() const = 0;  // "world", "neox"
  // Never fails: text that is not valid UTF-8 is encoded as is (World) or with U+FFFD (NeoX).
  virtual std::vector<int32_t> Encode(std::string_view text) const = 0;
  // Bytes of one token; empty for end-of-text (and NeoX's other special tokens); nullptr when
  // the id is unknown.
  virtual const std::string* TokenBytes(int32_t id) const = 0;
  // One past the largest id.
  virtual int32_t id_limit() const = 0;

  // Concatenated bytes of the tokens (not necessarily valid UTF-8). INVALID_ARGUMENT for an id
  // that is not in the vocabulary.
  absl::StatusOr<std::string> Decode(std::span<const int32_t> tokens) const;
};

// The GPT-NeoX BPE from a Hugging Face tokenizer.json (engine/neox_tokenizer.cc).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadNeoxTokenizer(const std::string& path);

// `kind`: "world", "neox", or "auto": NeoX for the vocabulary sizes of the Pile models (50277,
// 50304), else World; without a model (model_vocab <= 0), NeoX for a .json file. INVALID_ARGUMENT
// for another kind.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path, std::string_view kind,
                                                         int model_vocab);

// Turns a stream of tokens into text that is always valid UTF-8: a character split across tokens
// is held back until complete; bytes that can never form a character become U+FFFD.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
  // Text that became complete with this token (possibly empty). An id the tokenizer has no
  // bytes for (a head row past the vocabulary: 65530..65535 under World with a 65536-row head)
  // decodes to nothing, as Detokenize answers for it: every id below the model's vocabulary is
  // a valid token, some of them without text.
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
