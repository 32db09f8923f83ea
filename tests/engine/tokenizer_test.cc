#include "engine/tokenizer.h"

#include <functional>
#include <random>

#include "gtest/gtest.h"
#include "tests/engine/test_util.h"

namespace rwkv {
namespace {

class WorldTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = Tokenizer::Load(testing::VocabPath());
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = t->release();
  }
  static void TearDownTestSuite() { delete tok_; }
  static Tokenizer* tok_;
};
Tokenizer* WorldTokenizerTest::tok_ = nullptr;

// The vectors of spec section 10.2 (official TRIE tokenizer output).
TEST_F(WorldTokenizerTest, SpecVectors) {
  const std::vector<std::pair<std::string, std::vector<int32_t>>> cases = {
      {"Hello world", {33155, 40213}},
      {"\n\n", {261}},
      {"我们发现", {12605, 10402, 10997, 14446}},
      {"User: hi\n\nAssistant: Hi. I am your assistant.",
       {24281, 59, 4571, 261, 5585, 41693, 59, 3880, 47, 308, 4418, 32515, 59179, 47}},
      {"<think>", {61, 35762, 63}},
      {" \t\r\n  x", {264, 19245, 121}},
      {"😀🚀 naïve café", {3319, 153, 129, 3319, 155, 129, 46644, 37946}},
      {"\nIn a shocking finding, scientist discovered a herd of dragons living in a remote, previously "
       "unexplored valley, in Tibet.",
       {11,  1136,  332, 57212, 51746, 45,   60455, 61885, 332,   31076, 4706, 51525, 46456, 4596,
        332, 47064, 45,  62367, 22658, 2315, 8114,  1843,  47698, 45,    4596, 37461, 47}},
  };
  for (const auto& [text, ids] : cases) {
    EXPECT_EQ(tok_->Encode(text), ids) << text;
    auto back = tok_->Decode(ids);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, text);
  }
}

TEST_F(WorldTokenizerTest, VocabularyShape) {
  EXPECT_EQ(tok_->id_limit(), 65530);
  // Ids 1..256 are the single bytes: id = byte + 1. '\x80' as a str literal is a code point (2 bytes).
  EXPECT_EQ(*tok_->TokenBytes(11), "\n");
  EXPECT_EQ(*tok_->TokenBytes(33), " ");
  EXPECT_EQ(*tok_->TokenBytes(129), std::string("\x80", 1));
  EXPECT_EQ(*tok_->TokenBytes(0), "");
  EXPECT_EQ(tok_->TokenBytes(65530), nullptr);
  EXPECT_EQ(tok_->Encode(""), std::vector<int32_t>{});
}

TEST_F(WorldTokenizerTest, RandomBytesRoundTrip) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string s(rng() % 64, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 4 ? 32 + rng() % 96 : rng());
    const std::vector<int32_t> ids = tok_->Encode(s);
    EXPECT_EQ(*tok_->Decode(ids), s);
  }
}

TEST_F(WorldTokenizerTest, DecodeRejectsUnknownIds) {
  const int32_t ids[] = {33, 70000};
  auto r = tok_->Decode(ids);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("token 70000 at position 1"), std::string::npos);
}

// Streaming never emits half a character: feeding a multi-byte text byte-token by byte-token
// yields only whole characters, and the concatenation is the text.
TEST_F(WorldTokenizerTest, IncrementalDecoderHoldsBackPartialCharacters) {
  const std::string text = "😀 naïve 我们";
  IncrementalDecoder dec(tok_);
  std::string out;
  for (unsigned char c : text) {
    const std::string piece = dec.Push(static_cast<int32_t>(c) + 1);
    std::string check;
    EXPECT_EQ(AppendValidUtf8(piece, &check), piece.size());
    EXPECT_EQ(check, piece);  // Valid UTF-8 on its own.
    out += piece;
  }
  out += dec.Flush();
  EXPECT_EQ(out, text);
}

TEST_F(WorldTokenizerTest, IncrementalDecoderReplacesBrokenBytes) {
  IncrementalDecoder dec(tok_);
  EXPECT_EQ(dec.Push(0xf0 + 1), "");  // Lead byte of a 4-byte character: held back.
  EXPECT_EQ(dec.Push('a' + 1),
            "\xef\xbf\xbd"
            "a");                                 // Cannot complete: U+FFFD, then 'a'.
  EXPECT_EQ(dec.Push(0xff + 1), "\xef\xbf\xbd");  // Never valid in UTF-8.
  EXPECT_EQ(dec.Push(0xe6 + 1), "");
  EXPECT_EQ(dec.Flush(), "\xef\xbf\xbd");  // Incomplete at the end.
  EXPECT_EQ(dec.Push(0), "");              // End-of-text has no text.
  EXPECT_EQ(dec.Push(65531), "");          // A head row past the vocabulary: no text either.
}

