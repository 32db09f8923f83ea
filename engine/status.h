// Status propagation macros. Abseil 20220623 (Debian 12) ships none, so these two are ours.
#ifndef RWKV_ENGINE_STATUS_H_
#define RWKV_ENGINE_STATUS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RWKV_STATUS_CONCAT_INNER(a, b) a##b
#define RWKV_STATUS_CONCAT(a, b) RWKV_STATUS_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RWKV_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status rwkv_status_ = (expr);        \
    if (!rwkv_status_.ok()) return rwkv_status_; \
  } while (0)

// `lhs = value of expr` (an absl::StatusOr<T>), or returns its status from the enclosing function.
#define RWKV_ASSIGN_OR_RETURN(lhs, expr) \
  RWKV_ASSIGN_OR_RETURN_IMPL(RWKV_STATUS_CONCAT(rwkv_statusor_, __COUNTER__), lhs, expr)
#define RWKV_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return std::move(tmp).status();   \
  lhs = std::move(tmp).value()

#endif  // RWKV_ENGINE_STATUS_H_
