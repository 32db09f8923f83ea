#include "server/metrics.h"


#include "absl/strings/str_cat.h"
#include "server/grpc/status_map.h"

namespace rwkv::server {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using Buckets = prometheus::Histogram::BucketBoundaries;

// Latency buckets from 1 ms to 2 min: covers a CPU decode step (tens of ms) and long requests.
Buckets Latency() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

prometheus::Histogram& Histogram(prometheus::Registry& r, const char* name, const char* help, Buckets b) {
  return BuildHistogram().Name(name).Help(help).Register(r).Add({}, std::move(b));
}
// Images of prompts by where their state came from: encoded, failed (the encoder's error), or
// cache (the prefix cache held the state after the image: no vision work).
prometheus::Counter& ImageCounter(prometheus::Registry& r, const char* source) {
  return prometheus::BuildCounter()
      .Name("rwkv_images_total")
      .Help("Images in prompts, by source: encoded, failed, or cache (the state after it was cached)")
      .Register(r)
      .Add({{"source", source}});
}

prometheus::Counter& Counter(prometheus::Registry& r, const char* name, const char* help) {
  return BuildCounter().Name(name).Help(help).Register(r).Add({});
}
prometheus::Gauge& Gauge(prometheus::Registry& r, const char* name, const char* help,
                         const std::map<std::string, std::string>& labels = {}) {
  return BuildGauge().Name(name).Help(help).Register(r).Add(labels);
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(BuildCounter()
                    .Name("rwkv_requests_total")
                    .Help("Finished RPCs by method and gRPC code")
                    .Register(*registry_)),
      prompt_tokens_(
          BuildCounter().Name("rwkv_prompt_tokens_total").Help("Prompt tokens admitted").Register(*registry_).Add({})),
      generated_tokens_(
          BuildCounter().Name("rwkv_generated_tokens_total").Help("Tokens sampled").Register(*registry_).Add({})),
      ttft_(
          Histogram(*registry_, "rwkv_time_to_first_token_seconds", "Admission to the first sampled token", Latency())),
      inter_token_(Histogram(*registry_, "rwkv_inter_token_latency_seconds", "Between sampled tokens of one sequence",
                             Latency())),
      request_duration_(
          Histogram(*registry_, "rwkv_request_duration_seconds", "Submit to the final message", Latency())),
      queue_wait_(Histogram(*registry_, "rwkv_queue_wait_seconds", "Submit to admission", Latency())),
      batch_size_(Histogram(*registry_, "rwkv_batch_size", "Sequences per engine step",
                            {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})),
      step_duration_(Histogram(*registry_, "rwkv_step_duration_seconds", "One engine step", Latency())),
      running_(Gauge(*registry_, "rwkv_requests_running", "Sequences holding a state slot")),
      waiting_(Gauge(*registry_, "rwkv_requests_waiting", "Sequences waiting for admission")),
      encoding_(Gauge(*registry_, "rwkv_requests_encoding",
                      "Sequences waiting for their images' encoding, before they wait for admission")),
      slots_used_(Gauge(*registry_, "rwkv_state_slots_used", "State pool slots in use")),
      slots_total_(Gauge(*registry_, "rwkv_state_slots_total", "State pool slots")),
      sessions_(BuildGauge()
                    .Name("rwkv_sessions")
                    .Help("Sessions by tier (device: a pool slot; host: RAM; disk: a file in --state-dir)")
                    .Register(*registry_)),
      sessions_device_(sessions_.Add({{"tier", "device"}})),
      sessions_host_(sessions_.Add({{"tier", "host"}})),
      sessions_disk_(sessions_.Add({{"tier", "disk"}})),
      disk_bytes_(Gauge(*registry_, "rwkv_state_disk_bytes", "Bytes of session files in --state-dir")),
      disk_writes_(Counter(*registry_, "rwkv_state_disk_writes_total", "Session states written to disk")),
      disk_write_errors_(
          Counter(*registry_, "rwkv_state_disk_write_errors_total", "Session state writes that failed (retried)")),
      disk_reads_(Counter(*registry_, "rwkv_state_disk_reads_total", "Session states read back from disk")),
      disk_quarantined_(Counter(*registry_, "rwkv_state_disk_quarantined_total",
                                "Stored session files that failed to load, moved to quarantine")),
      disk_expired_(Counter(*registry_, "rwkv_state_disk_expired_total",
                            "Idle stored sessions expired to keep --state-disk-bytes")),
      disk_write_seconds_(Histogram(*registry_, "rwkv_state_disk_write_seconds",
                                    "One batch of state writes: write, fsync, rename, directory fsync",
                                    {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5})),
      serving_(BuildGauge()
                   .Name("rwkv_serving")
                   .Help("1 while the server reports SERVING on grpc.health.v1 (loaded, not draining, backend healthy)")
                   .Register(*registry_)
                   .Add({})),
      auth_failures_(BuildCounter()
                         .Name("rwkv_auth_failures_total")
                         .Help("Calls refused UNAUTHENTICATED, by reason (missing, invalid)")
                         .Register(*registry_)),
      tenant_limited_(BuildCounter()
                          .Name("rwkv_tenant_limited_total")
                          .Help("Calls refused RESOURCE_EXHAUSTED by a per-tenant limit, by limit")
                          .Register(*registry_)),
      tenant_tokens_(BuildCounter()
                         .Name("rwkv_tenant_generated_tokens_total")
                         .Help("Tokens generated per tenant (only with --metrics-tenant-label)")
                         .Register(*registry_)),
      prefix_lookups_(Counter(*registry_, "rwkv_prefix_cache_lookups_total",
                              "Stateless prompts looked up in the prefix-state cache")),
      prefix_hits_(Counter(*registry_, "rwkv_prefix_cache_hits_total",
                           "Lookups that found a cached prefix (its state replaced computing it)")),
      prefix_tokens_(Counter(*registry_, "rwkv_prefix_cache_tokens_saved_total",
                             "Prompt tokens not computed because their state came from the prefix cache")),
      prefix_bytes_(
          Gauge(*registry_, "rwkv_prefix_cache_bytes", "Bytes the prefix-state cache holds (states and keys)")),
      prefix_entries_(Gauge(*registry_, "rwkv_prefix_cache_entries", "States in the prefix-state cache")),
      prefix_evictions_(Counter(*registry_, "rwkv_prefix_cache_evictions_total",
                                "Prefix-cache states dropped to keep --prefix-cache-bytes")),
      images_encoded_(ImageCounter(*registry_, "encoded")),
      images_failed_(ImageCounter(*registry_, "failed")),
      images_cached_(ImageCounter(*registry_, "cache")),
      image_encode_seconds_(Histogram(*registry_, "rwkv_image_encode_seconds",
                                      "One image through the vision encoder (towers and projector)",
                                      {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100})) {}

void Metrics::OnImageEncoded(double seconds, bool ok) {
  (ok ? images_encoded_ : images_failed_).Increment();
  if (ok) image_encode_seconds_.Observe(seconds);
}

void Metrics::OnImageCached() { images_cached_.Increment(); }

void Metrics::OnPrefixLookup(int tokens, int cached) {
  prefix_lookups_.Increment();
  if (cached > 0) {
    prefix_hits_.Increment();
    prefix_tokens_.Increment(cached);
  }
}

void Metrics::RecordAuthFailure(const char* reason) { auth_failures_.Add({{"reason", reason}}).Increment(); }

void Metrics::RecordTenantLimit(const char* limit, const std::string& tenant) {
  if (tenant_label_) {
    tenant_limited_.Add({{"limit", limit}, {"tenant", tenant}}).Increment();
  } else {
    tenant_limited_.Add({{"limit", limit}}).Increment();
  }
}

void Metrics::RecordTenantTokens(const std::string& tenant, int64_t n) {
  if (tenant_label_) tenant_tokens_.Add({{"tenant", tenant}}).Increment(static_cast<double>(n));
}

absl::StatusOr<int> Metrics::Serve(const std::string& host, int port, const TlsMaterial* tls) {
  http_ = std::make_unique<MetricsHttpServer>(Routes());
  if (tls != nullptr) {
    if (absl::Status st = http_->SetTls(*tls); !st.ok()) return st;
  }
  return http_->Start(host, port);
}

MetricsRoutes Metrics::Routes() {
  return MetricsRoutes{registry_, [this] { return serving_.Value() == 1; }, [this] { return live_.load(); }};
}

absl::Status Metrics::ReloadTls(const TlsMaterial& tls) {
  return http_ == nullptr ? absl::OkStatus() : http_->SetTls(tls);
}

void Metrics::RecordRpc(const char* method, grpc::StatusCode code) {
  requests_.Add({{"method", method}, {"code", CodeLabel(code)}}).Increment();
}

void Metrics::OnAdmit(double queue_seconds, int prompt_tokens) {
  queue_wait_.Observe(queue_seconds);
  prompt_tokens_.Increment(prompt_tokens);
}

void Metrics::OnToken(bool first, double seconds) {
  generated_tokens_.Increment();
  (first ? ttft_ : inter_token_).Observe(seconds);
}

void Metrics::OnStep(int sequences, int tokens, double seconds) {
  batch_size_.Observe(sequences);
  step_duration_.Observe(seconds);
}

void Metrics::OnFinish(const FinalEvent& final) { request_duration_.Observe(final.total_seconds); }

void Metrics::OnOccupancy(const Occupancy& o) {
  running_.Set(o.running);
  waiting_.Set(o.waiting);
  encoding_.Set(o.encoding);
  slots_used_.Set(o.slots_used);
  slots_total_.Set(o.slots_total);
  sessions_device_.Set(o.sessions_device);
  sessions_host_.Set(o.sessions_host);
  sessions_disk_.Set(o.sessions_disk);
  disk_bytes_.Set(static_cast<double>(o.disk_bytes));
  prefix_bytes_.Set(static_cast<double>(o.prefix_cache_bytes));
  prefix_entries_.Set(o.prefix_cache_entries);
  // The scheduler counts evictions since start; the counter takes the difference.
  const int64_t seen = prefix_evictions_seen_.exchange(o.prefix_cache_evictions);
  if (o.prefix_cache_evictions > seen) prefix_evictions_.Increment(static_cast<double>(o.prefix_cache_evictions - seen));
}

void Metrics::OnDiskWrite(double seconds, bool ok) {
  (ok ? disk_writes_ : disk_write_errors_).Increment();
  disk_write_seconds_.Observe(seconds);
}
void Metrics::OnDiskRead() { disk_reads_.Increment(); }
void Metrics::OnQuarantine() { disk_quarantined_.Increment(); }
void Metrics::OnDiskExpire() { disk_expired_.Increment(); }

}  // namespace rwkv::server
