#include "engine/cuda/step_plan.h"

#include <algorithm>

namespace rwkv::cuda {

bool StepPlan::Next(std::span<const BatchEntry> batch, const std::vector<int>& done, int max_tokens,
                    const Logits& logits) {
  for (auto* v : {&tokens, &row_piece, &piece_entry, &piece_slot, &piece_row, &piece_count, &piece_begin, &head_rows,
                  &head_dest}) {
    v->clear();
  }
  for (size_t e = 0; e < batch.size() && rows() < max_tokens; ++e) {
    const int remaining = static_cast<int>(batch[e].tokens.size()) - done[e];
    if (remaining == 0) continue;
    const int take = std::min(remaining, max_tokens - rows());
    const int piece = pieces();
    piece_entry.push_back(static_cast<int32_t>(e));
    piece_slot.push_back(batch[e].slot);
    piece_row.push_back(rows());
    piece_count.push_back(take);
    piece_begin.push_back(done[e]);
    const bool last_piece = done[e] + take == static_cast<int>(batch[e].tokens.size());
    for (int t = 0; t < take; ++t) {
      const int pos = done[e] + t;
      if (batch[e].all_logits || (last_piece && t == take - 1)) {
        head_rows.push_back(rows());
        head_dest.push_back(logits.first_row(static_cast<int>(e)) + (batch[e].all_logits ? pos : 0));
      }
      tokens.push_back(batch[e].tokens[pos]);
      row_piece.push_back(piece);
    }
  }
  return rows() > 0;
}

void StepPlan::Advance(std::vector<int>* done) const {
  for (int p = 0; p < pieces(); ++p) {
    if (piece_entry[p] >= 0) (*done)[piece_entry[p]] += piece_count[p];
  }
}

void StepPlan::Pad(int target, int scratch_slot) {
  while (rows() < target) {
    const int row = rows();
    row_piece.push_back(pieces());
    piece_entry.push_back(-1);
    piece_slot.push_back(scratch_slot);
    piece_row.push_back(row);
    piece_count.push_back(1);
    piece_begin.push_back(0);
    head_rows.push_back(row);
    head_dest.push_back(-1);
    tokens.push_back(0);
  }
}

std::vector<int> GraphLadder(int max) {
  std::vector<int> ladder;
  for (int n = 1; n <= std::min(max, 8); ++n) ladder.push_back(n);
  for (int base = 8; base < max; base *= 2) {
    for (int q = 1; q <= 4; ++q) {
      const int n = base + base * q / 4;
      if (n >= max) break;
      ladder.push_back(n);
    }
  }
  if (ladder.empty() || ladder.back() != max) ladder.push_back(std::max(max, 1));
  return ladder;
}

int LadderSize(const std::vector<int>& ladder, int rows) {
  const auto it = std::lower_bound(ladder.begin(), ladder.end(), rows);
  return it == ladder.end() ? 0 : *it;
}

void StepPlan::Pack(std::vector<int32_t>* out) const {
  out->clear();
  for (const auto* v : {&tokens, &row_piece, &piece_slot, &piece_row, &piece_count, &head_rows}) {
    out->insert(out->end(), v->begin(), v->end());
  }
}

}  // namespace rwkv::cuda
