// StatePool: a fixed number of slots, each holding one sequence's whole recurrent state.
//
// Slots are reserved at construction ("full" is an ordinary RESOURCE_EXHAUSTED, never an
// allocation). Backends read and write slots in place by index. The base class keeps the
// bookkeeping; subclasses own the memory (host RAM here, device memory in the CUDA backend).
//
// Thread safety: none. Owned and used by one thread (the scheduler's, or a CLI's main thread).
#ifndef RWKV_ENGINE_STATE_POOL_H_
#define RWKV_ENGINE_STATE_POOL_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rwkv {

class StatePool {
 public:
  virtual ~StatePool() = default;
  StatePool(const StatePool&) = delete;
  StatePool& operator=(const StatePool&) = delete;

  int capacity() const { return static_cast<int>(in_use_.size()); }
  int used() const { return used_; }
  int64_t slot_floats() const { return slot_floats_; }
  int64_t slot_bytes() const { return slot_floats_ * 4; }
  bool in_use(int slot) const { return slot >= 0 && slot < capacity() && in_use_[slot]; }

  // Returns a free slot holding the initial (zero) state, or RESOURCE_EXHAUSTED naming the capacity.
  absl::StatusOr<int> Acquire();
  // Returns the slot to the free list. INVALID_ARGUMENT if it is not in use.
  absl::Status Release(int slot);
  // Sets the slot's state back to the initial state. REQUIRES: in_use(slot).
  absl::Status Reset(int slot);
  // Copies the whole state of `src` into `dst` (fork). REQUIRES: both in use.
  absl::Status Copy(int src, int dst);
  // Copies the slot's state to/from host memory. REQUIRES: in use; span size == slot_floats().
  absl::Status Read(int slot, std::span<float> out) const;
  absl::Status Write(int slot, std::span<const float> in);

  // How many slots of `slot_bytes` fit in `budget_bytes` (at least 0).
  static int SlotsForBudget(int64_t budget_bytes, int64_t slot_bytes);

 protected:
  StatePool(int capacity, int64_t slot_floats);
  // Storage operations; arguments already validated. Errors come from the device (CUDA).
  virtual absl::Status DoReset(int slot) = 0;
  virtual absl::Status DoCopy(int src, int dst) = 0;
  virtual absl::Status DoRead(int slot, float* out) const = 0;
  virtual absl::Status DoWrite(int slot, const float* in) = 0;

 private:
  absl::Status CheckSlot(int slot, const char* what) const;
  int64_t slot_floats_;
  std::vector<bool> in_use_;
  std::vector<int> free_;  // Stack of free slots; lowest index on top.
  int used_ = 0;
};

// Slots in one host allocation (the CPU backend's pool).
class HostStatePool final : public StatePool {
 public:
  HostStatePool(int capacity, int64_t slot_floats);
  float* slot_data(int slot) { return data_.data() + slot * slot_floats(); }
  const float* slot_data(int slot) const { return data_.data() + slot * slot_floats(); }

 private:
  absl::Status DoReset(int slot) override;
  absl::Status DoCopy(int src, int dst) override;
  absl::Status DoRead(int slot, float* out) const override;
  absl::Status DoWrite(int slot, const float* in) override;
  std::vector<float> data_;
};

}  // namespace rwkv

#endif  // RWKV_ENGINE_STATE_POOL_H_