// An id without bytes neither breaks nor completes a character held back: it has no text.
TEST_F(WorldTokenizerTest, IdsWithoutBytesDecodeToNothing) {
  IncrementalDecoder dec(tok_);
  const std::string euro = "\xe2\x82\xac";
  std::string out;
  for (size_t i = 0; i < euro.size(); ++i) {
    out += dec.Push(static_cast<uint8_t>(euro[i]) + 1);  // Byte tokens are id = byte + 1.
    if (i == 0) out += dec.Push(65535);
  }
  EXPECT_EQ(out + dec.Flush(), euro);
}

TEST(TokenizerParseTest, PythonLiterals) {
  auto t = Tokenizer::FromText(
      [] {
        std::string v;
        for (int b = 0; b < 256; ++b) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%d b'\\x%02x' 1\n", b + 1, b);
          v += buf;
        }
        v += "300 '\\x80' 2\n301 'a b' 3\n302 \"it's\" 4\n303 '\\u3000' 3\n304 '\\\\n' 2\n305 '\\t\\'' 2\n";
        return v;
      }(),
      "test-vocab");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->TokenBytes(300), "\xc2\x80");
  EXPECT_EQ(*(*t)->TokenBytes(301), "a b");
  EXPECT_EQ(*(*t)->TokenBytes(302), "it's");
  EXPECT_EQ(*(*t)->TokenBytes(303), "\xe3\x80\x80");
  EXPECT_EQ(*(*t)->TokenBytes(304), "\\n");
  EXPECT_EQ(*(*t)->TokenBytes(305), "\t'");
  EXPECT_EQ((*t)->Encode("a b"), std::vector<int32_t>{301});
}

TEST(TokenizerParseTest, MalformedLinesNameTheLine) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"1 'a' 2\n", "test:1: token is 1 bytes, the line says 2"},
      {"1 'a' 1\n1 'b' 1\n", "test:2: id 1 appears twice"},
      {"x 'a' 1\n", "test:1: id must be"},
      {"1 'a 1\n", "test:1: malformed token literal"},
      {"1 'a' 1\n", "has no single-byte token"},
  };
  for (const auto& [text, expect] : bad) {
    auto t = Tokenizer::FromText(text, "test");
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_NE(std::string(t.status().message()).find(expect), std::string::npos) << t.status();
  }
  EXPECT_EQ(Tokenizer::Load("/no/such/vocab.txt").status().code(), absl::StatusCode::kNotFound);
}

// The GPT-NeoX BPE against Hugging Face tokenizers on a tokenizer.json with the 20B file's
// pipeline (tests/reference/make_neox_fixture.py): the ids must be identical, the decoded text too.
class NeoxTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = LoadNeoxTokenizer(testing::Fixture("tiny-neox-tokenizer.json"));
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = std::move(*t);
    cases_ = nlohmann::json::parse(testing::ReadFile(testing::Fixture("tiny-neox-cases.json")))["cases"];
  }
  std::unique_ptr<Tokenizer> tok_;
  nlohmann::json cases_;
};

TEST_F(NeoxTokenizerTest, EncodingsEqualHuggingFaceTokenizers) {
  ASSERT_GE(cases_.size(), 20u);
  for (const auto& c : cases_) {
    const std::string text = c["text"];
    EXPECT_EQ(tok_->Encode(text), c["ids"].get<std::vector<int32_t>>()) << "'" << text << "'";
  }
}

TEST_F(NeoxTokenizerTest, DecodingEqualsHuggingFaceWithSpecialTokensSkipped) {
  for (const auto& c : cases_) {
    const std::vector<int32_t> ids = c["ids"];
    absl::StatusOr<std::string> text = tok_->Decode(ids);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, c["decoded"].get<std::string>()) << c["text"];
    // Streaming through the incremental decoder gives the same text.
    IncrementalDecoder d(tok_.get());
    std::string streamed;
    for (int32_t id : ids) streamed += d.Push(id);
    streamed += d.Flush();
    EXPECT_EQ(streamed, *text);
  }
}

