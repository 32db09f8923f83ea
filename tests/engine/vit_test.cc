// The CPU ViT tower against timm in float64 (tests/reference/make_vision_fixtures.py): tiny random
// towers with the structure of VisualRWKV-7's DINOv2 (class + 4 registers, position embeddings on
// the patches only, layer scale) and SigLIP (no prefix, no layer scale) towers.
#include "engine/vision/vit.h"

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/vision/encoder.h"
#include "engine/vision/projector.h"
#include "engine/vision/sam.h"

#include <cmath>
#include <random>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/test_util.h"

namespace rwkv::vision {
namespace {

std::vector<double> ReadF64(const std::string& path) {
  const std::string raw = testing::ReadFile(path);
  std::vector<double> v(raw.size() / 8);
  std::memcpy(v.data(), raw.data(), v.size() * 8);
  return v;
}

double RelL2(const std::vector<float>& got, const double* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// Float32 against float64 over a few blocks of width <= 48 (sums of <= 192 products, a softmax
// over 21 tokens, LayerNorms): rounding gives ~3e-7 relative L2 (measured); 1e-5 leaves margin
// and is ten times tighter than the 1e-4 asked of the towers. A wrong token order, head split,
// scale or position offset moves the result by O(1); GELU's tanh form instead of erf by 6e-5
// (dino) and 1.4e-4 (siglip), measured: caught here, not at 1e-4.
constexpr double kTol = 1e-5;

// The attention's softmax against float64 on rows of every tail length, spreads up to 200 (exps
// that underflow to 0) and equal scores. Each exp is within 2 ulp and the sum is in double, so
// every probability is within 1e-6 of float64 relative to the row's largest (1 at the max).
TEST(SoftmaxTest, RowsMatchFloat64) {
  std::mt19937 rng(11);
  for (int n : {1, 2, 7, 8, 9, 15, 16, 17, 100, 1029, 4096}) {
    for (float spread : {0.0f, 1.0f, 10.0f, 200.0f}) {
      std::uniform_real_distribution<float> u(-spread, spread);
      std::vector<float> row(n);
      for (float& x : row) x = u(rng) + 3.0f;
      std::vector<double> want(n);
      const double mx = *std::max_element(row.begin(), row.end());
      double sum = 0;
      for (int j = 0; j < n; ++j) sum += want[j] = std::exp(double{row[j]} - mx);
      for (double& w : want) w /= sum;
      for (auto* softmax : {&SoftmaxRow, &SoftmaxRowScalar}) {  // The AVX2 path (on this CPU) and the fallback.
        std::vector<float> got = row;
        softmax(got.data(), n);
        double worst = 0, total = 0;
        for (int j = 0; j < n; ++j) {
          worst = std::max(worst, std::abs(got[j] - want[j]) / *std::max_element(want.begin(), want.end()));
          total += got[j];
        }
        EXPECT_LT(worst, 1e-6) << "n " << n << " spread " << spread << (softmax == &SoftmaxRow ? "" : " (scalar)");
        EXPECT_NEAR(total, 1.0, 1e-5) << "n " << n << " spread " << spread;
      }
    }
  }
}

TEST(VitTest, TinyTowersMatchTimmInFloat64) {
  const nlohmann::json manifest = nlohmann::json::parse(testing::ReadFile(testing::Fixture("vision/towers.json")));
  for (const std::string name : {"dino", "siglip"}) {
    const nlohmann::json& m = manifest.at(name);
    auto file = TensorFile::Open(testing::Fixture("vision/tiny-" + name + ".safetensors"));
    ASSERT_TRUE(file.ok()) << file.status();
    VitOptions o;
    o.heads = m.at("num_heads");
    o.output_block = m.at("output_block");
    absl::StatusOr<VitTower> tower = VitTower::Load(**file, "", o);
    ASSERT_TRUE(tower.ok()) << name << ": " << tower.status();
    EXPECT_EQ(tower->image_size(), m.at("img_size").get<int>());
    EXPECT_EQ(tower->prefix_tokens(), (m.at("class_token").get<bool>() ? 1 : 0) + m.at("reg_tokens").get<int>());
    const TensorInfo* px = (*file)->Find("pixels");
    ASSERT_NE(px, nullptr);
    std::vector<float> pixels(px->numel());
    CopyToFloat(*px, pixels.data());
    const absl::StatusOr<std::vector<float>> got = tower->Forward(pixels, 2);
    ASSERT_TRUE(got.ok()) << got.status();
    const std::vector<double> want = ReadF64(testing::Fixture("vision/tiny-" + name + ".features.f64"));
    ASSERT_EQ(got->size(), want.size()) << name;
    ASSERT_EQ(want.size(), static_cast<size_t>(tower->patches()) * tower->dim());
    const double err = RelL2(*got, want.data(), want.size());
    std::printf("%s: relative L2 %.3g\n", name.c_str(), err);
    EXPECT_LT(err, kTol) << name;
    double den = 0;
    for (double w : want) den += w * w;
    EXPECT_GT(den, 1.0) << name;  // Features of substance, not a vanishing signal.
  }
}

TEST(VitTest, BadWeightsAndInputsAreClearErrors) {
  auto file = TensorFile::Open(testing::Fixture("vision/tiny-dino.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  VitOptions o;
  o.heads = 5;  // 48 is not a multiple of 5.
  EXPECT_EQ(VitTower::Load(**file, "", o).status().message(), "vision tower: 5 heads do not divide the width 48");
  o.heads = 4;
  const absl::StatusOr<VitTower> missing = VitTower::Load(**file, "vit.dino.", o);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "vision tower: tensor vit.dino.patch_embed.proj.weight is missing");
  o.output_block = 3;
  EXPECT_EQ(VitTower::Load(**file, "", o).status().message(), "vision tower: output block 3 of 3 blocks");
  o.output_block = -1;
  absl::StatusOr<VitTower> tower = VitTower::Load(**file, "", o);
  ASSERT_TRUE(tower.ok()) << tower.status();
  const absl::StatusOr<std::vector<float>> bad = tower->Forward(std::vector<float>(10), 1);
  EXPECT_EQ(bad.status().message(), "vision tower: pixels: 10 values; expected 3x28x28");
}

// The official SAM encoder (VisualRWKV v7.00's sam.py) built tiny: an 8x8 grid, windows of 3 (the
// grid padded to 9), block 1 global, the neck and the space-to-depth; float64 on the float32
// values. Same tolerance and reasoning as the ViT towers.
TEST(SamTest, TinyOfficialEncoderMatchesInFloat64) {
  auto file = TensorFile::Open(testing::Fixture("vision/tiny-sam.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<SamTower> sam = SamTower::Load(**file, "");
  ASSERT_TRUE(sam.ok()) << sam.status();
  EXPECT_EQ(sam->image_size(), 64);
  EXPECT_EQ(sam->tokens(), 16);
  EXPECT_EQ(sam->out_dim(), 32);
  const TensorInfo* px = (*file)->Find("pixels");
  ASSERT_NE(px, nullptr);
  std::vector<float> pixels(px->numel());
  CopyToFloat(*px, pixels.data());
  const absl::StatusOr<std::vector<float>> got = sam->Forward(pixels, 2);
  ASSERT_TRUE(got.ok()) << got.status();
  const std::vector<double> want = ReadF64(testing::Fixture("vision/tiny-sam.features.f64"));
  ASSERT_EQ(got->size(), want.size());
  const double err = RelL2(*got, want.data(), want.size());
  std::printf("sam: relative L2 %.3g\n", err);
  EXPECT_LT(err, kTol);
  EXPECT_EQ(SamTower::Load(**file, "vit.sam.").status().message(),
            "SAM tower: tensor vit.sam.patch_embed.proj.weight is missing");
}

// The tiny encoder fixtures' shape (make_vision_fixtures.py): heads 4 and 5, 2x2 pooled tokens.
VisionEncoderOptions TinyEncoderOptions() {
  VisionEncoderOptions o;
  o.dino_heads = 4;
  o.siglip_heads = 5;
  o.tokens_per_image = 4;
  return o;
}

// tests/fixtures/images/source-37x23.png, decoded.
absl::StatusOr<Image> SourceImage() {
  const std::string bytes = testing::ReadFile(testing::Fixture("images/source-37x23.png"));
  return DecodeImage(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

// Pooling to 2x2 (windows of 3) and 4x4 (overlapping windows of 2) from a 6x6 grid, and both
// projector kinds, against torch in float64 on the same float32 values. Pooling averages at most
// 9 values (float32 rounding ~1e-7); the projectors are one or two products of width 24 and a
// LayerNorm: 1e-6 and 1e-5 relative L2. A wrong window, channel order or gate is O(1).
TEST(VisionHead, PoolingAndProjectorsMatchTorchInFloat64) {
  auto file = TensorFile::Open(testing::Fixture("vision/tiny-head.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* f = (*file)->Find("features");
  ASSERT_NE(f, nullptr);
  std::vector<float> features(f->numel());
  CopyToFloat(*f, features.data());
  const std::vector<double> want = ReadF64(testing::Fixture("vision/tiny-head.expected.f64"));
  absl::StatusOr<Projector> gated = Projector::Load(**file, "gated.");
  absl::StatusOr<Projector> linear = Projector::Load(**file, "linear.");
  ASSERT_TRUE(gated.ok()) << gated.status();
  ASSERT_TRUE(linear.ok()) << linear.status();
  EXPECT_TRUE(gated->gated());
  EXPECT_FALSE(linear->gated());
  size_t at = 0;
  for (int s : {2, 4}) {
    const std::vector<float> pooled = AdaptiveAvgPool(features, 6, 24, s);
    ASSERT_EQ(pooled.size(), static_cast<size_t>(s * s * 24));
    EXPECT_LT(RelL2(pooled, want.data() + at, pooled.size()), 1e-6) << s;
    at += pooled.size();
    const std::vector<float> g = gated->Forward(pooled, s * s, 1);
    EXPECT_LT(RelL2(g, want.data() + at, g.size()), 1e-5) << s;
    at += g.size();
    const std::vector<float> l = linear->Forward(pooled, s * s, 1);
    EXPECT_LT(RelL2(l, want.data() + at, l.size()), 1e-5) << s;
    at += l.size();
  }
  EXPECT_EQ(at, want.size());
  EXPECT_EQ(Projector::Load(**file, "none.").status().message(),
            "projector: neither none.weight (linear) nor none.gate.weight (gated MLP) is present");
}

// The whole encoder on a real image file: the three tiny towers and a gated projector as one
// VisualRWKV checkpoint (vit.*, proj.*), against VisualRWKV's own pipeline in float64 (PIL resize,
// torchvision ToTensor/Normalize, the towers, concatenation, 2x2 pooling, projector). The resize
// is bit-exact, the rest as the towers: 1e-5.
TEST(VisionEncoderTest, AnImageBecomesTheRowsOfTheReferencePipeline) {
  auto file = TensorFile::Open(testing::Fixture("vision/tiny-visualrwkv-encoder.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  VisionEncoderOptions o = TinyEncoderOptions();
  absl::StatusOr<VisionEncoder> enc = VisionEncoder::Load(**file, o);
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_EQ(enc->tokens(), 4);
  EXPECT_EQ(enc->width(), 64);
  const absl::StatusOr<Image> img = SourceImage();
  ASSERT_TRUE(img.ok()) << img.status();
  VisionEncoder::Timings t;
  const absl::StatusOr<std::vector<float>> rows = enc->Encode(*img, 2, &t);
  ASSERT_TRUE(rows.ok()) << rows.status();
  const std::vector<double> want = ReadF64(testing::Fixture("vision/tiny-visualrwkv-encoder.rows.f64"));
  ASSERT_EQ(rows->size(), want.size());
  const double err = RelL2(*rows, want.data(), want.size());
  std::printf("encoder: relative L2 %.3g\n", err);
  EXPECT_LT(err, 1e-5);
  EXPECT_GT(t.dino + t.siglip + t.sam, 0.0);

  o.tokens_per_image = 5;
  EXPECT_EQ(VisionEncoder::Load(**file, o).status().message(),
            "vision encoder: tokens_per_image is 5; it must be a square of at most 16");
}

// A whole VisualRWKV-7 (tests/fixtures/tiny-rwkv7 as rwkv.*, the tiny encoder as vit.* and
// proj.*) on the CPU backend: the image's 4 rows, then 6 tokens, logits of every position against
// the float64 reference (rwkv7_ref.py with the rows through blocks.0.ln0). The encoder is within
// ~5e-7 and the model adds float32 rounding over 3 layers: 1e-5 relative L2 per position.
TEST(VisionEncoderTest, LogitsAfterAnImageMatchTheReference) {
  const std::string path = testing::Fixture("vision/tiny-visualrwkv7.safetensors");
  absl::StatusOr<std::unique_ptr<Model>> model = Model::Load(path);
  ASSERT_TRUE(model.ok()) << model.status();
  auto file = TensorFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  VisionEncoderOptions o = TinyEncoderOptions();
  absl::StatusOr<VisionEncoder> enc = VisionEncoder::Load(**file, o);
  ASSERT_TRUE(enc.ok()) << enc.status();
  ASSERT_EQ(enc->width(), (*model)->config().n_embd);
  const absl::StatusOr<Image> img = SourceImage();
  ASSERT_TRUE(img.ok()) << img.status();
  const absl::StatusOr<std::vector<float>> rows = enc->Encode(*img, 2);
  ASSERT_TRUE(rows.ok()) << rows.status();

  const std::vector<int32_t> manifest = testing::ManifestTokens();
  const std::vector<int32_t> text(manifest.begin(), manifest.begin() + 6);
  std::vector<int32_t> tokens(4, 0);  // Placeholders: their rows replace the embedding.
  tokens.insert(tokens.end(), text.begin(), text.end());
  std::vector<const float*> row_ptrs(tokens.size(), nullptr);
  for (int i = 0; i < 4; ++i) row_ptrs[i] = rows->data() + static_cast<size_t>(i) * enc->width();
  BackendOptions bo;
  bo.pool_slots = 1;
  auto backend = CreateBackend(std::shared_ptr<const Model>(std::move(*model)), bo);
  ASSERT_TRUE(backend.ok()) << backend.status();
  const int slot = *(*backend)->pool().Acquire();
  BatchEntry e{slot, tokens, true, row_ptrs};
  Logits logits;
  ASSERT_TRUE((*backend)->Forward({&e, 1}, &logits).ok());
  const std::vector<double> want = ReadF64(testing::Fixture("vision/tiny-visualrwkv7.logits.f64"));
  const int V = logits.vocab();
  ASSERT_EQ(want.size(), tokens.size() * V);
  double worst = 0;
  for (size_t p = 0; p < tokens.size(); ++p) {
    const std::span<const float> row = logits.Row(0, static_cast<int>(p));
    worst = std::max(worst, RelL2(std::vector<float>(row.begin(), row.end()), want.data() + p * V, V));
  }
  std::printf("visualrwkv7 logits: worst relative L2 %.3g\n", worst);
  EXPECT_LT(worst, 1e-5);
}

}  // namespace
}  // namespace rwkv::vision
