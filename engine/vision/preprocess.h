// Image preprocessing for the vision towers, as their reference pipelines do it on PIL images:
// a bicubic resize that reproduces Pillow's Image.resize(BICUBIC) bit for bit (separable,
// antialiased when shrinking: the cubic kernel a = -0.5 widened by the scale; 22-bit fixed-point
// coefficients; the horizontal pass rounded to 8 bits before the vertical one), then torchvision's
// ToTensor and Normalize in float32: (v / 255 - mean) / std, channel-major.
#ifndef RWKV_ENGINE_VISION_PREPROCESS_H_
#define RWKV_ENGINE_VISION_PREPROCESS_H_

#include <array>
#include <vector>

#include "engine/vision/image.h"

namespace rwkv::vision {

// `in` resized to width x height (each >= 1) with Pillow's bicubic filter.
Image ResizeBicubic(const Image& in, int width, int height);

// [3][height][width] floats: (v / 255 - mean[c]) / std[c].
std::vector<float> Normalize(const Image& in, const std::array<float, 3>& mean, const std::array<float, 3>& std);

}  // namespace rwkv::vision

#endif  // RWKV_ENGINE_VISION_PREPROCESS_H_
