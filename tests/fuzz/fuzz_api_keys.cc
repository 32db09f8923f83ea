// The API keys file: any text loads or is refused naming the line, and a refusal never carries
// a key (a 16+ character run of the input may be one).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/core/auth.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto keys = rwkv::server::ApiKeys::Parse(text, "keys", {});
  if (keys.ok()) {
    if ((*keys)->size() == 0) std::abort();
    (void)(*keys)->Find(text);
  } else if (keys.status().message().size() > 256) {
    std::abort();
  }
  return 0;
}
