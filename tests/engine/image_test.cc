// Image decoding: round trips through the real encoders (libpng, TurboJPEG, libwebp), the
// limits checked from the header, and clear errors for damaged or unknown files.
#include "engine/vision/image.h"

#include <png.h>
#include <turbojpeg.h>
#include <webp/encode.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/vision/preprocess.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"

namespace rwkv::vision {
namespace {

// A w x h test pattern with distinct values per pixel and channel.
std::vector<uint8_t> Pattern(int w, int h, int channels) {
  std::vector<uint8_t> p(static_cast<size_t>(w) * h * channels);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>((i * 37 + i / 7) & 255);
  return p;
}

std::vector<uint8_t> EncodePng(const std::vector<uint8_t>& pixels, int w, int h, png_uint_32 format) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = w;
  img.height = h;
  img.format = format;
  png_alloc_size_t size = 0;
  EXPECT_TRUE(png_image_write_to_memory(&img, nullptr, &size, 0, pixels.data(), 0, nullptr)) << img.message;
  std::vector<uint8_t> out(size);
  EXPECT_TRUE(png_image_write_to_memory(&img, out.data(), &size, 0, pixels.data(), 0, nullptr)) << img.message;
  out.resize(size);
  return out;
}

std::vector<uint8_t> EncodeJpeg(const std::vector<uint8_t>& rgb, int w, int h) {
  tjhandle tj = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  EXPECT_EQ(tjCompress2(tj, rgb.data(), w, 0, h, TJPF_RGB, &buf, &size, TJSAMP_444, 100, TJFLAG_ACCURATEDCT), 0);
  std::vector<uint8_t> out(buf, buf + size);
  tjFree(buf);
  tjDestroy(tj);
  return out;
}

std::vector<uint8_t> EncodeWebpLossless(const std::vector<uint8_t>& rgb, int w, int h) {
  uint8_t* buf = nullptr;
  const size_t size = WebPEncodeLosslessRGB(rgb.data(), w, h, w * 3, &buf);
  EXPECT_GT(size, 0u);
  std::vector<uint8_t> out(buf, buf + size);
  WebPFree(buf);
  return out;
}

TEST(ImageTest, PngAndLosslessWebpRoundTripExactly) {
  const int w = 13, h = 7;
  const std::vector<uint8_t> rgb = Pattern(w, h, 3);
  for (const auto& [name, bytes] : {std::pair{"png", EncodePng(rgb, w, h, PNG_FORMAT_RGB)},
                                    {"webp", EncodeWebpLossless(rgb, w, h)}}) {
    const absl::StatusOr<Image> img = DecodeImage(bytes);
    ASSERT_TRUE(img.ok()) << name << ": " << img.status();
    EXPECT_EQ(img->width, w);
    EXPECT_EQ(img->height, h);
    EXPECT_EQ(img->rgb, rgb) << name;
  }
}

// Alpha is dropped, not composited: a transparent pixel keeps its stored colour (PIL's
// convert("RGB")); grey expands to three equal channels.
TEST(ImageTest, AlphaIsDroppedAndGreyExpands) {
  const int w = 4, h = 3;
  std::vector<uint8_t> rgba = Pattern(w, h, 4);
  for (size_t i = 3; i < rgba.size(); i += 4) rgba[i] = 0;  // Fully transparent.
  const absl::StatusOr<Image> a = DecodeImage(EncodePng(rgba, w, h, PNG_FORMAT_RGBA));
  ASSERT_TRUE(a.ok()) << a.status();
  for (int i = 0; i < w * h; ++i) {
    for (int c = 0; c < 3; ++c) ASSERT_EQ(a->rgb[3 * i + c], rgba[4 * i + c]) << i << "," << c;
  }
  const std::vector<uint8_t> grey = Pattern(w, h, 1);
  const absl::StatusOr<Image> g = DecodeImage(EncodePng(grey, w, h, PNG_FORMAT_GRAY));
  ASSERT_TRUE(g.ok()) << g.status();
  for (int i = 0; i < w * h; ++i) {
    for (int c = 0; c < 3; ++c) ASSERT_EQ(g->rgb[3 * i + c], grey[i]);
  }
}

// JPEG is lossy: quality 100 without chroma subsampling leaves each channel within a few levels
// of a smooth image (DCT quantisation with unit steps, plus YCbCr rounding both ways): 4 of 255.
TEST(ImageTest, JpegDecodesCloseToItsSource) {
  const int w = 32, h = 24;
  std::vector<uint8_t> rgb(w * h * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      rgb[(y * w + x) * 3 + 0] = static_cast<uint8_t>(8 * x);
      rgb[(y * w + x) * 3 + 1] = static_cast<uint8_t>(10 * y);
      rgb[(y * w + x) * 3 + 2] = static_cast<uint8_t>(128 + 2 * (x - y));
    }
  }
  const absl::StatusOr<Image> img = DecodeImage(EncodeJpeg(rgb, w, h));
  ASSERT_TRUE(img.ok()) << img.status();
  ASSERT_EQ(img->rgb.size(), rgb.size());
  int worst = 0;
  for (size_t i = 0; i < rgb.size(); ++i) worst = std::max(worst, std::abs(int{img->rgb[i]} - int{rgb[i]}));
  EXPECT_LE(worst, 4);
}

