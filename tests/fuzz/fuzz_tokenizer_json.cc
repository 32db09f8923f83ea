// GPT-NeoX tokenizer.json files (JSON, BPE merges, added tokens, pre-tokenizer). One that loads
// must encode and decode a fixed text without failing.
#include <cstdint>
#include <cstdlib>

#include "engine/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tok = rwkv::LoadNeoxTokenizer(rwkv::fuzz::WriteInput(data, size, ".json"));
  if (!tok.ok()) return 0;
  const std::vector<int32_t> ids = (*tok)->Encode("Hello world, \xe4\xb8\x96\xe7\x95\x8c  \n\n123 <|endoftext|>");
  for (int32_t id : ids) {
    if (id < 0 || id >= (*tok)->id_limit()) std::abort();
  }
  rwkv::IncrementalDecoder dec(tok->get());
  for (int32_t id : ids) dec.Push(id);
  dec.Flush();
  return 0;
}
