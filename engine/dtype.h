// Element types of checkpoint tensors and their conversion to float.
#ifndef RWKV_ENGINE_DTYPE_H_
#define RWKV_ENGINE_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace rwkv {

// Float types are what models use; the integer types exist so that a checkpoint holding one
// is reported as "wrong dtype" at the tensor, not as an unreadable file.
enum class DType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

size_t DTypeSize(DType t);
const char* DTypeName(DType t);
bool IsFloat(DType t);

inline float Bf16ToFloat(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// IEEE binary16 -> binary32, exact (subnormals, inf and NaN included).
float F16ToFloat(uint16_t bits);

// Round to nearest even, as PyTorch's .to(bfloat16) does.
uint16_t FloatToBf16(float f);
uint16_t FloatToF16(float f);

// Reads element `index` of a buffer of type `t` as float. REQUIRES: IsFloat(t).
float LoadAsFloat(DType t, const uint8_t* base, int64_t index);

}  // namespace rwkv

#endif  // RWKV_ENGINE_DTYPE_H_
