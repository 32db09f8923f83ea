// Image files (PNG, JPEG, WebP) through the decoder the API's image inputs use. A decoded image
// must have the size its dimensions say, within the limits (small here, so that a header claiming
// a huge image is refused before any allocation).
#include <cstdint>
#include <cstdlib>
#include <span>

#include "engine/vision/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rwkv::vision::ImageLimits limits;
  limits.max_pixels = 1 << 20;
  limits.max_bytes = 1 << 20;
  const absl::StatusOr<rwkv::vision::Image> img = rwkv::vision::DecodeImage(std::span<const uint8_t>(data, size), limits);
  if (!img.ok()) {
    if (img.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  if (img->width <= 0 || img->height <= 0 || int64_t{img->width} * img->height > limits.max_pixels) std::abort();
  if (img->rgb.size() != static_cast<size_t>(img->width) * img->height * 3) std::abort();
  return 0;
}
