// Dense products of the CPU backend: Y[rows, n] (+)= X[rows, k] W^T for a weight W of n output
// rows (nn.Linear layout) held as a PackedMatrix (engine/packed_matrix.h).
//
// Why our own kernel: a decode step multiplies a few rows by every weight. OpenBLAS sgemm re-packs
// the whole weight on each call, which at batch 4-16 made a step several times slower than at
// batch 1 (measured in bench/). Packing once at load and running a 6x16 register-blocked AVX2
// kernel reads each weight once per step at any batch size, and computes every output element
// in the same order whatever `rows` is: a sequence's logits do not depend on its batch. OpenBLAS
// remains the oracle for this kernel in tests and the baseline in bench.
#ifndef RWKV_ENGINE_CPU_GEMM_H_
#define RWKV_ENGINE_CPU_GEMM_H_

#include "engine/packed_matrix.h"

namespace rwkv::cpu {

// Packs a row-major [n, k] matrix into `dst` (PackedMatrix::Floats(n, k) floats).
void Pack(const float* src, int n, int k, float* dst);
// The same layout in 16-bit elements (`type` kBF16 or kF16), rounded to nearest even.
void PackHalf(const float* src, int n, int k, MatrixType type, uint16_t* dst);

// The same layout group-quantized (`type` kInt8 or kInt4, engine/packed_matrix.h): codes
// (PackedMatrix::CodeBytes) and float16 scales (PackedMatrix::Scales). Rows past n are zero. Reads
// `src` rows only below n. False, leaving the output partial, when a weight is not finite or a
// group's scale exceeds float16 (a weight beyond about 8e6).
bool PackQuantized(const float* src, int n, int k, MatrixType type, uint8_t* codes, uint16_t* scales);

// Applied to each output as it is stored (fused into the product's parallel pass).
enum class Activation { kNone, kTanh, kSigmoid, kReluSquare };

// Any MatrixType: 16-bit weights are widened to float32 as they are loaded, so the products and
// sums are float32 over the stored values (and bitwise those of a float32 matrix holding them).
// REQUIRES: X is [rows, W.k] contiguous; act == kNone when accumulate. Y rows are `ldy` floats
// apart. `threads` <= 0 means the OpenMP default.
void Linear(const float* X, int rows, const PackedMatrix& W, float* Y, int ldy, bool accumulate, int threads,
            Activation act = Activation::kNone);

// Sets the thread count of the math libraries (OpenMP and OpenBLAS). <= 0 keeps their defaults.
void SetMathThreads(int threads);

}  // namespace rwkv::cpu

#endif  // RWKV_ENGINE_CPU_GEMM_H_
