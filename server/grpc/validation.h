// Turns API requests into scheduler requests, checking every field against its limit. Errors are
// INVALID_ARGUMENT naming the field and the limit.
#ifndef RWKV_SERVER_GRPC_VALIDATION_H_
#define RWKV_SERVER_GRPC_VALIDATION_H_

#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"
#include "rwkv/v1/rwkv.pb.h"
#include "server/core/chat_template.h"
#include "server/core/requests.h"
#include "server/core/sequence.h"

namespace rwkv::server {


// Generate: prompt (text or ids), sampling, stop conditions, output options. `deadline` is the
// RPC's (or the server default), applied by the caller.
// `chat` renders `messages` prompts.
absl::StatusOr<SequenceRequest> ToSequenceRequest(const v1::GenerateRequest& req, const Tokenizer& tokenizer,
                                                  const RequestLimits& limits, const ChatTemplate& chat,
                                                  const VisionLimits& vision = {});
// CreateSession with its optional first prompt. `vision` bounds the images (tokens 0: none taken).
absl::StatusOr<SequenceRequest> ToCreateRequest(const v1::CreateSessionRequest& req, const Tokenizer& tokenizer,
                                                const RequestLimits& limits, const VisionLimits& vision = {});

}  // namespace rwkv::server

#endif  // RWKV_SERVER_GRPC_VALIDATION_H_
