// .pth checkpoints (zip archive + restricted unpickler), then the model on top: name mapping,
// architecture detection, weight loading. Every input loads or is refused; none crashes.
#include <cstdint>

#include "engine/model.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = rwkv::fuzz::WriteInput(data, size, ".pth");
  (void)rwkv::Model::Load(path);
  return 0;
}