TEST(ImageTest, LimitsAreCheckedBeforeDecoding) {
  const std::vector<uint8_t> rgb = Pattern(40, 30, 3);
  ImageLimits small;
  small.max_pixels = 1000;
  for (const auto& bytes : {EncodePng(rgb, 40, 30, PNG_FORMAT_RGB), EncodeJpeg(rgb, 40, 30), EncodeWebpLossless(rgb, 40, 30)}) {
    const absl::StatusOr<Image> img = DecodeImage(bytes, small);
    ASSERT_FALSE(img.ok());
    EXPECT_EQ(img.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(img.status().message()).find("40x30 is 1200 pixels; at most 1000"), std::string::npos)
        << img.status();
  }
  ImageLimits tiny;
  tiny.max_bytes = 10;
  const absl::StatusOr<Image> img = DecodeImage(EncodePng(rgb, 40, 30, PNG_FORMAT_RGB), tiny);
  ASSERT_FALSE(img.ok());
  EXPECT_NE(std::string(img.status().message()).find("bytes; at most 10"), std::string::npos) << img.status();
}

TEST(ImageTest, DamagedAndUnknownFilesAreClearErrors) {
  const std::vector<uint8_t> rgb = Pattern(20, 20, 3);
  auto expect_error = [](std::vector<uint8_t> bytes, const std::string& want) {
    const absl::StatusOr<Image> img = DecodeImage(bytes);
    ASSERT_FALSE(img.ok()) << want;
    EXPECT_EQ(img.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(img.status().message()).find(want), std::string::npos) << img.status();
  };
  expect_error({'G', 'I', 'F', '8', '9', 'a', 0, 0, 0, 0, 0, 0}, "not a PNG, JPEG or WebP file");
  expect_error({}, "not a PNG, JPEG or WebP file");
  std::vector<uint8_t> png = EncodePng(rgb, 20, 20, PNG_FORMAT_RGB);
  png.resize(png.size() / 2);
  expect_error(png, "image: PNG: ");
  std::vector<uint8_t> jpeg = EncodeJpeg(rgb, 20, 20);
  jpeg.resize(jpeg.size() / 2);
  expect_error(jpeg, "image: JPEG: ");
  std::vector<uint8_t> webp = EncodeWebpLossless(rgb, 20, 20);
  webp.resize(webp.size() / 2);
  expect_error(webp, "image: WebP: ");
  std::vector<uint8_t> header_only = EncodeJpeg(rgb, 20, 20);
  header_only.resize(3);
  expect_error(header_only, "image: JPEG: ");
}

Image LoadFixture(const std::string& name) {
  const std::string bytes = testing::ReadFile(testing::Fixture("images/" + name));
  absl::StatusOr<Image> img =
      DecodeImage(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  EXPECT_TRUE(img.ok()) << name << ": " << img.status();
  return img.ok() ? *img : Image{};
}

// Pillow's Image.resize(BICUBIC) of the same source (tests/reference/make_image_fixtures.py), bit
// for bit: shrinking (antialiased), growing, one direction only, down to 1x1. Exact, because the
// reference pipelines feed Pillow's integers to the towers and an off-by-one pixel is a different
// input.
TEST(ImageTest, BicubicResizeEqualsPillowBitForBit) {
  const Image src = LoadFixture("source-37x23.png");
  ASSERT_EQ(src.width, 37);
  for (const auto& [w, h] : {std::pair{16, 16}, {80, 50}, {37, 11}, {20, 23}, {112, 90}, {5, 3}, {1, 1}}) {
    const Image want = LoadFixture("bicubic-" + std::to_string(w) + "x" + std::to_string(h) + ".png");
    const Image got = ResizeBicubic(src, w, h);
    ASSERT_EQ(got.width, w);
    ASSERT_EQ(got.height, h);
    int differing = 0;
    for (size_t i = 0; i < want.rgb.size(); ++i) differing += got.rgb[i] != want.rgb[i];
    EXPECT_EQ(differing, 0) << w << "x" << h;
  }
  // The same size is the image itself.
  EXPECT_EQ(ResizeBicubic(src, 37, 23).rgb, src.rgb);
}

// ToTensor then Normalize, in float32, channel-major.
TEST(ImageTest, NormalizeIsChannelMajorScaledAndShifted) {
  Image img;
  img.width = 2;
  img.height = 1;
  img.rgb = {0, 128, 255, 51, 102, 204};
  const std::vector<float> t = Normalize(img, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f});
  ASSERT_EQ(t.size(), 6u);
  const float want[6] = {(0.0f / 255.0f - 0.485f) / 0.229f, (51.0f / 255.0f - 0.485f) / 0.229f,
                         (128.0f / 255.0f - 0.456f) / 0.224f, (102.0f / 255.0f - 0.456f) / 0.224f,
                         (255.0f / 255.0f - 0.406f) / 0.225f, (204.0f / 255.0f - 0.406f) / 0.225f};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t[i], want[i]) << i;  // The same float32 operations: exact.
}

}  // namespace
}  // namespace rwkv::vision
