// Images served end to end in process: the gRPC service over a loopback port, the scheduler with
// its vision worker, the real CPU backend on a tiny VisualRWKV-7 (tests/fixtures/vision/
// tiny-visualrwkv7-v257, made by tests/reference/make_vision_server_fixture.py:
// the tiny towers and projector as vit.* / proj.*, the byte-vocabulary RWKV-7 as rwkv.*, 4 tokens an image).
// The oracle is the engine driven directly: the encoder's rows spliced into the prompt by hand,
// one Forward, then greedy decoding. Both run the same float32 kernels, so tokens must be equal.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/client.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "engine/tensor_file.h"
#include "engine/vision/encoder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/chat_template.h"
#include "server/core/requests.h"
#include "server/core/scheduler.h"
#include "server/core/vision.h"
#include "server/grpc/service.h"
#include "server/grpc/validation.h"
#include "server/metrics.h"

namespace rwkv::server {
namespace {

using ::testing::HasSubstr;

const std::string kDir = std::string(RWKV_SOURCE_DIR) + "/tests/fixtures/";
const std::string kModel = kDir + "vision/tiny-visualrwkv7-v257.safetensors";
constexpr int kImageTokens = 4;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
std::string ImageA() { return ReadFile(kDir + "images/source-37x23.png"); }
std::string ImageB() { return ReadFile(kDir + "images/bicubic-80x50.png"); }

vision::VisionEncoderOptions TinyEncoderOptions() {
  vision::VisionEncoderOptions o;
  o.dino_heads = 4;
  o.siglip_heads = 5;
  o.tokens_per_image = kImageTokens;
  return o;
}

std::shared_ptr<const vision::VisionEncoder> LoadEncoder() {
  auto file = TensorFile::Open(kModel);
  EXPECT_TRUE(file.ok()) << file.status();
  absl::StatusOr<vision::VisionEncoder> enc = vision::VisionEncoder::Load(**file, TinyEncoderOptions());
  EXPECT_TRUE(enc.ok()) << enc.status();
  return std::make_shared<const vision::VisionEncoder>(std::move(*enc));
}

int32_t Argmax(std::span<const float> x) {  // Greedy: the largest logit, the lowest id on ties.
  int32_t best = 0;
  for (size_t i = 1; i < x.size(); ++i) {
    if (x[i] > x[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

// The oracle: `pieces` of text and images ("" + image index) in order, through the engine directly.
struct Piece {
  std::string text;
  const std::string* image = nullptr;
};
std::vector<int32_t> DirectGreedy(const std::vector<Piece>& pieces, const Tokenizer& tok, int n) {
  std::shared_ptr<const Model> model = *Model::Load(kModel);
  auto enc = LoadEncoder();
  const int C = model->config().n_embd;
  std::vector<int32_t> tokens;
  std::vector<const float*> rows;
  std::vector<std::vector<float>> keep;
  keep.reserve(pieces.size());
  for (const Piece& p : pieces) {
    if (p.image != nullptr) {
      absl::StatusOr<vision::Image> img = vision::DecodeImage(
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(p.image->data()), p.image->size()));
      EXPECT_TRUE(img.ok()) << img.status();
      keep.push_back(*enc->Encode(*img, 1));
      for (int t = 0; t < kImageTokens; ++t) {
        tokens.push_back(0);
        rows.push_back(keep.back().data() + static_cast<size_t>(t) * C);
      }
    } else {
      for (int32_t id : tok.Encode(p.text)) {
        tokens.push_back(id);
        rows.push_back(nullptr);
      }
    }
  }
  BackendOptions bo;
  bo.pool_slots = 1;
  bo.threads = 1;
  std::unique_ptr<Backend> backend = *CreateBackend(model, bo);
  const int slot = *backend->pool().Acquire();
  Logits logits;
  BatchEntry e{slot, tokens, false, rows};
  EXPECT_TRUE(backend->Forward({&e, 1}, &logits).ok());
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(Argmax(logits.Last(0)));
    BatchEntry d{slot, std::span<const int32_t>(&out.back(), 1)};
    EXPECT_TRUE(backend->Forward({&d, 1}, &logits).ok());
  }
  return out;
}

struct VisionHarness {
  explicit VisionHarness(bool vision = true, int64_t cache_bytes = 64 << 20) {
    tokenizer = *Tokenizer::Load(kDir + "byte-vocab.txt");
    std::shared_ptr<const Model> model = *Model::Load(kModel);
    BackendOptions bo;
    bo.pool_slots = 4;
    bo.threads = 1;
    SchedulerOptions so;
    so.max_running = 4;
    so.prefix_cache.max_bytes = cache_bytes;
    StateCodec codec{ModelFingerprint(*model), model->config()};
    scheduler = std::make_unique<Scheduler>(*CreateBackend(model, bo), tokenizer.get(), so, &metrics);
    if (vision) {
      EXPECT_TRUE(scheduler->SetImageWorker(std::make_unique<ImageWorker>(LoadEncoder(), 1)).ok());
    }
    FrontendOptions fo;
    fo.vision.max_images = 3;
    fo.vision.image.max_pixels = 100 * 100;
    frontend = std::make_unique<Frontend>(fo);
    service = std::make_unique<RwkvService>(ServiceOptions{}, frontend.get(), &metrics);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service.get());
    server = b.BuildAndStart();
    frontend->Attach(scheduler.get(), tokenizer.get(), codec, "cpu");
    scheduler->Start();
    client = std::make_unique<client::Client>("127.0.0.1:" + std::to_string(port));
  }
  ~VisionHarness() {
    scheduler->AbortAll(absl::UnavailableError("test over"));
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    scheduler.reset();
  }
  double Images(const std::string& source) {
    for (const prometheus::MetricFamily& f : metrics.registry().Collect()) {
      if (f.name != "rwkv_images_total") continue;
      for (const prometheus::ClientMetric& m : f.metric) {
        if (!m.label.empty() && m.label[0].value == source) return m.counter.value;
      }
    }
    return -1;
  }

  Metrics metrics;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<Frontend> frontend;
  std::unique_ptr<RwkvService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<client::Client> client;
  int port = 0;
};

v1::GenerateRequest Greedy(const std::string& text, std::vector<std::string> images, int n = 6) {
  v1::GenerateRequest r;
  r.set_text(text);
  for (std::string& im : images) r.add_images()->set_data(std::move(im));
  r.mutable_sampling()->set_temperature(0);
  r.mutable_stop()->set_max_tokens(n);
  r.mutable_stop()->set_ignore_eos(true);
  r.mutable_output()->set_token_ids(true);
  return r;
}

struct Result {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;  // With output.logprobs.
  absl::StatusOr<v1::Final> final = absl::UnknownError("not run");
};
Result Call(client::Client& c, const v1::GenerateRequest& r) {
  Result out;
  out.final = c.Generate(r, [&](const v1::Chunk& ch) {
    out.ids.insert(out.ids.end(), ch.token_ids().begin(), ch.token_ids().end());
    for (const v1::TokenLogprob& lp : ch.logprobs()) out.logprobs.push_back(lp.logprob());
    return true;
  });
  return out;
}

TEST(VisionServerTest, AnImagePromptGeneratesWhatTheEngineDoesDirectly) {
  VisionHarness h;
  const std::string a = ImageA();
  const Result r = Call(*h.client, Greedy("User: <image>\nWhat is this?\n\nAssistant:", {a}));
  ASSERT_TRUE(r.final.ok()) << r.final.status();
  const std::vector<int32_t> want =
      DirectGreedy({{"User: "}, {"", &a}, {"\nWhat is this?\n\nAssistant:"}}, *h.tokenizer, 6);
  EXPECT_EQ(r.ids, want);
  const int text_tokens = static_cast<int>(h.tokenizer->Encode("User: \nWhat is this?\n\nAssistant:").size());
  EXPECT_EQ(r.final->usage().prompt_tokens(), text_tokens + kImageTokens) << "an image counts as its 4 tokens";
  EXPECT_EQ(h.Images("encoded"), 1);
  // The image is what the model reads: another image, other probabilities (the tiny random model's
  // greedy tokens happen to agree for these two images; their log-probabilities do not).
  v1::GenerateRequest with_a = Greedy("User: <image>\nWhat is this?\n\nAssistant:", {a}, 1);
  with_a.mutable_output()->set_logprobs(true);
  v1::GenerateRequest with_b = with_a;
  with_b.mutable_images(0)->set_data(ImageB());
  const Result la = Call(*h.client, with_a), lb = Call(*h.client, with_b);
  ASSERT_TRUE(la.final.ok() && lb.final.ok());
  ASSERT_EQ(la.logprobs.size(), 1u);
  ASSERT_EQ(lb.logprobs.size(), 1u);
  EXPECT_NE(la.logprobs[0], lb.logprobs[0]);
  EXPECT_EQ(h.Images("encoded"), 2);

  absl::StatusOr<v1::ModelInfo> info = h.client->GetModelInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->image_tokens(), kImageTokens);
  EXPECT_EQ(info->limits().max_images(), 3);
  EXPECT_EQ(info->limits().max_image_pixels(), 100 * 100);
}

// A second question on the same image: the state after the image comes from the prefix cache,
// so the encoder does not run, and the answer is bitwise the one a server without the cache gives
// (the CPU backend's state after a prefix is the same whatever the chunking).
TEST(VisionServerTest, ASecondQuestionOnTheSameImageCostsNoVisionWork) {
  VisionHarness h;
  VisionHarness cold(true, /*cache_bytes=*/0);
  const std::string a = ImageA();
  const std::string q2 = "User: <image>\nAnd its colour?\n\nAssistant:";
  ASSERT_TRUE(Call(*h.client, Greedy("User: <image>\nWhat is this?\n\nAssistant:", {a})).final.ok());
  ASSERT_EQ(h.Images("encoded"), 1);
  const Result second = Call(*h.client, Greedy(q2, {a}));
  ASSERT_TRUE(second.final.ok()) << second.final.status();
  const int through_image = static_cast<int>(h.tokenizer->Encode("User: ").size()) + kImageTokens;
  EXPECT_EQ(second.final->usage().cached_prompt_tokens(), through_image)
      << "cached up to the end of the image (a capture point), not into the question";
  EXPECT_EQ(h.Images("encoded"), 1) << "no vision work for the second question";
  EXPECT_EQ(h.Images("cache"), 1);
  const Result uncached = Call(*cold.client, Greedy(q2, {a}));
  ASSERT_TRUE(uncached.final.ok());
  EXPECT_EQ(uncached.final->usage().cached_prompt_tokens(), 0);
  EXPECT_EQ(second.ids, uncached.ids);
  EXPECT_EQ(second.ids, DirectGreedy({{"User: "}, {"", &a}, {"\nAnd its colour?\n\nAssistant:"}}, *h.tokenizer, 6));

  // Same text, other pixels: the cache key is the image's digest, so no hit past "User: ".
  const std::string other = ImageB();
  const Result b = Call(*h.client, Greedy(q2, {other}));
  ASSERT_TRUE(b.final.ok());
  EXPECT_LT(b.final->usage().cached_prompt_tokens(), through_image);
  EXPECT_EQ(h.Images("encoded"), 2);
  EXPECT_EQ(b.ids, DirectGreedy({{"User: "}, {"", &other}, {"\nAnd its colour?\n\nAssistant:"}}, *h.tokenizer, 6));
}

// Chat messages carry images before their text ("User: <image>\n{content}\n\nAssistant:").
TEST(VisionServerTest, ChatMessagesPlaceTheirImagesBeforeTheText) {
  VisionHarness h;
  const std::string a = ImageA(), b = ImageB();
  v1::GenerateRequest r = Greedy("", {});
  r.clear_text();
  v1::ChatMessage* m = r.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content("Compare them.");
  m->add_images()->set_data(a);
  m->add_images()->set_data(b);
  const Result got = Call(*h.client, r);
  ASSERT_TRUE(got.final.ok()) << got.final.status();
  // The template's pieces: the prefix, each image and a newline, the content and the turn end,
  // then the generation prompt on its own (server/core/chat_template.h).
  EXPECT_EQ(got.ids,
            DirectGreedy({{"User: "}, {"", &a}, {"\n"}, {"", &b}, {"\nCompare them.\n\n"}, {"Assistant:"}}, *h.tokenizer, 6));
}

// A session whose first prompt holds an image, then a turn: the text a stateless request of the
// whole prompt gives.
TEST(VisionServerTest, ASessionRemembersItsImage) {
  VisionHarness h;
  const std::string a = ImageA();
  v1::CreateSessionRequest c;
  c.set_session_id("s");
  c.set_text("User: <image>\nWhat is this?\n\nAssistant:");
  c.add_images()->set_data(a);
  absl::StatusOr<v1::Session> s = h.client->CreateSession(c);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->token_count(), static_cast<int64_t>(h.tokenizer->Encode("User: \nWhat is this?\n\nAssistant:").size()) +
                                  kImageTokens);
  v1::GenerateRequest turn = Greedy("", {});
  turn.set_session_id("s");
  const Result got = Call(*h.client, turn);
  ASSERT_TRUE(got.final.ok()) << got.final.status();
  EXPECT_EQ(got.ids, DirectGreedy({{"User: "}, {"", &a}, {"\nWhat is this?\n\nAssistant:"}}, *h.tokenizer, 6));
}

TEST(VisionServerTest, BadImagesAreInvalidArgumentNamingTheImage) {
  VisionHarness h;
  const std::string a = ImageA();
  struct Row {
    v1::GenerateRequest req;
    std::string message;
  };
  std::vector<Row> rows;
  rows.push_back({Greedy("no marker", {a}), "text has 0 \"<image>\" markers and images has 1 images"});
  rows.push_back({Greedy("<image><image>", {a}), "text has 2 \"<image>\" markers and images has 1 images"});
  rows.push_back({Greedy("<image>", {"not an image"}), "images[0]: "});
  rows.push_back({Greedy("<image>", {""}), "images[0] is empty"});
  rows.push_back({Greedy("<image>", {a.substr(0, a.size() / 2)}), "images[0]: "});
  rows.push_back({Greedy("<image><image><image><image>", {a, a, a, a}), "images has 4 images; the limit is 3 a request"});
  rows.push_back({Greedy("<image>", {ReadFile(kDir + "images/bicubic-112x90.png")}), "images[0]: "});
  {
    v1::GenerateRequest r = Greedy("", {a});
    r.clear_text();
    r.mutable_token_ids()->add_ids(5);
    rows.push_back({r, "images: a token_ids prompt takes no images"});
  }
  for (const Row& row : rows) {
    const Result r = Call(*h.client, row.req);
    ASSERT_FALSE(r.final.ok()) << row.message;
    EXPECT_EQ(r.final.status().code(), absl::StatusCode::kInvalidArgument) << r.final.status();
    EXPECT_THAT(std::string(r.final.status().message()), HasSubstr(row.message));
  }
  v1::CreateSessionRequest c;
  c.set_text("User: <image>");
  c.add_images()->set_data(a);
  absl::StatusOr<v1::Session> s = h.client->CreateSession(c);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("needs text after its last image"));
  EXPECT_EQ(h.Images("encoded"), 0) << "nothing reached the encoder";