TEST_F(NeoxTokenizerTest, SpaceRunsAreAddedTokensAndNewlinesAreBytes) {
  EXPECT_EQ(tok_->kind(), "neox");
  // "a  b": the two-space added token, then "b" without the byte-level space (spec section 11).
  const std::vector<int32_t> ids = tok_->Encode("a  b");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(*tok_->TokenBytes(ids[1]), "  ");
  EXPECT_EQ(*tok_->TokenBytes(ids[2]), "b");
  EXPECT_EQ(*tok_->TokenBytes(Tokenizer::kEndOfText), "");
  EXPECT_EQ(tok_->Encode("<|endoftext|>"), std::vector<int32_t>{0});
  // Invalid UTF-8 is encoded as U+FFFD rather than failing.
  EXPECT_EQ(*tok_->Decode(tok_->Encode("a\xff"
                                       "b")),
            "a\xef\xbf\xbd"
            "b");
}

TEST_F(NeoxTokenizerTest, MergesAsStringsReadTheSameAsPairs) {
  nlohmann::json j = nlohmann::json::parse(testing::ReadFile(testing::Fixture("tiny-neox-tokenizer.json")));
  for (auto& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  const std::string path = testing::TempPath("neox-string-merges.json");
  testing::WriteFile(path, j.dump());
  auto t = LoadNeoxTokenizer(path);
  ASSERT_TRUE(t.ok()) << t.status();
  for (const auto& c : cases_)
    EXPECT_EQ((*t)->Encode(c["text"].get<std::string>()), c["ids"].get<std::vector<int32_t>>());
  std::remove(path.c_str());
}

TEST(NeoxTokenizerErrors, UnsupportedPipelinesAndBrokenFilesAreNamed) {
  const nlohmann::json good = nlohmann::json::parse(testing::ReadFile(testing::Fixture("tiny-neox-tokenizer.json")));
  const std::string path = testing::TempPath("neox-bad.json");
  auto err = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = good;
    edit(j);
    testing::WriteFile(path, j.dump());
    return std::string(LoadNeoxTokenizer(path).status().message());
  };
  EXPECT_NE(err([](auto& j) {
              j["normalizer"] = {{"type", "NFKC"}};
            }).find("is not supported (NFC or none)"),
            std::string::npos);
  EXPECT_NE(err([](auto& j) {
              j["pre_tokenizer"] = {{"type", "Whitespace"}};
            }).find("pre_tokenizer"),
            std::string::npos);
  EXPECT_NE(err([](auto& j) { j["model"]["vocab"].erase("\u0120"); }).find("byte 32 has no token"), std::string::npos);
  EXPECT_NE(err([](auto& j) { j["model"]["merges"][0] = "x"; }).find("merge 0 'x' is not two tokens"),
            std::string::npos);
  EXPECT_NE(err([](auto& j) { j["model"]["type"] = "WordPiece"; }).find("model.type must be BPE"), std::string::npos);
  // Found by fuzz_tokenizer_json: sections of the wrong JSON type threw out of the parser.
  EXPECT_NE(err([](auto& j) { j["pre_tokenizer"] = nullptr; }).find("malformed tokenizer.json"), std::string::npos);
  EXPECT_NE(err([](auto& j) { j["pre_tokenizer"] = {{"type", 5}}; }).find("malformed tokenizer.json"), std::string::npos);
  EXPECT_NE(err([](auto& j) { j["added_tokens"] = 7; }).find("an added token lacks id or content"), std::string::npos);
  EXPECT_NE(err([](auto& j) { j["model"]["type"] = nullptr; }).find(path), std::string::npos);
  testing::WriteFile(path, "{not json");
  EXPECT_NE(std::string(LoadNeoxTokenizer(path).status().message()).find("not valid JSON"), std::string::npos);
  EXPECT_EQ(LoadNeoxTokenizer("/no/such/tokenizer.json").status().code(), absl::StatusCode::kNotFound);
  std::remove(path.c_str());
}

TEST(LoadTokenizerTest, AutoGuessesFromTheVocabularySize) {
  auto neox = LoadTokenizer(testing::Fixture("tiny-neox-tokenizer.json"), "auto", 50277);
  ASSERT_TRUE(neox.ok()) << neox.status();
  EXPECT_EQ((*neox)->kind(), "neox");
  auto world = LoadTokenizer(testing::Fixture("byte-vocab.txt"), "auto", 65536);
  ASSERT_TRUE(world.ok()) << world.status();
  EXPECT_EQ((*world)->kind(), "world");
  EXPECT_EQ((*LoadTokenizer(testing::Fixture("tiny-neox-tokenizer.json"), "neox", 256))->kind(), "neox");
  EXPECT_EQ(LoadTokenizer("x", "sentencepiece", 1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rwkv
