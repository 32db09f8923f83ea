// A weight matrix of n output rows and k inputs (nn.Linear layout, used as W x), stored in
// panels of kPanel rows for the CPU backend's GEMM kernel (engine/cpu/gemm.h): panel p holds
// W[p*16 + c][j] at element (p*k + j)*16 + c, rows past n zero-filled. Elements are float32,
// bfloat16 / float16 (half the bytes a decode step reads), or group-quantized int8 / int4 (about a
// quarter / an eighth), all widened to float32 in the kernel.
//
// Quantized matrices: each row's k inputs fall in groups of kQuantGroup (k padded to whole
// groups with zero weights); a group has one float16 scale s (symmetric, no offset) and integer
// codes q, the value being q * s exactly (q has at most 8 significant bits and s 11). int8 codes
// are in [-127, 127] with s = max|w| / 127; int4 codes in [-8, 7] with s = -w_m / 8 for the
// group's w_m of largest magnitude (the q4_0 choice: that weight is exact, all 16 levels used).
// Codes are laid out for integer dot products over 4 consecutive inputs: a panel's block b
// (inputs 4b..4b+3) holds row c's 4 codes together. int8: byte ((p*K/4 + b)*16 + c)*4 + j%4 (K the
// padded k). int4, stored as q + 8: byte ((p*K/4 + b)*8 + c%8)*4 + j%4, row c < 8 in the low nibble,
// row c + 8 in the high one. Scales: element ((p*groups + g)*16 + c).
#ifndef RWKV_ENGINE_PACKED_MATRIX_H_
#define RWKV_ENGINE_PACKED_MATRIX_H_

#include <cstdint>

#include "engine/dtype.h"

namespace rwkv {

constexpr int kPanel = 16;
constexpr int kQuantGroup = 32;

enum class MatrixType { kF32, kBF16, kF16, kInt8, kInt4 };
inline const char* MatrixTypeName(MatrixType t) {
  switch (t) {
    case MatrixType::kBF16: return "bf16";
    case MatrixType::kF16: return "f16";
    case MatrixType::kInt8: return "int8";
    case MatrixType::kInt4: return "int4";
    default: return "f32";
  }
}
inline bool IsQuantized(MatrixType t) { return t == MatrixType::kInt8 || t == MatrixType::kInt4; }

struct PackedMatrix {
  const float* data = nullptr;  // kF32.
  int n = 0;                    // Output rows.
  int k = 0;                    // Input width.
  const uint16_t* half = nullptr;  // kBF16, kF16.
  MatrixType type = MatrixType::kF32;
  const uint8_t* codes = nullptr;     // kInt8, kInt4.
  const uint16_t* scales = nullptr;   // kInt8, kInt4: float16.

  // Elements of the packed layout (any type).
  static int64_t Floats(int n, int k) { return int64_t{(n + kPanel - 1) / kPanel} * kPanel * k; }
  static int Groups(int k) { return (k + kQuantGroup - 1) / kQuantGroup; }
  static int PaddedK(int k) { return Groups(k) * kQuantGroup; }
  static int64_t Scales(int n, int k) { return int64_t{(n + kPanel - 1) / kPanel} * kPanel * Groups(k); }
  // Bytes of codes of a quantized type.
  static int64_t CodeBytes(int n, int k, MatrixType t) {
    return t == MatrixType::kInt4 ? Floats(n, PaddedK(k)) / 2 : Floats(n, PaddedK(k));
  }
  // The byte holding the code of (row, col) of a quantized matrix (int4: the nibble by row % 16 < 8).
  int64_t CodeIndex(int row, int col) const {
    const int64_t block = int64_t{row / kPanel} * (PaddedK(k) / 4) + col / 4;
    const int c = row % kPanel;
    return type == MatrixType::kInt4 ? (block * 8 + c % 8) * 4 + col % 4 : (block * kPanel + c) * 4 + col % 4;
  }

  int64_t Index(int row, int col) const { return (int64_t{row / kPanel} * k + col) * kPanel + row % kPanel; }
  int64_t ScaleIndex(int row, int col) const {
    return (int64_t{row / kPanel} * Groups(k) + col / kQuantGroup) * kPanel + row % kPanel;
  }
  float At(int row, int col) const {
    const int64_t i = Index(row, col);
    switch (type) {
      case MatrixType::kBF16: return Bf16ToFloat(half[i]);
      case MatrixType::kF16: return F16ToFloat(half[i]);
      case MatrixType::kInt8:
        return static_cast<float>(static_cast<int8_t>(codes[CodeIndex(row, col)])) *
               F16ToFloat(scales[ScaleIndex(row, col)]);
      case MatrixType::kInt4: {
        const uint8_t byte = codes[CodeIndex(row, col)];
        const int q = (row % kPanel < 8 ? byte & 15 : byte >> 4) - 8;
        return static_cast<float>(q) * F16ToFloat(scales[ScaleIndex(row, col)]);
      }
      default: return data[i];
    }
  }
  int64_t bytes() const {
    switch (type) {
      case MatrixType::kF32: return Floats(n, k) * 4;
      case MatrixType::kBF16:
      case MatrixType::kF16: return Floats(n, k) * 2;
      default: return CodeBytes(n, k, type) + Scales(n, k) * 2;
    }
  }
};

}  // namespace rwkv

#endif  // RWKV_ENGINE_PACKED_MATRIX_H_
