// rwkv-server configuration: command-line flags, each also read from an environment variable
// (RWKV_ + the flag name in upper snake case: --metrics-port -> RWKV_METRICS_PORT), for
// Kubernetes. A flag on the command line wins over the environment.
#ifndef RWKV_SERVER_CONFIG_H_
#define RWKV_SERVER_CONFIG_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rwkv::server {

struct ServerConfig {
  std::string model;
  std::string vocab;
  std::string tokenizer = "auto";  // auto, world, neox.
  std::string backend = "cpu";
  int device = 0;
  std::string dtype = "auto";  // Weight matrices: auto (CUDA f16, CPU as stored), f32, bf16, f16.
  int threads = 0;
  std::string host = "0.0.0.0";
  int port = 50051;            // 0 = any free port (logged).
  int metrics_port = 9090;     // 0 = any free port; -1 = no metrics endpoint.
  int http_port = 8080;        // The OpenAI-compatible API; 0 = any free port; -1 = off.
  std::string model_name;      // The API's model id; empty = the model file's name without extension.
  std::string chat_template;   // JSON chat template file; empty = the RWKV World format.
  int64_t prefix_cache_bytes = 256LL << 20;  // Prefix-state cache; 0 = off.
  int prefix_cache_interval = 256;           // Tokens between cached states of a long prompt; 0 = none.
  int state_slots = 0;         // 0 = from state_memory.
  int64_t state_memory = 1LL << 30;  // Pool bytes when state_slots is 0.
  int max_running = 0;         // 0 = the pool's slot count.
  int step_tokens = 512;       // Token budget of one engine step.
  int queue_length = 256;
  int max_sessions = 1024;
  int64_t session_memory = 0;  // Host bytes all sessions' states may take; 0 = max_sessions alone.
  double session_ttl = 3600;   // Seconds idle before a session is deleted; 0 = never.
  std::string state_dir;       // The sessions' disk tier; empty = memory only.
  double persist_interval = 5;  // Seconds from a commit to its write; 0 = before the Final.
  int64_t state_disk_bytes = 0;  // Session files' budget; 0 = no bound.
  // Images (a VisualRWKV-7 checkpoint: vit.* towers and proj.* beside the rwkv.* model).
  int image_tokens = 16;        // Prompt tokens an image is pooled to (a square).
  int dino_heads = 16;          // Attention heads of the DINOv2 tower (not in its shapes).
  int siglip_heads = 16;        // Of the SigLIP tower.
  int max_images = 8;           // Per request.
  int64_t max_image_bytes = 20LL << 20;
  int64_t max_image_pixels = 40'000'000;
  int max_prompt_tokens = 65536;
  int max_tokens = 4096;
  double default_deadline = 600;  // Seconds, for requests without a deadline; 0 = none.
  double grace = 30;           // Seconds running streams get to finish on SIGTERM.
  int stream_buffer = 16;      // Responses queued per stream before the sequence pauses.
  int stream_write_threads = 2;  // Threads starting gRPC stream writes.
  bool access_log = true;
  std::string states;         // "NAME=PATH,...": start states requests may name.
  std::string default_state;  // One of them, for requests that name none.
  // Security (docs/security.md).
  std::string tls_cert, tls_key;  // PEM files: TLS on the gRPC and metrics ports; re-read on SIGHUP.
  std::string tls_client_ca;      // PEM CA bundle: clients must present a certificate it signed (mTLS).
  std::string api_keys;           // Keys file (server/auth.h); re-read on SIGHUP. Empty = no keys.
  int tenant_max_sessions = 0;    // Defaults of keys-file lines (and of the keyless server); 0 = none.
  int tenant_max_streams = 0;
  int tenant_tokens_per_minute = 0;
  bool metrics_tenant_label = false;  // Tenant names as a metrics label.
};

// Parses flags (`--name value` or `--name=value`) over environment values. `getenv` is injected
// for tests. INVALID_ARGUMENT naming the flag for unknown flags, bad numbers, out-of-range values.
// `help` is set when --help was given.
absl::StatusOr<ServerConfig> ParseServerConfig(const std::vector<std::string>& args,
                                               const std::function<const char*(const char*)>& getenv, bool* help);
std::string ServerUsage();

}  // namespace rwkv::server

#endif  // RWKV_SERVER_CONFIG_H_
