#include "engine/dtype.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace rwkv {
namespace {

TEST(DTypeTest, F16KnownValues) {
  EXPECT_EQ(F16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(F16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(F16ToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));     // Smallest subnormal.
  EXPECT_EQ(F16ToFloat(0x03ff), std::ldexp(1023.0f, -24));  // Largest subnormal.
  EXPECT_EQ(F16ToFloat(0x8000), -0.0f);
  EXPECT_TRUE(std::signbit(F16ToFloat(0x8000)));
  EXPECT_EQ(F16ToFloat(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(F16ToFloat(0x7e00)));
}

TEST(DTypeTest, F16RoundTripsEveryFiniteValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(FloatToF16(f), h) << "half bits " << h;
  }
}

TEST(DTypeTest, F16RoundsToNearestEven) {
  // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): ties to even -> 1.
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(FloatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(FloatToF16(65520.0f), 0x7c00);  // Rounds up to infinity.
}

TEST(DTypeTest, Bf16) {
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even -> 1.
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  for (uint32_t b = 0; b < 0x10000; b += 7) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(b));
    if (!std::isnan(f)) {
      EXPECT_EQ(FloatToBf16(f), b);
    }
  }
}

TEST(DTypeTest, LoadAsFloat) {
  const uint16_t halves[] = {0x3c00, 0x4000};
  EXPECT_EQ(LoadAsFloat(DType::kF16, reinterpret_cast<const uint8_t*>(halves), 1), 2.0f);
  const double d[] = {0.5, -3.25};
  EXPECT_EQ(LoadAsFloat(DType::kF64, reinterpret_cast<const uint8_t*>(d), 1), -3.25f);
  EXPECT_TRUE(IsFloat(DType::kBF16));
  EXPECT_FALSE(IsFloat(DType::kI64));
}

}  // namespace
}  // namespace rwkv
