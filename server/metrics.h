// Prometheus metrics (names are API: docs/server.md and DESIGN.md list them). The scheduler
// reports through SchedulerObserver; RPC handlers record finished calls. The text endpoint is
// MetricsHttpServer on its own port.
//
// Thread safety: every method may be called from any thread.
#ifndef RWKV_SERVER_METRICS_H_
#define RWKV_SERVER_METRICS_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/support/status.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "server/http/metrics_http.h"
#include "server/core/frontend.h"
#include "server/core/scheduler.h"

namespace rwkv::server {

class Metrics final : public SchedulerObserver, public EdgeObserver {
 public:
  Metrics();
  ~Metrics() override {
    if (http_) http_->Stop();  // Its threads read serving_ and live_.
  }
  // Serves /metrics on host:port (port 0 picks one), over HTTPS with `tls`. Returns the bound port.
  absl::StatusOr<int> Serve(const std::string& host, int port, const TlsMaterial* tls = nullptr);
  // /metrics and the probes, for another HTTP port (the OpenAI-compatible API's).
  MetricsRoutes Routes();
  // New connections use `tls` (SIGHUP).
  absl::Status ReloadTls(const TlsMaterial& tls);

  void RecordRpc(const char* method, grpc::StatusCode code);
  // The HTTP edge's requests, by the same codes (EdgeObserver).
  void OnRequestDone(const char* method, absl::StatusCode code) override {
    RecordRpc(method, static_cast<grpc::StatusCode>(code));
  }
  void OnAuthFailure(const char* reason) override { RecordAuthFailure(reason); }
  void OnTenantLimit(const char* limit, const std::string& tenant) override { RecordTenantLimit(limit, tenant); }
  void OnTenantTokens(const std::string& tenant, int64_t n) override { RecordTenantTokens(tenant, n); }
  // Authentication and tenant limits. Tenant names become a label only with
  // SetTenantLabel(true) (--metrics-tenant-label): otherwise the label sets stay fixed and small.
  void SetTenantLabel(bool on) { tenant_label_ = on; }
  void RecordAuthFailure(const char* reason);
  void RecordTenantLimit(const char* limit, const std::string& tenant);
  void RecordTenantTokens(const std::string& tenant, int64_t n);
  // rwkv_serving: 1 while grpc.health.v1 says SERVING (loaded, not draining, backend healthy).
  void SetServing(bool serving) { serving_.Set(serving ? 1 : 0); }
  // False once the backend failed for good (the liveness health service turns NOT_SERVING).
  void SetLive(bool live) { live_ = live; }
  void OnAdmit(double queue_seconds, int prompt_tokens) override;
  void OnPrefixLookup(int tokens, int cached) override;
  void OnImageEncoded(double seconds, bool ok) override;
  void OnImageCached() override;
  void OnToken(bool first, double seconds) override;
  void OnStep(int sequences, int tokens, double seconds) override;
  void OnFinish(const FinalEvent& final) override;
  void OnOccupancy(const Occupancy& o) override;
  void OnDiskWrite(double seconds, bool ok) override;
  void OnDiskRead() override;
  void OnQuarantine() override;
  void OnDiskExpire() override;

  prometheus::Registry& registry() { return *registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttpServer> http_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generated_tokens_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& inter_token_;
  prometheus::Histogram& request_duration_;
  prometheus::Histogram& queue_wait_;
  prometheus::Histogram& batch_size_;
  prometheus::Histogram& step_duration_;
  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
  prometheus::Gauge& encoding_;
  prometheus::Gauge& slots_used_;
  prometheus::Gauge& slots_total_;
  prometheus::Family<prometheus::Gauge>& sessions_;
  prometheus::Gauge& sessions_device_;
  prometheus::Gauge& sessions_host_;
  prometheus::Gauge& sessions_disk_;
  prometheus::Gauge& disk_bytes_;
  prometheus::Counter& disk_writes_;
  prometheus::Counter& disk_write_errors_;
  prometheus::Counter& disk_reads_;
  prometheus::Counter& disk_quarantined_;
  prometheus::Counter& disk_expired_;
  prometheus::Histogram& disk_write_seconds_;
  prometheus::Gauge& serving_;
  prometheus::Family<prometheus::Counter>& auth_failures_;
  prometheus::Family<prometheus::Counter>& tenant_limited_;
  prometheus::Family<prometheus::Counter>& tenant_tokens_;
  prometheus::Counter& prefix_lookups_;
  prometheus::Counter& prefix_hits_;
  prometheus::Counter& prefix_tokens_;
  prometheus::Gauge& prefix_bytes_;
  prometheus::Gauge& prefix_entries_;
  prometheus::Counter& prefix_evictions_;
  std::atomic<int64_t> prefix_evictions_seen_{0};
  prometheus::Counter& images_encoded_;
  prometheus::Counter& images_failed_;
  prometheus::Counter& images_cached_;
  prometheus::Histogram& image_encode_seconds_;
  std::atomic<bool> tenant_label_{false};
  std::atomic<bool> live_{true};  // For /livez (/readyz reads serving_).
};

}  // namespace rwkv::server

#endif  // RWKV_SERVER_METRICS_H_
