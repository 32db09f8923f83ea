// A weight matrix of n output rows and k inputs (nn.Linear layout, used as W x), stored in
// panels of kPanel rows for the CPU backend's GEMM kernel (engine/cpu/gemm.h): panel p holds
// W[p*16 + c][j] at element (p*k + j)*16 + c, rows past n zero-filled. Elements are float32, or
// bfloat16 / float16 (half the bytes a decode step reads), widened to float32 in the kernel.
#ifndef RWKV_ENGINE_PACKED_MATRIX_H_
#define RWKV_ENGINE_PACKED_MATRIX_H_

#include <cstdint>

#include "engine/dtype.h"

namespace rwkv {

constexpr int kPanel = 16;

enum class MatrixType { kF32, kBF16, kF16 };
inline const char* MatrixTypeName(MatrixType t) {
  return t == MatrixType::kBF16 ? "bf16" : t == MatrixType::kF16 ? "f16" : "f32";
}

struct PackedMatrix {
  const float* data = nullptr;  // kF32.
  int n = 0;                    // Output rows.
  int k = 0;                    // Input width.
  const uint16_t* half = nullptr;  // kBF16, kF16.
  MatrixType type = MatrixType::kF32;

  // Elements of the packed layout (either type).
  static int64_t Floats(int n, int k) { return int64_t{(n + kPanel - 1) / kPanel} * kPanel * k; }
  int64_t Index(int row, int col) const { return (int64_t{row / kPanel} * k + col) * kPanel + row % kPanel; }
  float At(int row, int col) const {
    const int64_t i = Index(row, col);
    switch (type) {
      case MatrixType::kBF16: return Bf16ToFloat(half[i]);
      case MatrixType::kF16: return F16ToFloat(half[i]);
      default: return data[i];
    }
  }
  int64_t bytes() const { return Floats(n, k) * (type == MatrixType::kF32 ? 4 : 2); }
};

}  // namespace rwkv

#endif  // RWKV_ENGINE_PACKED_MATRIX_H_
