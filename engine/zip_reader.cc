#include "engine/zip_reader.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace rwkv {
namespace {

constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kLocalSig = 0x04034b50;

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

absl::StatusOr<std::vector<ZipEntry>> ReadZipDirectory(const MappedFile& file) {
  const uint8_t* d = file.data();
  const uint64_t n = file.size();
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": not a readable zip archive: ", what));
  };
  if (n < 22) return bad("file is shorter than an end-of-central-directory record (truncated?)");
  // The EOCD record is 22 bytes plus a comment of at most 65535 bytes, at the very end.
  int64_t eocd = -1;
  for (int64_t p = static_cast<int64_t>(n) - 22; p >= 0 && p >= static_cast<int64_t>(n) - 22 - 65535; --p) {
    if (Load<uint32_t>(d + p) == kEocdSig) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) return bad("no end-of-central-directory record (truncated file?)");
  uint64_t count = Load<uint16_t>(d + eocd + 10);
  uint64_t cd_size = Load<uint32_t>(d + eocd + 12);
  uint64_t cd_offset = Load<uint32_t>(d + eocd + 16);
  if (eocd >= 20 && Load<uint32_t>(d + eocd - 20) == kZip64LocatorSig) {
    const uint64_t z64 = Load<uint64_t>(d + eocd - 20 + 8);
    if (n < 56 || z64 > n - 56 || Load<uint32_t>(d + z64) != kZip64EocdSig) return bad("ZIP64 locator points outside the file");
    count = Load<uint64_t>(d + z64 + 32);
    cd_size = Load<uint64_t>(d + z64 + 40);
    cd_offset = Load<uint64_t>(d + z64 + 48);
  }
  if (cd_offset > n || cd_size > n - cd_offset) {
    return bad(absl::StrCat("central directory [", cd_offset, ", +", cd_size, ") lies outside the file of ", n,
                            " bytes (truncated file?)"));
  }
  std::vector<ZipEntry> entries;
  uint64_t p = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (p + 46 > cd_end || Load<uint32_t>(d + p) != kCentralSig)
      return bad(absl::StrCat("central directory entry ", i, " is corrupt"));
    ZipEntry e;
    e.method = Load<uint16_t>(d + p + 10);
    uint64_t csize = Load<uint32_t>(d + p + 20);
    uint64_t usize = Load<uint32_t>(d + p + 24);
    const uint16_t name_len = Load<uint16_t>(d + p + 28);
    const uint16_t extra_len = Load<uint16_t>(d + p + 30);
    const uint16_t comment_len = Load<uint16_t>(d + p + 32);
    uint64_t local = Load<uint32_t>(d + p + 42);
    if (p + 46 + name_len + extra_len + comment_len > cd_end)
      return bad(absl::StrCat("central directory entry ", i, " overruns the directory"));
    e.name.assign(reinterpret_cast<const char*>(d + p + 46), name_len);
    // ZIP64 extra field: only the saturated 32-bit fields are present, in this order.
    const uint8_t* x = d + p + 46 + name_len;
    const uint8_t* x_end = x + extra_len;
    while (x + 4 <= x_end) {
      const uint16_t tag = Load<uint16_t>(x), len = Load<uint16_t>(x + 2);
      const uint8_t* f = x + 4;
      if (f + len > x_end) return bad(absl::StrCat("extra field of entry ", e.name, " overruns its record"));
      if (tag == 0x0001) {
        const uint8_t* f_end = f + len;
        for (uint64_t* field : {&usize, &csize, &local}) {
          if (*field != 0xffffffffu) continue;
          if (f + 8 > f_end) return bad(absl::StrCat("ZIP64 field of entry ", e.name, " is too short"));
          *field = Load<uint64_t>(f);
          f += 8;
        }
      }
      x += 4 + len;
    }
    if (n < 30 || local > n - 30 || Load<uint32_t>(d + local) != kLocalSig) {
      return bad(absl::StrCat("local header of entry ", e.name, " at offset ", local, " is missing (truncated file?)"));
    }
    e.data_offset = local + 30 + Load<uint16_t>(d + local + 26) + Load<uint16_t>(d + local + 28);
    e.size = csize;
    if (e.method == 0 && usize != csize) return bad(absl::StrCat("stored entry ", e.name, " has different sizes"));
    if (e.data_offset > n || e.size > n - e.data_offset) {
      return bad(absl::StrCat("entry ", e.name, " needs bytes [", e.data_offset, ", ", e.data_offset + e.size,
                              ") but the file has ", n, " (truncated file?)"));
    }
    entries.push_back(std::move(e));
    p += 46 + name_len + extra_len + comment_len;
  }
  return entries;
}

}  // namespace rwkv
