#include "server/core/state_codec.h"

#include <zlib.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "engine/status.h"
#include "nlohmann/json.hpp"

namespace rwkv::server {
namespace {

using nlohmann::json;

constexpr char kMagic[8] = {'R', 'W', 'K', 'V', 'S', 'T', 'A', 'T'};
constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kTrailerBytes = 4;
constexpr int kFormat = 2;
// Integers JSON carries exactly (2^53); far beyond any conversation or clock in milliseconds.
constexpr int64_t kMaxJsonInt = int64_t{1} << 53;

void Mix(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
}

uint32_t Crc32(std::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths; states can pass 4 GiB in principle.
  for (size_t off = 0; off < bytes.size();) {
    const size_t n = std::min<size_t>(bytes.size() - off, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + off), static_cast<uInt>(n));
    off += n;
  }
  return static_cast<uint32_t>(crc);
}

std::string Shown(const json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 40) + "...";
  return s;
}

// An integer header field in [lo, hi]. Floats (1.5, 1e3), strings and out-of-range values are
// refused; nlohmann keeps integers beyond int64 as unsigned or float, both caught here.
absl::StatusOr<int64_t> IntField(const json& h, const char* name, int64_t lo, int64_t hi) {
  const auto it = h.find(name);
  if (it == h.end()) return absl::DataLossError(absl::StrFormat("state header has no field %s", name));
  bool ok = it->is_number_integer();
  int64_t v = 0;
  if (ok && it->is_number_unsigned()) {
    const uint64_t u = it->get<uint64_t>();
    ok = u <= static_cast<uint64_t>(hi);
    v = static_cast<int64_t>(u);
  } else if (ok) {
    v = it->get<int64_t>();
  }
  if (!ok || v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrFormat("state header field %s must be an integer in [%d, %d] (got %s)", name, lo, hi, Shown(*it)));
  }
  return v;
}

absl::StatusOr<std::string> StringField(const json& h, const char* name) {
  const auto it = h.find(name);
  if (it == h.end()) return absl::DataLossError(absl::StrFormat("state header has no field %s", name));
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrFormat("state header field %s must be a string (got %s)", name, Shown(*it)));
  }
  return it->get<std::string>();
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

size_t StateCodec::MaxBytes() const {
  return kPrefixBytes + kMaxHeaderBytes + config.StateBytes() + kTrailerBytes;
}

std::string StateCodec::Encode(std::span<const float> state, const StateHeader& meta) const {
  const std::string_view payload(reinterpret_cast<const char*>(state.data()), state.size_bytes());
  json h;
  h["format"] = kFormat;
  h["model_fingerprint"] = fingerprint;
  h["architecture"] = ArchitectureName(config.arch);
  h["description"] = config.Describe();
  h["n_layer"] = config.n_layer;
  h["n_embd"] = config.n_embd;
  h["n_head"] = config.n_head;
  h["head_size"] = config.head_size;
  h["dtype"] = "float32";
  h["payload_bytes"] = payload.size();
  h["token_count"] = meta.token_count;
  h["pending_token"] = meta.pending ? json(*meta.pending) : json(nullptr);
  if (!meta.session_id.empty()) {
    h["session"] = {{"id", meta.session_id},
                    {"created_unix_ms", meta.created_unix_ms},
                    {"last_used_unix_ms", meta.last_used_unix_ms}};
  }
  const std::string header = h.dump();
  std::string out;
  out.reserve(kPrefixBytes + header.size() + payload.size() + kTrailerBytes);
  out.append(kMagic, sizeof(kMagic));
  const uint32_t len = static_cast<uint32_t>(header.size());
  out.append(reinterpret_cast<const char*>(&len), 4);  // Little-endian hosts only (x86-64, aarch64).
  out += header;
  out.append(payload);
  const uint32_t crc = Crc32(out);
  out.append(reinterpret_cast<const char*>(&crc), 4);
  return out;
}

absl::StatusOr<size_t> StateCodec::HeaderBytes(std::string_view bytes) const {
  const size_t magic = std::min(bytes.size(), sizeof(kMagic));
  if (magic > 0 && std::memcmp(bytes.data(), kMagic, magic) != 0) {
    return absl::InvalidArgumentError("data is not a session state (no RWKVSTAT magic)");
  }
  if (bytes.size() < kPrefixBytes) {
    return absl::DataLossError(absl::StrFormat("state is truncated: %d bytes, shorter than its %d-byte prefix",
                                               bytes.size(), kPrefixBytes));
  }
  uint32_t len;
  std::memcpy(&len, bytes.data() + sizeof(kMagic), 4);
  if (len > kMaxHeaderBytes) {
    return absl::DataLossError(absl::StrFormat("state header length %d exceeds the limit %d", len, kMaxHeaderBytes));
  }
  return kPrefixBytes + len;
}

absl::StatusOr<StateHeader> StateCodec::DecodeHeader(std::string_view bytes) const {
  return ParseHeader(bytes, nullptr);
}

