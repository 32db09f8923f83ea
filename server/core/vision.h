// Images in prompts (VisualRWKV-7, docs/rwkv-spec.md section 20): what an edge makes of an image it
// receives (decoded pixels and their digest, checked against the limits), and the worker that runs
// the vision encoder off the scheduler's thread.
//
// An image takes `tokens` consecutive prompt positions. Their token ids are placeholders (never
// embedded: the encoder's rows replace them); their prefix-cache key is the image's digest
// (ImageKey), so that the state after an image is found again by the next request with the same
// pixels, and never by one with other pixels.
//
// Thread safety: ImageWorker's methods may be called from any thread; the callback runs on the
// worker's thread. The rest is plain data and pure functions.
#ifndef RWKV_SERVER_CORE_VISION_H_
#define RWKV_SERVER_CORE_VISION_H_

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/vision/encoder.h"
#include "engine/vision/image.h"

namespace rwkv::server {

// The token id at an image's positions in a prompt (any valid id would do: rows replace it).
constexpr int32_t kImagePlaceholder = 0;

// What the edges accept (FrontendOptions). tokens == 0: the model takes no images.
struct VisionLimits {
  int tokens = 0;           // Prompt positions per image (the encoder's pooled tokens).
  int max_images = 8;       // Per request.
  vision::ImageLimits image;
};

using ImageDigest = std::array<uint8_t, 32>;  // SHA-256 of the width, height and RGB pixels.

struct PromptImage {
  int offset = 0;  // Prompt position of its first placeholder.
  std::shared_ptr<const vision::Image> pixels;
  ImageDigest digest{};
};

// Decodes an image a client sent (`field` names it in errors: INVALID_ARGUMENT for an empty,
// undecodable, or too large file, with the limit) and digests its pixels.
absl::StatusOr<PromptImage> ReadPromptImage(std::span<const uint8_t> bytes, std::string_view field,
                                            const VisionLimits& limits);

// An image already decoded, with its digest.
absl::StatusOr<PromptImage> PromptImageOf(vision::Image image);

// The prefix-cache key of an image's `tokens` positions: negative numbers (never a token id) that
// carry the digest, 31 bits a position, folded when there are fewer than 8 positions.
std::vector<int32_t> ImageKey(const ImageDigest& digest, int tokens);

// One thread running the encoder, one image at a time (the encoder's GEMMs take `threads`).
class ImageWorker {
 public:
  using Done = std::function<void(absl::StatusOr<std::vector<float>> rows, double seconds)>;
  ImageWorker(std::shared_ptr<const vision::VisionEncoder> encoder, int threads);
  // Waits for the image being encoded; the queued ones are dropped without a callback.
  ~ImageWorker();
  ImageWorker(const ImageWorker&) = delete;
  ImageWorker& operator=(const ImageWorker&) = delete;

  int tokens() const { return encoder_->tokens(); }
  int width() const { return encoder_->width(); }
  // Queues an image; `done` gets its rows ([tokens()][width()]) or the encoder's error. An image
  // whose `cancelled` is set before the worker reaches it is dropped without a callback (nobody
  // waits for it any more).
  void Encode(std::shared_ptr<const vision::Image> image, Done done,
              std::shared_ptr<const std::atomic<bool>> cancelled = nullptr);
  // Images dropped that way since start.
  int64_t skipped() const { return skipped_.load(); }

 private:
  void Loop();
  std::shared_ptr<const vision::VisionEncoder> encoder_;
  int threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  struct Job {
    std::shared_ptr<const vision::Image> image;
    Done done;
    std::shared_ptr<const std::atomic<bool>> cancelled;
  };
  std::deque<Job> queue_;  // Guarded by mu_.
  std::atomic<int64_t> skipped_{0};
  bool stop_ = false;                                                         // Guarded by mu_.
  std::thread thread_;
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CORE_VISION_H_
