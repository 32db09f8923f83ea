// Helpers shared by the engine tests: fixture paths and the float64 reference logits.
#ifndef RWKV_TESTS_ENGINE_TEST_UTIL_H_
#define RWKV_TESTS_ENGINE_TEST_UTIL_H_

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/sampler.h"
#include "nlohmann/json.hpp"

namespace rwkv::testing {

// The source tree: RWKV_SOURCE_DIR from the environment when set (binaries carried to another
// machine), else the tree the test was built from.
inline std::string SourcePath(const std::string& rel) {
  const char* env = std::getenv("RWKV_SOURCE_DIR");
  return std::string(env != nullptr && *env != '\0' ? env : RWKV_SOURCE_DIR) + "/" + rel;
}
inline std::string Fixture(const std::string& name) { return SourcePath("tests/fixtures/" + name); }
inline std::string VocabPath() { return SourcePath("engine/vocab/rwkv_vocab_v20230424.txt"); }

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline nlohmann::json Manifest() { return nlohmann::json::parse(ReadFile(Fixture("tiny-rwkv7.json"))); }

inline std::vector<int32_t> ManifestTokens() { return Manifest()["tokens"].get<std::vector<int32_t>>(); }

// Reference logits [positions][vocab], float64, from tests/reference/rwkv7_ref.py.
inline std::vector<std::vector<double>> ReferenceLogits(const std::string& name, int vocab) {
  std::string raw = ReadFile(Fixture(name));
  const size_t n = raw.size() / sizeof(double);
  std::vector<std::vector<double>> rows(n / vocab, std::vector<double>(vocab));
  const double* d = reinterpret_cast<const double*>(raw.data());
  for (size_t r = 0; r < rows.size(); ++r) {
    for (int v = 0; v < vocab; ++v) rows[r][v] = d[r * vocab + v];
  }
  return rows;
}

// ||got - want|| / ||want||, in double.
inline double RelL2(std::span<const float> got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

}  // namespace rwkv::testing

#endif  // RWKV_TESTS_ENGINE_TEST_UTIL_H_

namespace rwkv::testing {

struct F32Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;  // Row-major; empty = zeros.
};

// Writes an f32 safetensors file.
inline void WriteSafetensors(const std::string& path, const std::vector<F32Tensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const F32Tensor& t : tensors) {
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    std::vector<float> v = t.values;
    v.resize(n, 0.0f);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + 4 * n}}};
    data.append(reinterpret_cast<const char*>(v.data()), 4 * n);
  }
  std::string text = header.dump();
  const uint64_t len = text.size();
  std::string out(reinterpret_cast<const char*>(&len), 8);
  out += text;
  out += data;
  WriteFile(path, out);
}

// Writes an all-zero f32 safetensors file with the given tensor names and shapes.
inline void WriteZeroSafetensors(const std::string& path,
                                 const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) {
  std::vector<F32Tensor> t;
  for (const auto& [name, shape] : tensors) t.push_back({name, shape, {}});
  WriteSafetensors(path, t);
}

inline std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/rwkv_test_" + std::to_string(::getpid()) + "_" + name;
}

// Every combination of the sampling values given, each with the penalties off and on (presence
// 0.4, frequency 0.3, decay 0.9) and without and with `lists`' logit_bias and banned_tokens; seeds
// first_seed, first_seed + 1, ... in that order.
inline std::vector<SamplingParams> SamplingCombinations(const std::vector<float>& temperatures,
                                                        const std::vector<float>& top_ps, const std::vector<int>& top_ks,
                                                        const std::vector<float>& min_ps, const SamplingParams& lists,
                                                        uint64_t first_seed) {
  std::vector<SamplingParams> out;
  for (float temperature : temperatures) {
    for (float top_p : top_ps) {
      for (int top_k : top_ks) {
        for (float min_p : min_ps) {
          for (bool penalties : {false, true}) {
            for (bool with_lists : {false, true}) {
              SamplingParams p;
              p.temperature = temperature;
              p.top_p = top_p;
              p.top_k = top_k;
              p.min_p = min_p;
              if (penalties) p.presence_penalty = 0.4f, p.frequency_penalty = 0.3f, p.penalty_decay = 0.9f;
              if (with_lists) p.logit_bias = lists.logit_bias, p.banned_tokens = lists.banned_tokens;
              p.seed = first_seed + out.size();
              out.push_back(std::move(p));
            }
          }
        }
      }
    }
  }
  return out;
}

}  // namespace rwkv::testing