absl::StatusOr<StateHeader> StateCodec::ParseHeader(std::string_view bytes, Layout* layout) const {
  RWKV_ASSIGN_OR_RETURN(const size_t header_end, HeaderBytes(bytes));
  if (bytes.size() < header_end) {
    return absl::DataLossError(
        absl::StrFormat("state is truncated: %d bytes, its header ends at byte %d", bytes.size(), header_end));
  }
  const json h = json::parse(bytes.substr(kPrefixBytes, header_end - kPrefixBytes), nullptr, /*allow_exceptions=*/false);
  if (h.is_discarded() || !h.is_object()) return absl::DataLossError("state header is not a JSON object");
  RWKV_ASSIGN_OR_RETURN(const int64_t format, IntField(h, "format", 1, kMaxJsonInt));
  if (format != 1 && format != kFormat) {
    return absl::InvalidArgumentError(absl::StrFormat("state format %d is not supported (1 or 2)", format));
  }
  // The model first: a state of a bigger model is named as such, not as a size mismatch.
  RWKV_ASSIGN_OR_RETURN(const std::string fp, StringField(h, "model_fingerprint"));
  if (fp != fingerprint) {
    const auto d = h.find("description");
    return absl::FailedPreconditionError(absl::StrFormat(
        "state belongs to model %s (%s); this server runs %s (%s)", fp.substr(0, 128),
        d != h.end() && d->is_string() ? d->get<std::string>().substr(0, 256) : "?", fingerprint, config.Describe()));
  }
  const std::pair<const char*, int> dims[] = {
      {"n_layer", config.n_layer}, {"n_embd", config.n_embd}, {"n_head", config.n_head}, {"head_size", config.head_size}};
  for (const auto& [name, want] : dims) {
    RWKV_ASSIGN_OR_RETURN(const int64_t got, IntField(h, name, 0, kMaxJsonInt));
    if (got != want) {
      return absl::InvalidArgumentError(absl::StrFormat("state header %s is %d; the model has %d", name, got, want));
    }
  }
  RWKV_ASSIGN_OR_RETURN(const std::string dtype, StringField(h, "dtype"));
  if (dtype != "float32") return absl::InvalidArgumentError("state dtype must be float32");
  RWKV_ASSIGN_OR_RETURN(const int64_t payload, IntField(h, "payload_bytes", 0, kMaxJsonInt));
  if (payload != config.StateBytes()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("state header payload_bytes is %d; this model's state is %d bytes", payload, config.StateBytes()));
  }
  StateHeader out;
  RWKV_ASSIGN_OR_RETURN(out.token_count, IntField(h, "token_count", 0, kMaxJsonInt));
  const auto p = h.find("pending_token");
  if (p == h.end()) return absl::DataLossError("state header has no field pending_token");
  if (!p->is_null()) {
    RWKV_ASSIGN_OR_RETURN(const int64_t t, IntField(h, "pending_token", 0, config.vocab - 1));
    out.pending = static_cast<int32_t>(t);
  }
  if (const auto s = h.find("session"); s != h.end()) {
    if (!s->is_object()) return absl::InvalidArgumentError("state header field session must be an object");
    RWKV_ASSIGN_OR_RETURN(out.session_id, StringField(*s, "id"));
    if (out.session_id.empty() || out.session_id.size() > 128) {
      return absl::InvalidArgumentError("state header session.id must be 1..128 bytes");
    }
    RWKV_ASSIGN_OR_RETURN(out.created_unix_ms, IntField(*s, "created_unix_ms", 0, kMaxJsonInt));
    RWKV_ASSIGN_OR_RETURN(out.last_used_unix_ms, IntField(*s, "last_used_unix_ms", 0, kMaxJsonInt));
  }
  if (layout != nullptr) {
    layout->header_end = header_end;
    layout->format = static_cast<int>(format);
    if (format == 1) {
      RWKV_ASSIGN_OR_RETURN(layout->fnv1a64, StringField(h, "checksum_fnv1a64"));
    }
  }
  return out;
}

absl::StatusOr<ExportedState> StateCodec::Decode(std::string_view bytes) const {
  Layout layout;
  RWKV_ASSIGN_OR_RETURN(StateHeader header, ParseHeader(bytes, &layout));
  const size_t payload = static_cast<size_t>(config.StateBytes());
  const bool v1 = layout.format == 1;
  const size_t want = layout.header_end + payload + (v1 ? 0 : kTrailerBytes);
  if (bytes.size() != want) {
    return absl::DataLossError(absl::StrFormat("state is %d bytes; its header makes it %d (%s)", bytes.size(), want,
                                               bytes.size() < want ? "truncated" : "trailing bytes"));
  }
  const std::string_view body = bytes.substr(layout.header_end, payload);
  if (v1) {
    const std::string sum = absl::StrFormat("%016x", Fnv1a64(body));
    if (layout.fnv1a64 != sum) {
      return absl::DataLossError(
          absl::StrFormat("state checksum mismatch: header %s, payload %s", layout.fnv1a64.substr(0, 32), sum));
    }
  } else {
    uint32_t stored;
    std::memcpy(&stored, bytes.data() + want - kTrailerBytes, 4);
    const uint32_t sum = Crc32(bytes.substr(0, want - kTrailerBytes));
    if (stored != sum) {
      return absl::DataLossError(absl::StrFormat("state checksum mismatch: stored crc32 %08x, computed %08x", stored, sum));
    }
  }
  ExportedState out;
  static_cast<StateHeader&>(out) = std::move(header);
  out.state.resize(payload / 4);
  std::memcpy(out.state.data(), body.data(), payload);
  return out;
}

}  // namespace rwkv::server
