// Turns API requests into scheduler requests, checking every field against its limit. Errors are
// INVALID_ARGUMENT naming the field and the limit.
#ifndef RWKV_SERVER_GRPC_VALIDATION_H_
#define RWKV_SERVER_GRPC_VALIDATION_H_

#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"
#include "rwkv/v1/rwkv.pb.h"
#include "server/core/sequence.h"

namespace rwkv::server {

struct RequestLimits {
  int vocab = 0;
  size_t max_request_id_bytes = 128;
  int max_prompt_tokens = 65536;
  int max_tokens = 4096;
  int max_stop_strings = 16;
  int max_stop_string_bytes = 256;
  int max_top_logprobs = 20;
};

// Generate: prompt (text or ids), sampling, stop conditions, output options. `deadline` is the
// RPC's (or the server default), applied by the caller.
absl::StatusOr<SequenceRequest> ToSequenceRequest(const v1::GenerateRequest& req, const Tokenizer& tokenizer,
                                                  const RequestLimits& limits);
// CreateSession with its optional first prompt.
absl::StatusOr<SequenceRequest> ToCreateRequest(const v1::CreateSessionRequest& req, const Tokenizer& tokenizer,
                                                const RequestLimits& limits);

}  // namespace rwkv::server

#endif  // RWKV_SERVER_GRPC_VALIDATION_H_
