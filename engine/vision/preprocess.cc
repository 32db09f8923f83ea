#include "engine/vision/preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace rwkv::vision {
namespace {

// Pillow's fixed point for 8-bit images: coefficients scaled by 2^22, sums rounded at half.
constexpr int kPrecisionBits = 32 - 8 - 2;

double Bicubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Per output position: the first input index, the count, and `ksize` fixed-point weights.
struct Coeffs {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> k;  // [out][ksize]
};

Coeffs Precompute(int in_size, int out_size) {
  constexpr double kSupport = 2.0;  // The bicubic filter's.
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = kSupport * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // Truncation toward zero, as C's cast.
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = Bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                                                        : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

uint8_t Clip8(int32_t v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

}  // namespace

Image ResizeBicubic(const Image& in, int width, int height) {
  const Coeffs h = Precompute(in.width, width), v = Precompute(in.height, height);
  // The rows the vertical pass reads; the horizontal pass makes only those (as Pillow).
  const int y0 = v.first[0], y1 = v.first[height - 1] + v.count[height - 1];
  const bool horizontal = width != in.width, vertical = height != in.height;
  Image tmp;
  const Image* src = &in;
  int row_offset = 0;  // Input row of src's row 0.
  if (horizontal) {
    tmp.width = width;
    tmp.height = y1 - y0;
    tmp.rgb.resize(static_cast<size_t>(tmp.width) * tmp.height * 3);
    for (int y = 0; y < tmp.height; ++y) {
      const uint8_t* row = in.rgb.data() + static_cast<size_t>(y + y0) * in.width * 3;
      for (int xx = 0; xx < width; ++xx) {
        const int32_t* k = &h.k[static_cast<size_t>(xx) * h.ksize];
        int32_t s[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
        for (int x = 0; x < h.count[xx]; ++x) {
          const uint8_t* p = row + (h.first[xx] + x) * 3;
          for (int c = 0; c < 3; ++c) s[c] += p[c] * k[x];
        }
        uint8_t* o = tmp.rgb.data() + (static_cast<size_t>(y) * width + xx) * 3;
        for (int c = 0; c < 3; ++c) o[c] = Clip8(s[c]);
      }
    }
    src = &tmp;
    row_offset = y0;
  }
  if (!vertical) {
    if (!horizontal) return in;
    return tmp;  // Every row was made (y0 = 0, y1 = height).
  }
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int yy = 0; yy < height; ++yy) {
    const int32_t* k = &v.k[static_cast<size_t>(yy) * v.ksize];
    const int first = v.first[yy] - row_offset;
    for (int xx = 0; xx < width; ++xx) {
      int32_t s[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
      for (int y = 0; y < v.count[yy]; ++y) {
        const uint8_t* p = src->rgb.data() + (static_cast<size_t>(first + y) * src->width + xx) * 3;
        for (int c = 0; c < 3; ++c) s[c] += p[c] * k[y];
      }
      uint8_t* o = out.rgb.data() + (static_cast<size_t>(yy) * width + xx) * 3;
      for (int c = 0; c < 3; ++c) o[c] = Clip8(s[c]);
    }
  }
  return out;
}

std::vector<float> Normalize(const Image& in, const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  const size_t plane = static_cast<size_t>(in.width) * in.height;
  std::vector<float> out(3 * plane);
  for (int c = 0; c < 3; ++c) {
    for (size_t i = 0; i < plane; ++i) {
      const float v = static_cast<float>(in.rgb[i * 3 + c]) / 255.0f;  // ToTensor.
      out[c * plane + i] = (v - mean[c]) / std[c];                     // Normalize: sub, then div.
    }
  }
  return out;
}

}  // namespace rwkv::vision
