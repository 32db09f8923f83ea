// Image decoding for vision inputs: PNG (libpng), JPEG (libjpeg-turbo) and WebP (libwebp) from
// bytes in memory, to 8-bit RGB. Images are untrusted input: the format is recognised by its
// signature, the dimensions are checked against the limits from the header before any pixel is
// decoded, and every failure is an INVALID_ARGUMENT naming what was wrong (never a crash).
// Alpha is dropped (the colour channels as stored, as PIL's convert("RGB") keeps them); grey and
// palette images expand to RGB; PNG goes through libpng's simplified reader, which makes 16-bit
// channels 8-bit and converts a gamma the file states to sRGB.
#ifndef RWKV_ENGINE_VISION_IMAGE_H_
#define RWKV_ENGINE_VISION_IMAGE_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rwkv::vision {

enum class ImageFormat { kPng, kJpeg, kWebp };
const char* ImageFormatName(ImageFormat f);

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height rows of width pixels, 3 bytes each (R, G, B).
  uint8_t at(int x, int y, int c) const { return rgb[(static_cast<size_t>(y) * width + x) * 3 + c]; }
};

struct ImageLimits {
  int64_t max_bytes = 20 << 20;     // The encoded file.
  int64_t max_pixels = 40'000'000;  // width * height, checked from the header before decoding.
};

// The format from the first bytes; INVALID_ARGUMENT if none of the three.
absl::StatusOr<ImageFormat> SniffImageFormat(std::span<const uint8_t> bytes);

// Decodes `bytes`; INVALID_ARGUMENT for an unknown format, a size past the limits, or a file the
// decoder refuses (the decoder's message included).
absl::StatusOr<Image> DecodeImage(std::span<const uint8_t> bytes, const ImageLimits& limits = {});

}  // namespace rwkv::vision

#endif  // RWKV_ENGINE_VISION_IMAGE_H_
