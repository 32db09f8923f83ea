// Shared by the fuzz targets: inputs that the code under test reads from files go through a
// private temporary file (one per process, rewritten for each input).
#ifndef RWKV_TESTS_FUZZ_FUZZ_UTIL_H_
#define RWKV_TESTS_FUZZ_FUZZ_UTIL_H_

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace rwkv::fuzz {

// A path in $TMPDIR (else /tmp) ending in `suffix`, holding exactly `data`.
inline const std::string& WriteInput(const uint8_t* data, size_t size, const std::string& suffix) {
  static std::string path;
  const char* dir = std::getenv("TMPDIR");
  path = std::string(dir && *dir ? dir : "/tmp") + "/rwkv_fuzz_" + std::to_string(getpid()) + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace rwkv::fuzz

#endif  // RWKV_TESTS_FUZZ_FUZZ_UTIL_H_
