// Loading checkpoints: formats, name maps, and every way a file can be bad.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <initializer_list>
#include <memory>
#include <random>
#include <set>

#include "engine/backend.h"
#include "engine/mapped_file.h"
#include "engine/model.h"
#include "engine/tensor_file.h"
#include "engine/zip_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"

namespace rwkv {
namespace {

using ::rwkv::testing::Fixture;
using ::rwkv::testing::ReadFile;
using ::rwkv::testing::TempPath;
using ::rwkv::testing::WriteFile;
using ::testing::HasSubstr;

std::vector<float> AsFloats(const TensorInfo& t) {
  std::vector<float> v(t.numel());
  CopyToFloat(t, v.data());
  return v;
}

// Every tensor of `a` and `b` has the same name, shape and float values.
void ExpectSameTensors(const std::string& a_path, const std::string& b_path) {
  auto a = TensorFile::Open(a_path);
  auto b = TensorFile::Open(b_path);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ((*a)->tensors().size(), (*b)->tensors().size());
  for (const TensorInfo& t : (*a)->tensors()) {
    const TensorInfo* u = (*b)->Find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(t.shape, u->shape) << t.name;
    EXPECT_EQ(AsFloats(t), AsFloats(*u)) << t.name;
  }
}

TEST(LoaderTest, PthAndSafetensorsHoldTheSameTensors) {
  EXPECT_EQ((*TensorFile::Open(Fixture("tiny-rwkv7-f32.pth")))->format(), "pth");
  EXPECT_EQ((*TensorFile::Open(Fixture("tiny-rwkv7-f32.safetensors")))->format(), "safetensors");
  ExpectSameTensors(Fixture("tiny-rwkv7-f32.pth"), Fixture("tiny-rwkv7-f32.safetensors"));
  ExpectSameTensors(Fixture("tiny-rwkv7-bf16.pth"), Fixture("tiny-rwkv7-bf16.safetensors"));
}

TEST(LoaderTest, MixedDtypesInOneFile) {
  auto f = TensorFile::Open(Fixture("tiny-rwkv7-mixed.pth"));
  ASSERT_TRUE(f.ok()) << f.status();
  std::set<DType> seen;
  for (const TensorInfo& t : (*f)->tensors()) seen.insert(t.dtype);
  EXPECT_EQ(seen, (std::set<DType>{DType::kF32, DType::kF16, DType::kBF16}));
  auto m = Model::Load(Fixture("tiny-rwkv7-mixed.pth"));
  EXPECT_TRUE(m.ok()) << m.status();
}

TEST(LoaderTest, DimensionsComeFromShapes) {
  auto m = Model::Load(Fixture("tiny-rwkv7-f32.pth"));
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelConfig& c = (*m)->config();
  EXPECT_EQ(c.arch, Architecture::kRwkv7);
  EXPECT_EQ(c.n_layer, 3);
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.head_size, 16);
  EXPECT_EQ(c.ffn_dim, 192);
  EXPECT_EQ(c.vocab, 256);
  EXPECT_EQ(c.lora_decay, 8);
  EXPECT_EQ(c.lora_iclr, 6);
  EXPECT_EQ(c.lora_value, 4);
  EXPECT_EQ(c.lora_gate, 10);
  EXPECT_EQ(c.StateFloats(), 3 * (2 * 64 + 4 * 16 * 16));
}

// The fla-hub file holds the same weights under other names (LoRA transposed): identical logits.
TEST(LoaderTest, FlaHubNamesGiveTheSameModel) {
  auto official = Model::Load(Fixture("tiny-rwkv7-f32.safetensors"));
  auto fla = Model::Load(Fixture("tiny-rwkv7-fla.safetensors"));
  ASSERT_TRUE(official.ok()) << official.status();
  ASSERT_TRUE(fla.ok()) << fla.status();
  const std::vector<int32_t> tokens = testing::ManifestTokens();
  std::vector<std::vector<float>> out;
  for (auto* m : {&official, &fla}) {
    auto backend = CreateBackend(std::shared_ptr<const Model>(std::move(**m)), BackendOptions{});
    ASSERT_TRUE(backend.ok());
    int slot = *(*backend)->pool().Acquire();
    Logits logits;
    BatchEntry e{slot, tokens, true};
    ASSERT_TRUE((*backend)->Forward({&e, 1}, &logits).ok());
    out.emplace_back(logits.Row(0, 0).begin(), logits.Row(0, 0).end());
    out.back().insert(out.back().end(), logits.Last(0).begin(), logits.Last(0).end());
  }
  EXPECT_EQ(out[0], out[1]);
}

struct BadFile {
  std::string file;
  std::vector<std::string> expect;  // Substrings of the error message.
};

class BadFileTest : public ::testing::TestWithParam<BadFile> {};

TEST_P(BadFileTest, IsRefusedWithAClearMessage) {
  const BadFile& b = GetParam();
  const std::string path = Fixture("bad/" + b.file);
  auto m = Model::Load(path);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << m.status();
  EXPECT_THAT(std::string(m.status().message()), HasSubstr(path));
  for (const std::string& s : b.expect) EXPECT_THAT(std::string(m.status().message()), HasSubstr(s));
}

INSTANTIATE_TEST_SUITE_P(
    Files, BadFileTest,
    ::testing::Values(
        BadFile{"not_a_zip.pth", {"not a zip archive"}},
        BadFile{"evil_global.pth", {"unknown pickle global os.system"}},
        BadFile{"bad_opcode.pth", {"unsupported pickle opcode 0xfe"}},
        BadFile{"inst_opcode.pth", {"unsupported pickle opcode 0x69"}},
        BadFile{"missing_tensor.safetensors", {"missing tensor blocks.1.att.key.weight", "expected shape [32, 32]"}},
        BadFile{"wrong_shape.safetensors",
                {"tensor blocks.1.ffn.value.weight has shape [32, 48]", "expected [32, 64]"}},
        BadFile{"wrong_dtype.pth", {"tensor blocks.0.att.key.weight has dtype i64", "expected f32, f16 or bf16"}},
        BadFile{"unknown_arch.safetensors", {"unknown architecture"}}),
    [](const ::testing::TestParamInfo<BadFile>& info) {
      std::string n = info.param.file;
      for (char& c : n)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

TEST(LoaderTest, MissingAndEmptyFiles) {
  auto m = Model::Load(Fixture("no_such_file.pth"));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("no_such_file.pth"));
  const std::string empty = TempPath("empty.safetensors");
  WriteFile(empty, "");
  m = Model::Load(empty);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("empty"));
  unlink(empty.c_str());
}

// Every prefix of a good file is refused cleanly: never a crash, never a partly loaded model.
TEST(LoaderTest, TruncatedFilesAreRefused) {
  for (const char* name : {"tiny-rwkv7-f32.pth", "tiny-rwkv7-bf16.safetensors", "tiny-rwkv7-mixed.pth"}) {
    const std::string full = ReadFile(Fixture(name));
    const std::string ext = std::string(name).substr(std::string(name).rfind('.'));
    const std::string path = TempPath(std::string("truncated") + ext);
    std::vector<size_t> cuts = {1,
                                4,
                                7,
                                8,
                                9,
                                30,
                                64,
                                100,
                                1000,
                                full.size() / 2,
                                full.size() - 100,
                                full.size() - 23,
                                full.size() - 22,
                                full.size() - 1};
    for (size_t i = 1; i < 40; ++i) cuts.push_back(full.size() * i / 40);
    for (size_t cut : cuts) {
      WriteFile(path, std::string_view(full).substr(0, cut));
      auto m = Model::Load(path);
      ASSERT_FALSE(m.ok()) << name << " cut at " << cut;
      EXPECT_THAT(std::string(m.status().message()), HasSubstr(path)) << name << " cut at " << cut;
    }
    unlink(path.c_str());
  }
}

// Files of 42..55 bytes hold an end-of-central-directory record with a ZIP64 locator in front of
// it but no room for the ZIP64 record the locator names. The locator's offset must be checked
// against the file, not against a size that underflows (an out-of-bounds read before).
TEST(LoaderTest, TinyZipWithZip64LocatorIsRefused) {
  for (size_t n = 42; n <= 55; ++n) {
    std::string bytes(n, '\0');
    const uint32_t eocd_sig = 0x06054b50, locator_sig = 0x07064b50;
    const uint64_t far = uint64_t{1} << 40;  // Far outside any mapping: a read there faults.
    std::memcpy(&bytes[n - 22], &eocd_sig, 4);
    std::memcpy(&bytes[n - 42], &locator_sig, 4);
    std::memcpy(&bytes[n - 42 + 8], &far, 8);
    const std::string path = TempPath("tiny_zip64.zip");
    WriteFile(path, bytes);
    auto mf = MappedFile::Open(path);
    ASSERT_TRUE(mf.ok()) << mf.status();
    auto entries = ReadZipDirectory(**mf);
    EXPECT_FALSE(entries.ok()) << n << " bytes";
    EXPECT_THAT(std::string(entries.status().message()), HasSubstr("ZIP64 locator")) << n << " bytes";
    unlink(path.c_str());
  }
}

// Random byte flips inside data.pkl: each mutated file loads or is refused, and never crashes.
TEST(LoaderTest, CorruptPicklesNeverCrash) {
  const std::string good = Fixture("tiny-rwkv7-f32.pth");
  auto mf = MappedFile::Open(good);
  ASSERT_TRUE(mf.ok());
  auto entries = ReadZipDirectory(**mf);
  ASSERT_TRUE(entries.ok()) << entries.status();
  uint64_t begin = 0, size = 0;
  for (const ZipEntry& e : *entries) {
    if (e.name.ends_with("data.pkl")) begin = e.data_offset, size = e.size;
  }
  ASSERT_GT(size, 100u);
  const std::string full = ReadFile(good);
  const std::string path = TempPath("mutated.pth");
  std::mt19937 rng(1234);
  int refused = 0;
  for (int i = 0; i < 300; ++i) {
    std::string bytes = full;
    for (int k = 0; k < 1 + i % 3; ++k) bytes[begin + rng() % size] = static_cast<char>(rng());
    WriteFile(path, bytes);
    auto m = Model::Load(path);
    if (!m.ok()) {
      ++refused;
      EXPECT_THAT(std::string(m.status().message()), HasSubstr(path));
    }
  }
  EXPECT_GT(refused, 100);  // Most random damage is detected.
  unlink(path.c_str());
}

// Random byte flips inside a safetensors JSON header: refused or loaded, never a crash.
TEST(LoaderTest, CorruptSafetensorsHeadersNeverCrash) {
  const std::string full = ReadFile(Fixture("tiny-rwkv7-f32.safetensors"));
  uint64_t header_len;
  std::memcpy(&header_len, full.data(), 8);
  const std::string path = TempPath("mutated.safetensors");
  std::mt19937 rng(99);
  int refused = 0;
  for (int i = 0; i < 300; ++i) {
    std::string bytes = full;
    for (int k = 0; k < 1 + i % 3; ++k) bytes[8 + rng() % header_len] = static_cast<char>(rng() % 128);
    WriteFile(path, bytes);
    auto m = Model::Load(path);
    if (!m.ok()) {
      ++refused;
      EXPECT_THAT(std::string(m.status().message()), HasSubstr(path));
    }
  }
  EXPECT_GT(refused, 100);
  unlink(path.c_str());
}

TEST(LoaderTest, StridedViewsAreCopiedInLogicalOrder) {
  const float storage[] = {0, 1, 2, 3, 4, 5};  // A [2, 3] matrix; view its transpose [3, 2].
  TensorInfo t;
  t.dtype = DType::kF32;
  t.shape = {3, 2};
  t.strides = {1, 3};
  t.data = reinterpret_cast<const uint8_t*>(storage);
  EXPECT_FALSE(t.contiguous());
  std::vector<float> out(6);
  CopyToFloat(t, out.data());
  EXPECT_EQ(out, (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

// --- ZIP64 -----------------------------------------------------------------------------------

// Appends little-endian fields, each {value, width in bytes}.
void Put(std::string* s, std::initializer_list<std::pair<uint64_t, int>> fields) {
  for (const auto& [v, bytes] : fields) {
    for (int i = 0; i < bytes; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
  }
}

// Rewrites the records of a torch.save archive into a new stored zip whose central directory uses
// ZIP64 fields. With `pad` > 0 a sparse first entry of `pad` zero bytes pushes every real record
// past 4 GiB, as in a 7B checkpoint.
void WriteZip64(const std::string& src, const std::string& dst, uint64_t pad) {
  auto mf = MappedFile::Open(src);
  ASSERT_TRUE(mf.ok());
  auto entries = ReadZipDirectory(**mf);
  ASSERT_TRUE(entries.ok());
  struct Rec {
    std::string name;
    const uint8_t* data;
    uint64_t size, offset;
  };
  std::vector<Rec> recs;
  if (pad) recs.push_back({"archive/pad", nullptr, pad, 0});
  for (const ZipEntry& e : *entries) recs.push_back({e.name, (*mf)->data() + e.data_offset, e.size, 0});
  int fd = ::open(dst.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  uint64_t pos = 0;
  auto write = [&](const std::string& s) {
    ASSERT_EQ(::pwrite(fd, s.data(), s.size(), static_cast<off_t>(pos)), static_cast<ssize_t>(s.size()));
    pos += s.size();
  };
  const uint64_t kSat = 0xffffffffu;
  for (Rec& r : recs) {
    r.offset = pos;
    std::string h;
    Put(&h,
        {{0x04034b50, 4}, {45, 2}, {0, 2}, {0, 2}, {0, 4}, {0, 4}, {kSat, 4}, {kSat, 4}, {r.name.size(), 2}, {20, 2}});
    h += r.name;
    Put(&h, {{1, 2}, {16, 2}, {r.size, 8}, {r.size, 8}});
    write(h);
    if (r.data)
      write(std::string(reinterpret_cast<const char*>(r.data), r.size));
    else
      pos += r.size;  // A hole: the file stays sparse.
  }
  const uint64_t cd_offset = pos;
  for (const Rec& r : recs) {
    std::string c;
    Put(&c, {{0x02014b50, 4},
             {45, 2},
             {45, 2},
             {0, 2},
             {0, 2},
             {0, 4},
             {0, 4},
             {kSat, 4},
             {kSat, 4},
             {r.name.size(), 2},
             {28, 2},
             {0, 2},
             {0, 2},
             {0, 2},
             {0, 4},
             {kSat, 4}});
    c += r.name;
    Put(&c, {{1, 2}, {24, 2}, {r.size, 8}, {r.size, 8}, {r.offset, 8}});
    write(c);
  }
  const uint64_t cd_size = pos - cd_offset, z64 = pos;
  std::string t;
  Put(&t, {{0x06064b50, 4},  {44, 8},          {45, 2},         {45, 2},        {0, 4},          {0, 4},
           {recs.size(), 8}, {recs.size(), 8}, {cd_size, 8},    {cd_offset, 8}, {0x07064b50, 4}, {0, 4},
           {z64, 8},         {1, 4},           {0x06054b50, 4}, {0, 2},         {0, 2},          {0xffff, 2},
           {0xffff, 2},      {kSat, 4},        {kSat, 4},       {0, 2}});
  write(t);
  ::close(fd);
}

std::vector<float> LastLogits(std::unique_ptr<Model> m) {
  auto backend = CreateBackend(std::shared_ptr<const Model>(std::move(m)), BackendOptions{});
  int slot = *(*backend)->pool().Acquire();
  const std::vector<int32_t> tokens = testing::ManifestTokens();
  Logits logits;
  BatchEntry e{slot, tokens, false};
  EXPECT_TRUE((*backend)->Forward({&e, 1}, &logits).ok());
  return {logits.Last(0).begin(), logits.Last(0).end()};
}

TEST(LoaderTest, Zip64Records) {
  const std::string src = Fixture("tiny-rwkv7-f32.pth");
  const std::string dst = TempPath("zip64.pth");
  WriteZip64(src, dst, 0);
  auto a = Model::Load(src);
  auto b = Model::Load(dst);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(LastLogits(std::move(*a)), LastLogits(std::move(*b)));
  unlink(dst.c_str());
}

TEST(LoaderTest, Zip64RecordsPastFourGiB) {
  const std::string src = Fixture("tiny-rwkv7-bf16.pth");
  const std::string dst = TempPath("zip64_big.pth");
  WriteZip64(src, dst, (4ull << 30) + 12345);  // Sparse: takes no disk space.
  auto mf = MappedFile::Open(dst);
  ASSERT_TRUE(mf.ok()) << mf.status();
  ASSERT_GT((*mf)->size(), 4ull << 30);
  mf->reset();
  auto a = Model::Load(src);
  auto b = Model::Load(dst);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(LastLogits(std::move(*a)), LastLogits(std::move(*b)));
  unlink(dst.c_str());
}

// --- Architecture detection ------------------------------------------------------------------

struct Detect {
  std::string label;
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensors;
  std::string expect;  // Architecture name, or a substring of the error.
};

std::vector<std::pair<std::string, std::vector<int64_t>>> Common(int C, int F) {
  return {{"emb.weight", {10, C}},
          {"blocks.0.att.key.weight", {C, C}},
          {"blocks.0.ffn.key.weight", {F, C}},
          {"blocks.1.ln1.weight", {C}}};
}

std::vector<Detect> DetectCases() {
  std::vector<Detect> cases;
  auto with = [](std::vector<std::pair<std::string, std::vector<int64_t>>> base,
                 std::vector<std::pair<std::string, std::vector<int64_t>>> extra) {
    base.insert(base.end(), extra.begin(), extra.end());
    return base;
  };
  cases.push_back({"v4", with(Common(8, 32), {{"blocks.0.att.time_first", {8}}}), "rwkv4"});
  cases.push_back(
      {"v5_0", with(Common(8, 32), {{"blocks.0.att.ln_x.weight", {8}}, {"blocks.0.att.time_decay", {2}}}), "rwkv5.0"});
  cases.push_back({"v5_1",
                   with(Common(8, 32), {{"blocks.0.att.ln_x.weight", {8}},
                                        {"blocks.0.att.gate.weight", {8, 8}},
                                        {"blocks.0.att.time_decay", {2}}}),
                   "rwkv5.1"});
  cases.push_back({"v5_2",
                   with(Common(8, 32), {{"blocks.0.att.ln_x.weight", {8}},
                                        {"blocks.0.att.gate.weight", {8, 8}},
                                        {"blocks.0.att.time_decay", {2, 4}}}),
                   "rwkv5.2"});
  cases.push_back({"v6",
                   with(Common(8, 28), {{"blocks.0.att.time_maa_x", {1, 1, 8}},
                                        {"blocks.0.att.time_faaaa", {2, 4}},
                                        {"blocks.0.att.time_maa_w1", {8, 15}},
                                        {"blocks.0.att.time_decay_w1", {8, 5}}}),
                   "rwkv6"});
  cases.push_back({"v7",
                   with(Common(8, 32), {{"blocks.0.att.r_k", {2, 4}},
                                        {"blocks.0.att.w1", {8, 3}},
                                        {"blocks.0.att.a1", {8, 3}},
                                        {"blocks.0.att.g1", {8, 5}},
                                        {"blocks.1.att.v1", {8, 2}}}),
                   "rwkv7"});
  cases.push_back({"chatrwkv_converted", with(Common(8, 32), {{"_strategy", {1}}}), "pre-converted"});
  cases.push_back(
      {"deep_embed", with(Common(8, 32), {{"blocks.0.ffn.s_emb.weight", {10, 8}}}), "experimental variant"});
  cases.push_back({"heads_do_not_fit",
                   with(Common(8, 32), {{"blocks.0.att.r_k", {3, 4}},
                                        {"blocks.0.att.w1", {8, 3}},
                                        {"blocks.0.att.a1", {8, 3}},
                                        {"blocks.0.att.g1", {8, 5}},
                                        {"blocks.1.att.v1", {8, 2}}}),
                   "do not make the attention width 8"});
  cases.push_back({"gap_in_layers",
                   {{"emb.weight", {10, 8}},
                    {"blocks.0.att.key.weight", {8, 8}},
                    {"blocks.0.ffn.key.weight", {32, 8}},
                    {"blocks.0.att.time_first", {8}},
                    {"blocks.2.ln1.weight", {8}}},
                   "not numbered"});
  return cases;
}

class DetectTest : public ::testing::TestWithParam<Detect> {};

TEST_P(DetectTest, FromNamesAndShapes) {
  const Detect& d = GetParam();
  const std::string path = TempPath("detect_" + d.label + ".safetensors");
  testing::WriteZeroSafetensors(path, d.tensors);
  auto f = TensorFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  auto c = DetectModelConfig(**f);
  if (d.expect.starts_with("rwkv")) {
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(ArchitectureName(c->arch), d.expect);
    EXPECT_EQ(c->n_layer, 2);
    if (c->arch == Architecture::kRwkv6) {
      EXPECT_EQ(c->lora_mix, 3);
      EXPECT_EQ(c->lora_decay, 5);
      EXPECT_EQ(c->head_size, 4);
    }
  } else {
    ASSERT_FALSE(c.ok());
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(d.expect));
  }
  unlink(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Cases, DetectTest, ::testing::ValuesIn(DetectCases()),
                         [](const ::testing::TestParamInfo<Detect>& info) { return info.param.label; });

TEST(LoaderTest, OtherGenerationsNameTheirMissingTensors) {
  const std::string path = TempPath("v4.safetensors");
  testing::WriteZeroSafetensors(path, {{"emb.weight", {10, 8}},
                                       {"blocks.0.att.key.weight", {8, 8}},
                                       {"blocks.0.ffn.key.weight", {32, 8}},
                                       {"blocks.0.att.time_first", {8}},
                                       {"blocks.0.att.time_decay", {8}}});
  auto m = Model::Load(path);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("missing tensor blocks.0.ln0.weight"));
  unlink(path.c_str());
}

TEST(LoaderTest, UnexpectedTensorsAreRefused) {
  auto good = TensorFile::Open(Fixture("tiny-rwkv7-f32.safetensors"));
  ASSERT_TRUE(good.ok());
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensors;
  for (const TensorInfo& t : (*good)->tensors()) tensors.emplace_back(t.name, t.shape);
  tensors.emplace_back("blocks.0.att.time_state", std::vector<int64_t>{4, 16, 16});
  const std::string path = TempPath("extra.safetensors");
  testing::WriteZeroSafetensors(path, tensors);
  auto m = Model::Load(path);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("unexpected tensor blocks.0.att.time_state"));
  unlink(path.c_str());
}

}  // namespace
}  // namespace rwkv

namespace rwkv {
namespace {

// Writes `tensors` of `file` (f32) as safetensors shards of about half the tensors each, plus a
// Hugging Face index; returns the index path.
std::string WriteShards(const TensorFile& file, const std::string& dir, bool drop_one = false) {
  mkdir(dir.c_str(), 0755);
  const auto& all = file.tensors();
  nlohmann::json weight_map = nlohmann::json::object();
  for (int shard = 0; shard < 2; ++shard) {
    const std::string name = "model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors";
    nlohmann::json header = nlohmann::json::object();
    std::string data;
    for (size_t i = shard; i < all.size(); i += 2) {
      const TensorInfo& t = all[i];
      weight_map[t.name] = name;
      if (drop_one && i == 0) continue;  // Listed in the index, absent from the shard.
      std::vector<float> v(t.numel());
      CopyToFloat(t, v.data());
      header[t.name] = {
          {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + v.size() * 4}}};
      data.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
    }
    const std::string text = header.dump();
    const uint64_t len = text.size();
    WriteFile(dir + "/" + name, std::string(reinterpret_cast<const char*>(&len), 8) + text + data);
  }
  const std::string index = dir + "/model.safetensors.index.json";
  WriteFile(index, nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump());
  return index;
}

TEST(ShardedTest, IndexOrDirectoryLoadsTheSameModel) {
  auto single = TensorFile::Open(Fixture("tiny-rwkv7-fla.safetensors"));
  ASSERT_TRUE(single.ok());
  const std::string dir = TempPath("sharded");
  const std::string index = WriteShards(**single, dir);
  auto a = Model::Load(Fixture("tiny-rwkv7-fla.safetensors"));
  auto b = Model::Load(index);
  auto c = Model::Load(dir);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(c.ok()) << c.status();
  const std::vector<float> want = LastLogits(std::move(*a));
  EXPECT_EQ(LastLogits(std::move(*b)), want);
  EXPECT_EQ(LastLogits(std::move(*c)), want);
  std::system(("rm -rf " + dir).c_str());
}

TEST(ShardedTest, InconsistentShardsAreRefused) {
  auto single = TensorFile::Open(Fixture("tiny-rwkv7-f32.safetensors"));
  ASSERT_TRUE(single.ok());
  const std::string dir = TempPath("sharded_bad");
  const std::string index = WriteShards(**single, dir, /*drop_one=*/true);
  auto m = Model::Load(index);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("is missing from shard model-00001-of-00002.safetensors"));
  unlink((dir + "/model-00002-of-00002.safetensors").c_str());
  m = Model::Load(index);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("model-00002-of-00002.safetensors"));
  WriteFile(index, "[1, 2]");
  EXPECT_THAT(std::string(Model::Load(index).status().message()), HasSubstr("weight_map"));
  std::system(("rm -rf " + dir).c_str());
  mkdir(dir.c_str(), 0755);
  EXPECT_EQ(Model::Load(dir).status().code(), absl::StatusCode::kNotFound);
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace rwkv
