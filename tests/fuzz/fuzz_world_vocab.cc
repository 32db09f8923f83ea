// World vocabulary files (`<id> <python literal> <byte length>` lines). A vocabulary that loads
// must encode and decode a fixed text, and Decode(Encode(x)) must give x back.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engine/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tok = rwkv::Tokenizer::FromText(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!tok.ok()) return 0;
  const std::string_view text = "Hello, \xe4\xb8\x96\xe7\x95\x8c! \x01\xff tokens";
  const std::vector<int32_t> ids = (*tok)->Encode(text);
  absl::StatusOr<std::string> back = (*tok)->Decode(ids);
  if (!back.ok() || *back != text) std::abort();  // The greedy byte match covers every byte.
  return 0;
}
