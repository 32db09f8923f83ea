#include "engine/tensor_file.h"

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/status.h"

namespace rwkv {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool TensorInfo::contiguous() const {
  int64_t expect = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expect) return false;
    expect *= shape[i];
  }
  return true;
}

std::string TensorInfo::ShapeString() const { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

TensorFile::TensorFile(std::unique_ptr<MappedFile> file, std::string format, std::vector<TensorInfo> tensors)
    : file_(std::move(file)), format_(std::move(format)) {
  ReplaceTensors(std::move(tensors));
}

void TensorFile::ReplaceTensors(std::vector<TensorInfo> tensors) {
  tensors_ = std::move(tensors);
  index_.clear();
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

const TensorInfo* TensorFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<std::unique_ptr<TensorFile>> TensorFile::Open(const std::string& path) {
  RWKV_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  std::vector<TensorInfo> tensors;
  std::string format;
  if (file->size() >= 4 && std::memcmp(file->data(), "PK\x03\x04", 4) == 0) {
    format = "pth";
    RWKV_ASSIGN_OR_RETURN(tensors, ParsePth(*file));
  } else if (file->size() >= 2 && file->data()[0] == 0x80 && file->data()[1] <= 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": a legacy (non-zip) torch.save file; re-save it with a PyTorch >= 1.6 default torch.save"));
  } else if (absl::EndsWith(path, ".pth") || absl::EndsWith(path, ".pt")) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a zip archive; a torch.save checkpoint starts with 'PK' (truncated or not a checkpoint?)"));
  } else {
    format = "safetensors";
    RWKV_ASSIGN_OR_RETURN(tensors, ParseSafetensors(*file));
  }
  // Duplicate names would make lookups ambiguous.
  std::map<std::string_view, int> seen;
  for (const TensorInfo& t : tensors) {
    if (seen[t.name]++) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", t.name, " appears twice"));
    }
  }
  return std::unique_ptr<TensorFile>(new TensorFile(std::move(file), format, std::move(tensors)));
}

void CopyToFloat(const TensorInfo& t, float* out) {
  const int64_t n = t.numel();
  if (n == 0) return;
  if (t.contiguous()) {
    if (t.dtype == DType::kF32) {
      std::memcpy(out, t.data, n * sizeof(float));
      return;
    }
    for (int64_t i = 0; i < n; ++i) out[i] = LoadAsFloat(t.dtype, t.data, i);
    return;
  }
  const size_t rank = t.shape.size();
  std::vector<int64_t> idx(rank, 0);
  int64_t offset = 0;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = LoadAsFloat(t.dtype, t.data, offset);
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < t.shape[d]) {
        offset += t.strides[d];
        break;
      }
      offset -= t.strides[d] * (t.shape[d] - 1);
      idx[d] = 0;
    }
  }
}

}  // namespace rwkv