  VisionHarness text_only(/*vision=*/false);
  const Result r = Call(*text_only.client, Greedy("<image>", {a}));
  EXPECT_EQ(r.final.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.final.status().message()), HasSubstr("images: this server's model takes no images"));
}

// A client whose deadline (1 ms, for 4,000 tokens: it cannot finish in time) passes while its
// image is encoded or its tokens run: its sequence ends, nothing leaks, and a later request on the
// same image is served.
TEST(VisionServerTest, ARequestThatEndsBeforeItsImageIsEncodedLeavesNothingBehind) {
  VisionHarness h;
  const std::string a = ImageA();
  client::CallOptions o;
  o.timeout = std::chrono::milliseconds(1);
  const absl::StatusOr<v1::Final> f = h.client->Generate(
      Greedy("User: <image>\nHi\n\nAssistant:", {a}, /*n=*/4000), [](const v1::Chunk&) { return true; }, o);
  EXPECT_FALSE(f.ok());
  const Result r = Call(*h.client, Greedy("User: <image>\nHi\n\nAssistant:", {a}));
  ASSERT_TRUE(r.final.ok()) << r.final.status();
  EXPECT_EQ(r.ids, DirectGreedy({{"User: "}, {"", &a}, {"\nHi\n\nAssistant:"}}, *h.tokenizer, 6));
}

