// safetensors: u64 little-endian header length, a JSON header, then raw little-endian tensor bytes.
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/tensor_file.h"
#include "nlohmann/json.hpp"

namespace rwkv {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

bool ParseDType(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kMap[] = {
      {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16}, {"F64", DType::kF64}, {"I64", DType::kI64},
      {"I32", DType::kI32}, {"I16", DType::kI16}, {"I8", DType::kI8},     {"U8", DType::kU8},   {"BOOL", DType::kBool}};
  for (const auto& [name, t] : kMap) {
    if (s == name) {
      *out = t;
      return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<std::vector<TensorInfo>> ParseSafetensors(const MappedFile& file) {
  const std::string& path = file.path();
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid safetensors file: ", what));
  };
  if (file.size() < 8)
    return bad(absl::StrCat("file is ", file.size(), " bytes, shorter than the 8-byte header length"));
  uint64_t header_len;
  std::memcpy(&header_len, file.data(), 8);
  if (header_len > kMaxHeaderBytes || header_len > file.size() - 8) {
    return bad(absl::StrCat("header length ", header_len, " exceeds the file size ", file.size(),
                            " (truncated file, or not a safetensors file)"));
  }
  const char* text = reinterpret_cast<const char*>(file.data() + 8);
  nlohmann::json header = nlohmann::json::parse(text, text + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return bad("header is not a JSON object");
  const uint8_t* base = file.data() + 8 + header_len;
  const uint64_t data_size = file.size() - 8 - header_len;

  std::vector<TensorInfo> tensors;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const nlohmann::json& v = it.value();
    auto bad_tensor = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", it.key(), ": ", what));
    };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2) {
      return bad_tensor("header entry needs dtype (string), shape (array) and data_offsets ([begin, end])");
    }
    TensorInfo t;
    t.name = it.key();
    if (!ParseDType(v["dtype"].get<std::string>(), &t.dtype)) {
      return bad_tensor(absl::StrCat("unsupported dtype ", v["dtype"].get<std::string>()));
    }
    int64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) return bad_tensor("shape entries must be non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > (1ull << 40) || __builtin_mul_overflow(numel, static_cast<int64_t>(dim), &numel)) {
        return bad_tensor("shape is too large");
      }
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return bad_tensor("data_offsets must be non-negative integers");
    }
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    const uint64_t want = static_cast<uint64_t>(numel) * DTypeSize(t.dtype);
    if (begin > end || end - begin != want) {
      return bad_tensor(absl::StrCat("data_offsets [", begin, ", ", end, ") hold ", end - begin, " bytes, expected ",
                                     want, " for shape ", t.ShapeString(), " ", DTypeName(t.dtype)));
    }
    if (end > data_size) {
      return bad_tensor(absl::StrCat("data ends at byte ", end, " but the file holds only ", data_size,
                                     " data bytes (truncated file?)"));
    }
    t.strides.assign(t.shape.size(), 1);
    for (size_t i = t.shape.size(); i-- > 1;) t.strides[i - 1] = t.strides[i] * t.shape[i];
    t.data = base + begin;
    tensors.push_back(std::move(t));
  }
  return tensors;
}

}  // namespace rwkv
