// The one place where internal errors become gRPC statuses. absl::StatusCode values are the gRPC
// codes, so the map keeps the code and the message as they are; it exists so that every handler
// goes through the same door (and a future change of policy happens here only).
#ifndef RWKV_SERVER_GRPC_STATUS_MAP_H_
#define RWKV_SERVER_GRPC_STATUS_MAP_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace rwkv::server {

grpc::Status ToGrpcStatus(const absl::Status& s);

// Lower-case code name for metric labels and logs: "ok", "invalid_argument", ...
const char* CodeLabel(grpc::StatusCode code);

}  // namespace rwkv::server

#endif  // RWKV_SERVER_GRPC_STATUS_MAP_H_
