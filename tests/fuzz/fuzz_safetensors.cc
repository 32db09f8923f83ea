// safetensors files and sharded checkpoints: the first input byte picks a single file (even) or a
// model.safetensors.index.json (odd) whose shards are the fixed files below; the rest is the
// file's bytes. Then the model on top, as for .pth.
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/model.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// A valid two-tensor shard the index may name (as "a.safetensors" or "b.safetensors").
void WriteShards(const std::string& dir) {
  static bool done = false;
  if (done) return;
  done = true;
  const std::string header = R"({"emb.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  for (const char* name : {"/a.safetensors", "/b.safetensors"}) {
    std::FILE* f = std::fopen((dir + name).c_str(), "wb");
    const uint64_t n = header.size();
    std::fwrite(&n, 8, 1, f);
    std::fwrite(header.data(), 1, header.size(), f);
    const float zeros[4] = {0, 0, 0, 0};
    std::fwrite(zeros, 4, 4, f);
    std::fclose(f);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if ((data[0] & 1) == 0) {
    (void)rwkv::Model::Load(rwkv::fuzz::WriteInput(data + 1, size - 1, ".safetensors"));
    return 0;
  }
  const char* tmp = std::getenv("TMPDIR");
  static const std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/rwkv_fuzz_shards_" + std::to_string(getpid());
  mkdir(dir.c_str(), 0700);
  WriteShards(dir);
  const std::string index = dir + "/model.safetensors.index.json";
  std::FILE* f = std::fopen(index.c_str(), "wb");
  if (size > 1) std::fwrite(data + 1, 1, size - 1, f);
  std::fclose(f);
  (void)rwkv::Model::Load(index);
  return 0;
}