// The worker drops an image nobody waits for any more (the scheduler sets the flag when the last
// request waiting for it leaves) and encodes the next one.
TEST(ImageWorkerTest, AnImageNobodyWaitsForIsNotEncoded) {
  ImageWorker worker(LoadEncoder(), 1);
  const std::string bytes = ImageA();
  VisionLimits v;
  v.tokens = kImageTokens;
  absl::StatusOr<PromptImage> im = ReadPromptImage(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), "image", v);
  ASSERT_TRUE(im.ok()) << im.status();
  std::atomic<int> dropped_called{0};
  auto cancelled = std::make_shared<std::atomic<bool>>(true);
  worker.Encode(
      im->pixels, [&](absl::StatusOr<std::vector<float>>, double) { ++dropped_called; }, cancelled);
  std::promise<size_t> rows;
  worker.Encode(im->pixels,
                [&](absl::StatusOr<std::vector<float>> r, double) { rows.set_value(r.ok() ? r->size() : 0); });
  EXPECT_EQ(rows.get_future().get(), static_cast<size_t>(kImageTokens) * worker.width());
  EXPECT_EQ(dropped_called.load(), 0);
  EXPECT_EQ(worker.skipped(), 1);
}

TEST(VisionKeyTest, DigestsBecomeNegativeKeysThatTellImagesApart) {
  ImageDigest d1{}, d2{};
  for (int i = 0; i < 32; ++i) {
    d1[i] = static_cast<uint8_t>(i * 7 + 1);
    d2[i] = d1[i];
  }
  d2[31] ^= 1;  // The last word differs.
  for (int tokens : {1, 3, 8, 16, 1024}) {
    const std::vector<int32_t> k1 = ImageKey(d1, tokens), k2 = ImageKey(d2, tokens);
    ASSERT_EQ(k1.size(), static_cast<size_t>(tokens));
    for (int32_t v : k1) EXPECT_LT(v, 0) << "never a token id";
    EXPECT_NE(k1, k2) << tokens << " tokens: every digest word reaches the key";
    EXPECT_EQ(k1, ImageKey(d1, tokens));
  }
}

