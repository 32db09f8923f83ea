// Host-side planning of one CUDA engine step: which tokens of which batch entries go in, and the
// index tables the kernels read (uploaded in one copy). Plain C++, built and unit-tested without
// a GPU.
#ifndef RWKV_ENGINE_CUDA_STEP_PLAN_H_
#define RWKV_ENGINE_CUDA_STEP_PLAN_H_

#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend.h"

namespace rwkv::cuda {

struct StepPlan {
  // Pieces: a run of consecutive tokens of one entry. Rows are the pieces' tokens, in order.
  std::vector<int32_t> tokens, row_piece;                                             // [rows]
  std::vector<int32_t> piece_entry, piece_slot, piece_row, piece_count, piece_begin;  // [pieces]
  std::vector<int32_t> head_rows;  // Rows whose logits are wanted, in output order.
  std::vector<int32_t> head_dest;  // Their row in Logits (the Logits row index).
  int rows() const { return static_cast<int>(tokens.size()); }
  int pieces() const { return static_cast<int>(piece_slot.size()); }

  // Fills the next step from `batch`, where done[e] tokens of entry e are already through:
  // entries in order, each contributing as many of its remaining tokens as fit in `max_tokens`.
  // Returns false when nothing is left. `logits` must be Prepare()d for the batch.
  bool Next(std::span<const BatchEntry> batch, const std::vector<int>& done, int max_tokens, const Logits& logits);
  // Advances `done` past this step's pieces (padding pieces belong to no entry).
  void Advance(std::vector<int>* done) const;

  // Whether this is a decode step: every piece one row whose logits are wanted (the shape CUDA
  // graphs are captured for).
  bool IsDecode() const { return rows() == pieces() && static_cast<int>(head_rows.size()) == rows(); }
  // Pads a decode step to `rows` rows with pieces of token 0 on `scratch_slot` that belong to no
  // entry (piece_entry and head_dest -1), so that it runs the graph captured for that size.
  // REQUIRES: IsDecode(), rows >= this->rows().
  void Pad(int rows, int scratch_slot);

  // The tables as one int32 buffer, in the order the device copy is carved:
  // tokens, row_piece, piece_slot, piece_row, piece_count, head_rows.
  void Pack(std::vector<int32_t>* out) const;
};

// The batch sizes decode graphs are captured for: every size to 8, then four a doubling (10 12 14
// 16 20 24 28 32 40 48 ...), so that a padded step runs at most 25% more rows than it has; `max`
// (at least 1) is the last.
std::vector<int> GraphLadder(int max);
// The smallest ladder size that holds `rows`, or 0 when none does.
int LadderSize(const std::vector<int>& ladder, int rows);

}  // namespace rwkv::cuda

#endif  // RWKV_ENGINE_CUDA_STEP_PLAN_H_
