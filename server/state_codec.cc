#include "server/state_codec.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace rwkv::server {
namespace {

constexpr char kMagic[8] = {'R', 'W', 'K', 'V', 'S', 'T', 'A', 'T'};
constexpr size_t kMaxHeaderBytes = 64 * 1024;

void Mix(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
}

}  // namespace

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  Mix(h, bytes.data(), bytes.size());
  return h;
}

std::string ModelFingerprint(const Model& model) {
  const ModelConfig& c = model.config();
  uint64_t h = Fnv1a64(c.Describe());
  const int64_t n = static_cast<int64_t>(c.vocab) * c.n_embd;
  const int64_t stride = std::max<int64_t>(1, n / 65536);
  for (int64_t i = 0; i < n; i += stride) Mix(h, model.emb() + i, sizeof(float));
  Mix(h, model.ln_out_w(), sizeof(float) * c.n_embd);
  return absl::StrFormat("%s-%016x", ArchitectureName(c.arch), h);
}

size_t StateCodec::MaxBytes() const { return sizeof(kMagic) + 4 + kMaxHeaderBytes + config.StateBytes(); }

std::string StateCodec::Encode(std::span<const float> state, std::optional<int32_t> pending,
                               int64_t token_count) const {
  const std::string_view payload(reinterpret_cast<const char*>(state.data()), state.size_bytes());
  nlohmann::json h;
  h["format"] = 1;
  h["model_fingerprint"] = fingerprint;
  h["architecture"] = ArchitectureName(config.arch);
  h["description"] = config.Describe();
  h["n_layer"] = config.n_layer;
  h["n_embd"] = config.n_embd;
  h["n_head"] = config.n_head;
  h["head_size"] = config.head_size;
  h["dtype"] = "float32";
  h["token_count"] = token_count;
  h["pending_token"] = pending ? nlohmann::json(*pending) : nlohmann::json(nullptr);
  h["payload_bytes"] = payload.size();
  h["checksum_fnv1a64"] = absl::StrFormat("%016x", Fnv1a64(payload));
  const std::string header = h.dump();
  std::string out(kMagic, sizeof(kMagic));
  const uint32_t len = static_cast<uint32_t>(header.size());
  out.append(reinterpret_cast<const char*>(&len), 4);  // Little-endian hosts only (x86-64, aarch64).
  out += header;
  out.append(payload);
  return out;
}

absl::StatusOr<ExportedState> StateCodec::Decode(std::string_view bytes) const {
  if (bytes.size() < sizeof(kMagic) + 4 || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError("data is not an exported session state (no RWKVSTAT magic)");
  }
  uint32_t len;
  std::memcpy(&len, bytes.data() + sizeof(kMagic), 4);
  if (len > kMaxHeaderBytes || bytes.size() < sizeof(kMagic) + 4 + len) {
    return absl::DataLossError(absl::StrFormat("state header length %d exceeds the data (%d bytes)", len, bytes.size()));
  }
  nlohmann::json h = nlohmann::json::parse(bytes.substr(sizeof(kMagic) + 4, len), nullptr, /*allow_exceptions=*/false);
  if (h.is_discarded() || !h.is_object()) return absl::DataLossError("state header is not a JSON object");
  const std::string_view payload = bytes.substr(sizeof(kMagic) + 4 + len);
  try {
    if (h.at("format").get<int>() != 1) {
      return absl::InvalidArgumentError(absl::StrFormat("state format %d is not supported (expected 1)", h.at("format").get<int>()));
    }
    const std::string fp = h.at("model_fingerprint").get<std::string>();
    if (fp != fingerprint) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "state belongs to model %s (%s); this server runs %s (%s)", fp, h.value("description", "?"), fingerprint,
          config.Describe()));
    }
    if (h.at("dtype").get<std::string>() != "float32") return absl::InvalidArgumentError("state dtype must be float32");
    const size_t want = static_cast<size_t>(config.StateBytes());
    if (h.at("payload_bytes").get<size_t>() != want || payload.size() != want) {
      return absl::DataLossError(absl::StrFormat("state payload is %d bytes (header says %d); expected %d",
                                                 payload.size(), h.at("payload_bytes").get<size_t>(), want));
    }
    const std::string sum = absl::StrFormat("%016x", Fnv1a64(payload));
    if (h.at("checksum_fnv1a64").get<std::string>() != sum) {
      return absl::DataLossError(absl::StrFormat("state checksum mismatch: header %s, payload %s",
                                                 h.at("checksum_fnv1a64").get<std::string>(), sum));
    }
    ExportedState out;
    out.token_count = h.at("token_count").get<int64_t>();
    if (out.token_count < 0) return absl::InvalidArgumentError("state token_count is negative");
    const nlohmann::json& p = h.at("pending_token");
    if (!p.is_null()) {
      const int64_t t = p.get<int64_t>();
      if (t < 0 || t >= config.vocab) {
        return absl::InvalidArgumentError(absl::StrFormat("state pending_token %d is outside [0, %d)", t, config.vocab));
      }
      out.pending = static_cast<int32_t>(t);
    }
    out.state.resize(want / 4);
    std::memcpy(out.state.data(), payload.data(), want);
    return out;
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrFormat("state header field missing or mistyped: %s", e.what()));
  }
}

}  // namespace rwkv::server
