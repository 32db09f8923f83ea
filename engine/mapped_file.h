// A read-only memory mapping of a whole file. Owns the mapping; movable, not copyable.
#ifndef RWKV_ENGINE_MAPPED_FILE_H_
#define RWKV_ENGINE_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace rwkv {

class MappedFile {
 public:
  // Maps `path` read-only. Fails with NOT_FOUND / PERMISSION_DENIED / INVALID_ARGUMENT (empty file
  // or not a regular file), naming the path.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size) : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace rwkv

#endif  // RWKV_ENGINE_MAPPED_FILE_H_
