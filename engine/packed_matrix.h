// A weight matrix of n output rows and k inputs (nn.Linear layout, used as W x), stored in
// panels of kPanel rows for the CPU backend's GEMM kernel (engine/cpu/gemm.h): panel p holds
// W[p*16 + c][j] at data[(p*k + j)*16 + c], rows past n zero-filled.
#ifndef RWKV_ENGINE_PACKED_MATRIX_H_
#define RWKV_ENGINE_PACKED_MATRIX_H_

#include <cstdint>

namespace rwkv {

constexpr int kPanel = 16;

struct PackedMatrix {
  const float* data = nullptr;
  int n = 0;  // Output rows.
  int k = 0;  // Input width.

  static int64_t Floats(int n, int k) { return int64_t{(n + kPanel - 1) / kPanel} * kPanel * k; }
  float At(int row, int col) const { return data[(int64_t{row / kPanel} * k + col) * kPanel + row % kPanel]; }
};

}  // namespace rwkv

#endif  // RWKV_ENGINE_PACKED_MATRIX_H_