TEST(VisionPromptTest, MarkersSplitTheTextAndChatPlacesImagesFirst) {
  auto tok = *Tokenizer::Load(kDir + "byte-vocab.txt");
  VisionLimits v;
  v.tokens = kImageTokens;
  const std::string a = ImageA();
  RequestLimits limits;
  limits.vocab = 257;
  std::vector<std::string_view> files = {a, a};
  auto images = ReadImages(files, "images", v);
  ASSERT_TRUE(images.ok()) << images.status();
  SequenceRequest out;
  ASSERT_TRUE(EncodePromptWithImages("ab<image>c<image>", "text", *images, "images", *tok, limits, v, &out).ok());
  std::vector<int32_t> want = tok->Encode("ab");
  want.insert(want.end(), kImageTokens, kImagePlaceholder);
  for (int32_t id : tok->Encode("c")) want.push_back(id);
  want.insert(want.end(), kImageTokens, kImagePlaceholder);
  EXPECT_EQ(out.prompt, want);
  ASSERT_EQ(out.images.size(), 2u);
  EXPECT_EQ(out.images[0].offset, 2);
  EXPECT_EQ(out.images[1].offset, 2 + kImageTokens + 1);
  EXPECT_EQ(out.images[0].digest, out.images[1].digest);

  limits.max_prompt_tokens = 9;
  EXPECT_THAT(std::string(
                  EncodePromptWithImages("ab<image>c<image>", "text", *images, "images", *tok, limits, v, &out).message()),
              HasSubstr("max_prompt_tokens is 9"));

  SequenceRequest chat;
  limits.max_prompt_tokens = 1000;
  std::vector<ChatMessage> messages = {{"user", "Q", 1}};
  std::vector<PromptImage> one = {(*images)[0]};
  ASSERT_TRUE(ApplyChat(messages, "messages", ChatTemplate::World(), *tok, limits, &chat, one, kImageTokens).ok());
  want = tok->Encode("User: ");
  want.insert(want.end(), kImageTokens, kImagePlaceholder);
  for (int32_t id : tok->Encode("\nQ\n\n")) want.push_back(id);
  for (int32_t id : tok->Encode("Assistant:")) want.push_back(id);
  EXPECT_EQ(chat.prompt, want);
  EXPECT_EQ(chat.images.at(0).offset, static_cast<int>(tok->Encode("User: ").size()));
}

}  // namespace
}  // namespace rwkv::server
