#include "engine/state_pool.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace rwkv {

StatePool::StatePool(int capacity, int64_t slot_floats) : slot_floats_(slot_floats), in_use_(capacity, false) {
  free_.reserve(capacity);
  for (int i = capacity - 1; i >= 0; --i) free_.push_back(i);
}

int StatePool::SlotsForBudget(int64_t budget_bytes, int64_t slot_bytes) {
  if (slot_bytes <= 0 || budget_bytes <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(budget_bytes / slot_bytes, 1 << 30));
}

absl::StatusOr<int> StatePool::Acquire() {
  if (free_.empty()) {
    return absl::ResourceExhaustedError(absl::StrCat("state pool is full: all ", capacity(), " slots are in use"));
  }
  const int slot = free_.back();
  free_.pop_back();
  in_use_[slot] = true;
  ++used_;
  if (absl::Status s = DoReset(slot); !s.ok()) {
    Release(slot).IgnoreError();
    return s;
  }
  return slot;
}

absl::Status StatePool::CheckSlot(int slot, const char* what) const {
  if (!in_use(slot)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": slot ", slot, " is not in use (capacity ", capacity(), ")"));
  }
  return absl::OkStatus();
}

absl::Status StatePool::Release(int slot) {
  if (absl::Status s = CheckSlot(slot, "release"); !s.ok()) return s;
  in_use_[slot] = false;
  --used_;
  free_.push_back(slot);
  return absl::OkStatus();
}

absl::Status StatePool::Reset(int slot) {
  if (absl::Status s = CheckSlot(slot, "reset"); !s.ok()) return s;
  return DoReset(slot);
}

absl::Status StatePool::Copy(int src, int dst) {
  if (absl::Status s = CheckSlot(src, "copy source"); !s.ok()) return s;
  if (absl::Status s = CheckSlot(dst, "copy destination"); !s.ok()) return s;
  return src == dst ? absl::OkStatus() : DoCopy(src, dst);
}

absl::Status StatePool::Read(int slot, std::span<float> out) const {
  if (absl::Status s = CheckSlot(slot, "read"); !s.ok()) return s;
  if (static_cast<int64_t>(out.size()) != slot_floats_) {
    return absl::InvalidArgumentError(
        absl::StrCat("read: buffer holds ", out.size(), " floats, a slot ", slot_floats_));
  }
  return DoRead(slot, out.data());
}

absl::Status StatePool::Write(int slot, std::span<const float> in) {
  if (absl::Status s = CheckSlot(slot, "write"); !s.ok()) return s;
  if (static_cast<int64_t>(in.size()) != slot_floats_) {
    return absl::InvalidArgumentError(
        absl::StrCat("write: buffer holds ", in.size(), " floats, a slot ", slot_floats_));
  }
  return DoWrite(slot, in.data());
}

HostStatePool::HostStatePool(int capacity, int64_t slot_floats)
    : StatePool(capacity, slot_floats), data_(static_cast<size_t>(capacity) * slot_floats, 0.0f) {}

absl::Status HostStatePool::DoReset(int slot) {
  std::fill_n(slot_data(slot), slot_floats(), 0.0f);
  return absl::OkStatus();
}
absl::Status HostStatePool::DoCopy(int src, int dst) {
  std::memcpy(slot_data(dst), slot_data(src), slot_bytes());
  return absl::OkStatus();
}
absl::Status HostStatePool::DoRead(int slot, float* out) const {
  std::memcpy(out, slot_data(slot), slot_bytes());
  return absl::OkStatus();
}
absl::Status HostStatePool::DoWrite(int slot, const float* in) {
  std::memcpy(slot_data(slot), in, slot_bytes());
  return absl::OkStatus();
}

}  // namespace rwkv
