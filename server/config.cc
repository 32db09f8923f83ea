#include "server/config.h"

#include <cctype>
#include <cstdlib>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/absl_compat.h"
#include "engine/model.h"
#include "engine/status.h"

namespace rwkv::server {
namespace {

using Setter = std::function<absl::Status(ServerConfig&, const std::string& flag, const std::string& value)>;

struct Flag {
  const char* name;
  const char* help;
  Setter set;
};

Setter String(std::string ServerConfig::*field) {
  return [field](ServerConfig& c, const std::string&, const std::string& v) {
    c.*field = v;
    return absl::OkStatus();
  };
}

template <typename T>
Setter Int(T ServerConfig::*field, int64_t lo, int64_t hi) {
  return [=](ServerConfig& c, const std::string& flag, const std::string& v) {
    int64_t x;
    if (!absl::SimpleAtoi(AV(v), &x) || x < lo || x > hi) {
      return absl::InvalidArgumentError(absl::StrFormat("--%s is '%s'; it must be an integer in [%d, %d]", flag, v, lo, hi));
    }
    c.*field = static_cast<T>(x);
    return absl::OkStatus();
  };
}

Setter Seconds(double ServerConfig::*field, double hi) {
  return [=](ServerConfig& c, const std::string& flag, const std::string& v) {
    double x;
    std::string s = v;
    if (!s.empty() && s.back() == 's') s.pop_back();
    if (!absl::SimpleAtod(AV(s), &x) || !(x >= 0) || x > hi) {
      return absl::InvalidArgumentError(absl::StrFormat("--%s is '%s'; it must be seconds in [0, %g]", flag, v, hi));
    }
    c.*field = x;
    return absl::OkStatus();
  };
}

Setter Bool(bool ServerConfig::*field) {
  return [=](ServerConfig& c, const std::string& flag, const std::string& v) {
    const std::string s = absl::AsciiStrToLower(AV(v));
    if (s == "true" || s == "1" || s == "yes") {
      c.*field = true;
    } else if (s == "false" || s == "0" || s == "no") {
      c.*field = false;
    } else {
      return absl::InvalidArgumentError(absl::StrFormat("--%s is '%s'; it must be true or false", flag, v));
    }
    return absl::OkStatus();
  };
}

// "1073741824", "512MiB", "1GiB", "1G" (powers of 1024 either way); `zero` allows 0 (= off).
Setter Bytes(int64_t ServerConfig::*field, bool zero = false) {
  return [=](ServerConfig& c, const std::string& flag, const std::string& v) {
    std::string num = v;
    int64_t mult = 1;
    std::string unit;
    while (!num.empty() && std::isalpha(static_cast<unsigned char>(num.back()))) {
      unit.insert(unit.begin(), static_cast<char>(std::toupper(num.back())));
      num.pop_back();
    }
    if (unit == "K" || unit == "KIB" || unit == "KB") mult = 1LL << 10;
    else if (unit == "M" || unit == "MIB" || unit == "MB") mult = 1LL << 20;
    else if (unit == "G" || unit == "GIB" || unit == "GB") mult = 1LL << 30;
    else if (unit == "T" || unit == "TIB" || unit == "TB") mult = 1LL << 40;
    else if (!unit.empty() && unit != "B") mult = 0;
    double x;
    if (mult == 0 || !absl::SimpleAtod(AV(num), &x) || !(x > 0 || (zero && x == 0)) || x * mult > 1e15) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--%s is '%s'; it must be a size such as 512MiB or 4GiB (at most 1e15 bytes)", flag, v));
    }
    c.*field = static_cast<int64_t>(x * mult);
    return absl::OkStatus();
  };
}

const std::vector<Flag>& Flags() {
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  static const std::vector<Flag> flags = {
      {"model", "checkpoint (.pth, .safetensors, or a sharded index/directory); required",
       String(&ServerConfig::model)},
      {"vocab", "tokenizer file: RWKV World vocabulary or GPT-NeoX tokenizer.json; required",
       String(&ServerConfig::vocab)},
      {"tokenizer", "auto, world or neox; auto = neox for the Pile vocabularies 50277/50304 (default auto)",
       String(&ServerConfig::tokenizer)},
      {"backend", "cpu or cuda (default cpu)", String(&ServerConfig::backend)},
      {"device", "CUDA device ordinal (default 0)", Int(&ServerConfig::device, 0, 1024)},
      {"dtype",
       "weight matrices: auto, f32, bf16, f16, int8 or int4 (int8/int4: CPU only); auto = f16 on CUDA, on the CPU "
       "as the checkpoint stores them (default auto)",
       String(&ServerConfig::dtype)},
      {"threads", "CPU math threads; 0 = all cores (default 0)", Int(&ServerConfig::threads, 0, 4096)},
      {"host", "gRPC, HTTP and metrics listen address (default 0.0.0.0)", String(&ServerConfig::host)},
      {"port", "gRPC port; 0 = any free port (default 50051)", Int(&ServerConfig::port, 0, 65535)},
      {"metrics-port", "Prometheus /metrics port; 0 = any free port, -1 = off (default 9090)",
       Int(&ServerConfig::metrics_port, -1, 65535)},
      {"http-port",
       "OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models; also /metrics, /health, "
       "/ready); 0 = any free port, -1 = off (default 8080)",
       Int(&ServerConfig::http_port, -1, 65535)},
      {"model-name", "the model id of the HTTP API (default: the --model file's name without its extension)",
       String(&ServerConfig::model_name)},
      {"chat-template",
       "JSON chat template for chat requests (docs/server.md; default: the RWKV World format, "
       "System:/User:/Assistant:)",
       String(&ServerConfig::chat_template)},
      {"prefix-cache-bytes",
       "host RAM for states of prompt prefixes, reused by stateless requests that resend them; 0 = off (default "
       "256MiB)",
       Bytes(&ServerConfig::prefix_cache_bytes, true)},
      {"prefix-cache-interval",
       "tokens between cached states of a long prompt; 0 = message boundaries only (default 256)",
       Int(&ServerConfig::prefix_cache_interval, 0, 1 << 20)},
      {"state-slots", "state pool slots; 0 = as many as --state-memory holds (default 0)",
       Int(&ServerConfig::state_slots, 0, 1 << 20)},
      {"state-memory", "state pool bytes when --state-slots is 0 (default 1GiB)", Bytes(&ServerConfig::state_memory)},
      {"max-running", "sequences running at once; 0 = the pool's slots (default 0)",
       Int(&ServerConfig::max_running, 0, 1 << 20)},
      {"step-tokens", "token budget of one engine step, decode and prefill (default 512)",
       Int(&ServerConfig::step_tokens, 1, 1 << 16)},
      {"queue-length", "requests waiting for admission before RESOURCE_EXHAUSTED (default 256)",
       Int(&ServerConfig::queue_length, 1, 1 << 20)},
      {"max-sessions", "sessions kept at once (default 1024)", Int(&ServerConfig::max_sessions, 1, 1 << 24)},
      {"session-memory",
       "host RAM all sessions' states may take, e.g. 8GiB; with --state-dir the least recently used idle ones "
       "move to disk beyond it, without it it bounds --max-sessions (default: no bound)",
       Bytes(&ServerConfig::session_memory)},
      {"state-dir", "directory of the sessions' disk tier: sessions survive restarts (default: none, memory only)",
       String(&ServerConfig::state_dir)},
      {"persist-interval",
       "seconds from a session's commit to its write to --state-dir (coalesced per session); 0 = before the "
       "turn's Final message (default 5)",
       Seconds(&ServerConfig::persist_interval, 86400)},
      {"state-disk-bytes",
       "bytes the session files may take; the oldest idle ones expire beyond it (default: no bound)",
       Bytes(&ServerConfig::state_disk_bytes)},
      {"session-ttl", "seconds an idle session is kept; 0 = forever (default 3600)",
       Seconds(&ServerConfig::session_ttl, 1e9)},
      {"image-tokens",
       "a VisualRWKV-7 checkpoint (vit.* and proj.* tensors): prompt tokens an image is pooled to, a square "
       "(default 16)",
       Int(&ServerConfig::image_tokens, 1, 1 << 16)},
      {"dino-heads", "VisualRWKV-7: attention heads of the DINOv2 tower (default 16, ViT-L)",
       Int(&ServerConfig::dino_heads, 1, 1024)},
      {"siglip-heads", "VisualRWKV-7: attention heads of the SigLIP tower (default 16, so400m)",
       Int(&ServerConfig::siglip_heads, 1, 1024)},
      {"max-images", "images in one request (default 8)", Int(&ServerConfig::max_images, 1, 1024)},
      {"max-image-bytes", "bytes of one image file (default 20MiB)", Bytes(&ServerConfig::max_image_bytes)},
      {"max-image-pixels", "width x height of one image, checked before decoding (default 40000000)",
       Int(&ServerConfig::max_image_pixels, 1, int64_t{1} << 40)},
      {"max-prompt-tokens", "tokens in one prompt (default 65536)", Int(&ServerConfig::max_prompt_tokens, 1, kMax)},
      {"max-tokens", "tokens one request may generate (default 4096)", Int(&ServerConfig::max_tokens, 1, kMax)},
      {"default-deadline", "seconds for requests without a deadline; 0 = none (default 600)",
       Seconds(&ServerConfig::default_deadline, 1e9)},
      {"grace", "seconds running streams get to finish after SIGTERM (default 30)", Seconds(&ServerConfig::grace, 1e6)},
      {"stream-buffer", "responses queued per stream before its sequence pauses (default 16)",
       Int(&ServerConfig::stream_buffer, 1, 1 << 16)},
      {"stream-write-threads", "threads that start gRPC streams' writes, off the scheduler's thread (default 2)",
       Int(&ServerConfig::stream_write_threads, 1, 64)},
      {"access-log", "one log line per finished request (default true)", Bool(&ServerConfig::access_log)},
      {"states",
       "start states requests may name, NAME=PATH,...: state-tuning files (blocks.N.att.time_state) or exported "
       "sessions (default none)",
       String(&ServerConfig::states)},
      {"default-state", "the start state of requests that name none; one of --states (default: zeros)",
       String(&ServerConfig::default_state)},
      {"tls-cert",
       "PEM certificate chain: TLS on the gRPC, HTTP and metrics ports, re-read on SIGHUP (default: plaintext)",
       String(&ServerConfig::tls_cert)},
      {"tls-key", "PEM private key of --tls-cert", String(&ServerConfig::tls_key)},
      {"tls-client-ca", "PEM CA bundle: gRPC clients must present a certificate it signed (mTLS; default: none)",
       String(&ServerConfig::tls_client_ca)},
      {"api-keys",
       "file of 'KEY TENANT [sessions=N] [streams=N] [tokens_per_minute=N]' lines (KEY may be sha256:HEX); every "
       "call but health needs 'authorization: Bearer KEY'; re-read on SIGHUP (default: no keys)",
       String(&ServerConfig::api_keys)},
      {"tenant-max-sessions", "sessions per tenant unless its keys line says; 0 = no limit (default 0)",
       Int(&ServerConfig::tenant_max_sessions, 0, kMax)},
      {"tenant-max-streams", "concurrent Generate streams per tenant unless its keys line says; 0 = no limit",
       Int(&ServerConfig::tenant_max_streams, 0, kMax)},
      {"tenant-tokens-per-minute", "generated tokens per tenant per minute unless its keys line says; 0 = no limit",
       Int(&ServerConfig::tenant_tokens_per_minute, 0, kMax)},
      {"metrics-tenant-label", "label per-tenant metrics with tenant names (default false: fixed label sets)",
       Bool(&ServerConfig::metrics_tenant_label)},
  };
  return flags;
}

std::string EnvName(const char* flag) {
  std::string env = "RWKV_";
  for (const char* p = flag; *p; ++p) env += *p == '-' ? '_' : static_cast<char>(std::toupper(*p));
  return env;
}

}  // namespace

