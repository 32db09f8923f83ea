#include "engine/tensor_file.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/status.h"
#include "nlohmann/json.hpp"

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

TensorFile::TensorFile(std::string path, std::vector<std::unique_ptr<MappedFile>> files, std::string format,
                       std::vector<TensorInfo> tensors)
    : path_(std::move(path)), files_(std::move(files)), format_(std::move(format)) {
  ReplaceTensors(std::move(tensors));
}

namespace {

// Duplicate names would make lookups ambiguous.
absl::Status CheckUnique(const std::string& path, const std::vector<TensorInfo>& tensors) {
  std::map<std::string_view, int> seen;
  for (const TensorInfo& t : tensors) {
    if (seen[t.name]++) return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", t.name, " appears twice"));
  }
  return absl::OkStatus();
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TensorFile>> TensorFile::OpenSharded(const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(index_path, ": cannot open"));
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const nlohmann::json index = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": not a safetensors index: expected a JSON object with a weight_map object"));
  }
  const size_t slash = index_path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : index_path.substr(0, slash + 1);
  std::map<std::string, std::string> shard_of;  // Tensor -> shard file name.
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    const std::string& shard = it.value().is_string() ? it.value().get_ref<const std::string&>() : "";
    if (shard.empty() || shard.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map entry ", it.key(), " must name a shard file in the same directory"));
    }
    shard_of[it.key()] = shard;
  }
  std::map<std::string, std::vector<TensorInfo>> shards;
  for (const auto& [tensor, shard] : shard_of) shards[shard];
  std::vector<std::unique_ptr<MappedFile>> files;
  std::vector<TensorInfo> tensors;
  for (auto& [shard, shard_tensors] : shards) {
    RWKV_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(dir + shard));
    RWKV_ASSIGN_OR_RETURN(shard_tensors, ParseSafetensors(*file));
    for (TensorInfo& t : shard_tensors) {
      auto it = shard_of.find(t.name);
      if (it == shard_of.end() || it->second != shard) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor ", t.name, " is in shard ", shard,
                                                       " but the weight_map says ",
                                                       it == shard_of.end() ? "nothing" : it->second));
      }
      shard_of.erase(it);
      tensors.push_back(std::move(t));
    }
    files.push_back(std::move(file));
  }
  if (!shard_of.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor ", shard_of.begin()->first,
                                                   " is missing from shard ", shard_of.begin()->second));
  }
  RWKV_RETURN_IF_ERROR(CheckUnique(index_path, tensors));
  return std::unique_ptr<TensorFile>(new TensorFile(index_path, std::move(files), "safetensors", std::move(tensors)));
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
  if (IsDirectory(path)) {
    const std::string base = absl::EndsWith(path, "/") ? path : path + "/";
    if (Exists(base + "model.safetensors.index.json")) return OpenSharded(base + "model.safetensors.index.json");
    if (Exists(base + "model.safetensors")) return Open(base + "model.safetensors");
    return absl::NotFoundError(
        absl::StrCat(path, ": a directory without model.safetensors.index.json or model.safetensors"));
  }
  if (absl::EndsWith(path, ".index.json")) return OpenSharded(path);
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
  RWKV_RETURN_IF_ERROR(CheckUnique(path, tensors));
  std::vector<std::unique_ptr<MappedFile>> files;
  files.push_back(std::move(file));
  return std::unique_ptr<TensorFile>(new TensorFile(path, std::move(files), format, std::move(tensors)));
}

void ReleaseTensorPages(const TensorInfo& t) {
  const int64_t n = t.numel();
  if (n == 0) return;
  int64_t last = 0;  // The farthest element, in elements from `data` (strides are non-negative).
  for (size_t d = 0; d < t.shape.size(); ++d) last += (t.shape[d] - 1) * t.strides[d];
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(t.data) + (last + 1) * DTypeSize(t.dtype);
  // The mapping is read-only and file-backed: the pages leave this process's memory and come back
  // from the page cache (or the file) if anything reads them again.
  madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
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
