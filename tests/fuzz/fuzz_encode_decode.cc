// Encoding and decoding with the shipped World vocabulary and the tiny NeoX tokenizer. The input
// is text to encode, and (as 16-bit little-endian pairs) ids to decode. Checked: World's
// Decode(Encode(x)) == x for any bytes; every id Encode gives is below id_limit; a stream of any
// ids decodes (IncrementalDecoder) to valid UTF-8.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "engine/tokenizer.h"

namespace {

const rwkv::Tokenizer& World() {
  static const std::unique_ptr<rwkv::Tokenizer> t =
      *rwkv::Tokenizer::Load(std::string(RWKV_SOURCE_DIR) + "/engine/vocab/rwkv_vocab_v20230424.txt");
  return *t;
}
const rwkv::Tokenizer& Neox() {
  static const std::unique_ptr<rwkv::Tokenizer> t =
      *rwkv::LoadNeoxTokenizer(std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/tiny-neox-tokenizer.json");
  return *t;
}

void CheckDecoded(const rwkv::Tokenizer& tok, const uint8_t* data, size_t size) {
  rwkv::IncrementalDecoder dec(&tok);
  std::string out;
  for (size_t i = 0; i + 1 < size; i += 2) out += dec.Push(static_cast<int32_t>(data[i] | data[i + 1] << 8));
  out += dec.Flush();
  std::string valid;
  if (rwkv::AppendValidUtf8(out, &valid) != out.size() || valid != out) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (const rwkv::Tokenizer* tok : {&World(), &Neox()}) {
    const std::vector<int32_t> ids = tok->Encode(text);
    for (int32_t id : ids) {
      if (id < 0 || id >= tok->id_limit()) std::abort();
    }
    absl::StatusOr<std::string> back = tok->Decode(ids);
    if (!back.ok()) std::abort();
    if (tok == &World() && *back != text) std::abort();
    CheckDecoded(*tok, data, size);
  }
  return 0;
}
