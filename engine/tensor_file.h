// A checkpoint opened for reading: the list of its tensors as typed, strided views into a
// memory-mapped file. Formats: safetensors and PyTorch .pth (zip + restricted unpickler).
//
// Thread safety: immutable after Open; any thread may read it.
#ifndef RWKV_ENGINE_TENSOR_FILE_H_
#define RWKV_ENGINE_TENSOR_FILE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/dtype.h"
#include "engine/mapped_file.h"

namespace rwkv {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;   // In elements, one per dimension.
  const uint8_t* data = nullptr;  // Element (0, ..., 0); every addressed element is inside the file.

  int64_t numel() const;
  bool contiguous() const;
  std::string ShapeString() const;  // "[64, 32]"
};

class TensorFile {
 public:
  // Opens `path`, choosing the format from its first bytes (zip -> .pth, else safetensors).
  // Sharded safetensors (Hugging Face layout) open through their `*.safetensors.index.json`, or
  // through a directory holding model.safetensors.index.json or model.safetensors.
  // Every tensor's extent is checked against its file, so a truncated or inconsistent file fails
  // here with a message naming the file (and the tensor, where one is at fault).
  static absl::StatusOr<std::unique_ptr<TensorFile>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  std::string_view format() const { return format_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorInfo* Find(std::string_view name) const;

  // Replaces the tensor list (used by the name mapper). Names must stay unique.
  void ReplaceTensors(std::vector<TensorInfo> tensors);

 private:
  TensorFile(std::string path, std::vector<std::unique_ptr<MappedFile>> files, std::string format,
             std::vector<TensorInfo> tensors);
  static absl::StatusOr<std::unique_ptr<TensorFile>> OpenSharded(const std::string& index_path);
  std::string path_;
  std::vector<std::unique_ptr<MappedFile>> files_;  // The tensors point into these.
  std::string format_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

// Parsers over a mapped file; exposed for tests. They only build views, never copy tensor data.
absl::StatusOr<std::vector<TensorInfo>> ParseSafetensors(const MappedFile& file);
absl::StatusOr<std::vector<TensorInfo>> ParsePth(const MappedFile& file);

// Drops the pages that hold `t` from this process's resident memory (the mapping stays valid:
// a later read faults them back in). A loader calls it once a tensor is converted, so that the
// mapped file never sits in memory beside the converted weights.
void ReleaseTensorPages(const TensorInfo& t);

// Writes the tensor's elements, converted to float, in row-major order into `out`.
// REQUIRES: IsFloat(t.dtype) and `out` has t.numel() elements.
void CopyToFloat(const TensorInfo& t, float* out);

}  // namespace rwkv

#endif  // RWKV_ENGINE_TENSOR_FILE_H_