std::string ServerUsage() {
  std::string out = "usage: rwkv-server --model FILE --vocab FILE [flags]\n\nflags (environment variable in brackets):\n";
  for (const Flag& f : Flags()) absl::StrAppendFormat(&out, "  --%-24s %s [%s]\n", f.name, f.help, EnvName(f.name));
  return out;
}

absl::StatusOr<ServerConfig> ParseServerConfig(const std::vector<std::string>& args,
                                               const std::function<const char*(const char*)>& getenv, bool* help) {
  ServerConfig c;
  *help = false;
  for (const Flag& f : Flags()) {
    if (const char* v = getenv(EnvName(f.name).c_str()); v != nullptr && *v != '\0') {
      if (absl::Status st = f.set(c, f.name, v); !st.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(st.message(), " (from ", EnvName(f.name), ")"));
      }
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "--help" || a == "-h") {
      *help = true;
      return c;
    }
    if (a.rfind("--", 0) != 0) return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", a, "'"));
    a = a.substr(2);
    std::string value;
    bool has_value = false;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    const Flag* flag = nullptr;
    for (const Flag& f : Flags()) {
      if (a == f.name) flag = &f;
    }
    if (flag == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", a, " (see --help)"));
    if (!has_value) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat("--", a, " needs a value"));
      value = args[++i];
    }
    RWKV_RETURN_IF_ERROR(flag->set(c, flag->name, value));
  }
  if (c.model.empty()) return absl::InvalidArgumentError("--model is required (or RWKV_MODEL)");
  if (c.vocab.empty()) return absl::InvalidArgumentError("--vocab is required (or RWKV_VOCAB)");
  if (c.tokenizer != "auto" && c.tokenizer != "world" && c.tokenizer != "neox") {
    return absl::InvalidArgumentError(absl::StrCat("--tokenizer is '", c.tokenizer, "'; expected auto, world or neox"));
  }
  if (absl::Status s = ParseMatrixType(c.dtype, "--dtype").status(); !s.ok()) return s;
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!c.tls_client_ca.empty() && c.tls_cert.empty()) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS first)");
  }
  if (c.backend != "cpu" && c.backend != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("--backend is '", c.backend, "'; it must be cpu or cuda"));
  }
  return c;
}

}  // namespace rwkv::server
