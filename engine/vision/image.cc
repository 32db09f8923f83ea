#include "engine/vision/image.h"

#include <png.h>
#include <turbojpeg.h>
#include <webp/decode.h>

#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/status.h"

namespace rwkv::vision {
namespace {

absl::Status Bad(ImageFormat f, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("image: ", ImageFormatName(f), ": ", what));
}

absl::Status CheckSize(ImageFormat f, int64_t width, int64_t height, const ImageLimits& limits) {
  if (width <= 0 || height <= 0) {
    return Bad(f, absl::StrCat("the header says ", width, "x", height, " pixels"));
  }
  if (width * height > limits.max_pixels) {
    return Bad(f, absl::StrCat(width, "x", height, " is ", width * height, " pixels; at most ", limits.max_pixels));
  }
  return absl::OkStatus();
}

absl::StatusOr<Image> DecodePng(std::span<const uint8_t> bytes, const ImageLimits& limits) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size())) {
    return Bad(ImageFormat::kPng, png.message);
  }
  if (absl::Status s = CheckSize(ImageFormat::kPng, png.width, png.height, limits); !s.ok()) {
    png_image_free(&png);
    return s;
  }
  // RGBA, then the alpha dropped: the colour channels as stored (no compositing), as PIL's
  // convert("RGB") gives them.
  png.format = PNG_FORMAT_RGBA;
  std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, rgba.data(), 0, nullptr)) {
    const std::string message = png.message;
    png_image_free(&png);
    return Bad(ImageFormat::kPng, message);
  }
  Image img;
  img.width = static_cast<int>(png.width);
  img.height = static_cast<int>(png.height);
  const size_t n = static_cast<size_t>(img.width) * img.height;
  img.rgb.resize(n * 3);
  for (size_t i = 0; i < n; ++i) std::memcpy(&img.rgb[3 * i], &rgba[4 * i], 3);
  return img;
}

absl::StatusOr<Image> DecodeJpeg(std::span<const uint8_t> bytes, const ImageLimits& limits) {
  std::unique_ptr<void, int (*)(tjhandle)> tj(tjInitDecompress(), tjDestroy);
  if (tj == nullptr) return absl::InternalError("image: JPEG: the decoder could not start");
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  // TurboJPEG 2.1 takes a non-const buffer but does not write it.
  unsigned char* data = const_cast<unsigned char*>(bytes.data());
  if (tjDecompressHeader3(tj.get(), data, bytes.size(), &width, &height, &subsampling, &colorspace) != 0) {
    return Bad(ImageFormat::kJpeg, tjGetErrorStr2(tj.get()));
  }
  RWKV_RETURN_IF_ERROR(CheckSize(ImageFormat::kJpeg, width, height, limits));
  Image img;
  img.width = width;
  img.height = height;
  img.rgb.resize(static_cast<size_t>(width) * height * 3);
  // Accurate integer DCT and smooth chroma upsampling: libjpeg's defaults, as PIL decodes. Warnings
  // about recoverable damage (extraneous bytes) are tolerated, as PIL tolerates them; a truncated
  // file is an error, as in PIL, not an image half grey.
  if (tjDecompress2(tj.get(), data, bytes.size(), img.rgb.data(), width, 0, height, TJPF_RGB, TJFLAG_ACCURATEDCT) != 0) {
    const std::string message = tjGetErrorStr2(tj.get());
    if (tjGetErrorCode(tj.get()) == TJERR_FATAL || absl::StrContains(message, "Premature end")) {
      return Bad(ImageFormat::kJpeg, message);
    }
  }
  return img;
}

absl::StatusOr<Image> DecodeWebp(std::span<const uint8_t> bytes, const ImageLimits& limits) {
  int width = 0, height = 0;
  if (!WebPGetInfo(bytes.data(), bytes.size(), &width, &height)) {
    return Bad(ImageFormat::kWebp, "not a valid WebP bitstream");
  }
  RWKV_RETURN_IF_ERROR(CheckSize(ImageFormat::kWebp, width, height, limits));
  Image img;
  img.width = width;
  img.height = height;
  img.rgb.resize(static_cast<size_t>(width) * height * 3);
  if (WebPDecodeRGBInto(bytes.data(), bytes.size(), img.rgb.data(), img.rgb.size(), width * 3) == nullptr) {
    return Bad(ImageFormat::kWebp, "the bitstream is truncated or corrupt");
  }
  return img;
}

}  // namespace

const char* ImageFormatName(ImageFormat f) {
  switch (f) {
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kWebp:
      return "WebP";
  }
  return "?";
}

absl::StatusOr<ImageFormat> SniffImageFormat(std::span<const uint8_t> b) {
  static constexpr uint8_t kPng[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.size() >= 8 && std::memcmp(b.data(), kPng, 8) == 0) return ImageFormat::kPng;
  if (b.size() >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return ImageFormat::kJpeg;
  if (b.size() >= 12 && std::memcmp(b.data(), "RIFF", 4) == 0 && std::memcmp(b.data() + 8, "WEBP", 4) == 0) {
    return ImageFormat::kWebp;
  }
  return absl::InvalidArgumentError("image: not a PNG, JPEG or WebP file (unrecognised signature)");
}

absl::StatusOr<Image> DecodeImage(std::span<const uint8_t> bytes, const ImageLimits& limits) {
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("image: ", bytes.size(), " bytes; at most ", limits.max_bytes));
  }
  const absl::StatusOr<ImageFormat> format = SniffImageFormat(bytes);
  if (!format.ok()) return format.status();
  switch (*format) {
    case ImageFormat::kPng:
      return DecodePng(bytes, limits);
    case ImageFormat::kJpeg:
      return DecodeJpeg(bytes, limits);
    case ImageFormat::kWebp:
      return DecodeWebp(bytes, limits);
  }
  return absl::InternalError("image: unreachable format");
}

}  // namespace rwkv::vision
