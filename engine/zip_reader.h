// Reads the central directory of a zip archive held in memory (torch.save's container).
// Sizes and offsets come from the central directory (torch writes zeros in local headers),
// with ZIP64 records for archives and entries past 4 GiB.
#ifndef RWKV_ENGINE_ZIP_READER_H_
#define RWKV_ENGINE_ZIP_READER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/mapped_file.h"

namespace rwkv {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;       // 0 = stored; torch.save never compresses.
  uint64_t data_offset = 0;  // Offset of the entry's bytes in the file.
  uint64_t size = 0;         // Compressed size (= uncompressed for stored entries).
};

// Every entry's [data_offset, data_offset + size) lies inside the file on success.
// Fails with INVALID_ARGUMENT naming the file: not a zip, truncated, or inconsistent records.
absl::StatusOr<std::vector<ZipEntry>> ReadZipDirectory(const MappedFile& file);

}  // namespace rwkv

#endif  // RWKV_ENGINE_ZIP_READER_H_
