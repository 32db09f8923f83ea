#include "server/core/vision.h"

#include <openssl/evp.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/absl_compat.h"

namespace rwkv::server {

absl::StatusOr<PromptImage> ReadPromptImage(std::span<const uint8_t> bytes, std::string_view field,
                                            const VisionLimits& limits) {
  if (limits.tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(AV(field), ": this server's model takes no images (it has no VisualRWKV vision encoder)"));
  }
  if (bytes.empty()) return absl::InvalidArgumentError(absl::StrCat(AV(field), " is empty"));
  absl::StatusOr<vision::Image> image = vision::DecodeImage(bytes, limits.image);
  if (!image.ok()) return absl::InvalidArgumentError(absl::StrCat(AV(field), ": ", image.status().message()));
  absl::StatusOr<PromptImage> out = PromptImageOf(std::move(*image));
  if (!out.ok()) return absl::Status(out.status().code(), absl::StrCat(AV(field), ": ", out.status().message()));
  return out;
}

absl::StatusOr<PromptImage> PromptImageOf(vision::Image image) {
  PromptImage out;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const uint32_t dims[2] = {static_cast<uint32_t>(image.width), static_cast<uint32_t>(image.height)};
  unsigned int len = 0;
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, dims, sizeof(dims)) == 1 &&
                  EVP_DigestUpdate(ctx, image.rgb.data(), image.rgb.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, out.digest.data(), &len) == 1 && len == out.digest.size();
  EVP_MD_CTX_free(ctx);
  if (!ok) return absl::InternalError("SHA-256 of the pixels failed");
  out.pixels = std::make_shared<const vision::Image>(std::move(image));
  return out;
}

std::vector<int32_t> ImageKey(const ImageDigest& digest, int tokens) {
  std::vector<int32_t> key(static_cast<size_t>(std::max(tokens, 0)), 0);
  if (key.empty()) return key;
  for (size_t w = 0; w < 8; ++w) {
    const uint32_t word = static_cast<uint32_t>(digest[4 * w]) | static_cast<uint32_t>(digest[4 * w + 1]) << 8 |
                          static_cast<uint32_t>(digest[4 * w + 2]) << 16 | static_cast<uint32_t>(digest[4 * w + 3]) << 24;
    // Fewer positions than words: each position carries the xor of several (31 bits of each).
    key[w % key.size()] ^= static_cast<int32_t>(word & 0x7fffffffu);
  }
  // Positions past the digest carry their index; every position is negative (bit 31 set), which
  // no token id is.
  for (size_t i = 0; i < key.size(); ++i) {
    const uint32_t v = i < 8 ? static_cast<uint32_t>(key[i]) : static_cast<uint32_t>(i);
    key[i] = static_cast<int32_t>(v | 0x80000000u);
  }
  return key;
}

ImageWorker::ImageWorker(std::shared_ptr<const vision::VisionEncoder> encoder, int threads)
    : encoder_(std::move(encoder)), threads_(threads > 0 ? threads : 1), thread_([this] { Loop(); }) {}

ImageWorker::~ImageWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

void ImageWorker::Encode(std::shared_ptr<const vision::Image> image, Done done,
                         std::shared_ptr<const std::atomic<bool>> cancelled) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({std::move(image), std::move(done), std::move(cancelled)});
  }
  cv_.notify_one();
}

void ImageWorker::Loop() {
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    if (job.cancelled != nullptr && job.cancelled->load()) {
      ++skipped_;
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<std::vector<float>> rows = encoder_->Encode(*job.image, threads_);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    job.done(std::move(rows), seconds);
  }
}

}  // namespace rwkv::server
