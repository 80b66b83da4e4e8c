//! The worker's own metrics registry, apart from the API's even when both run in one process
//! (`mailsensor dev`), so a worker's `/metrics` shows the worker alone.
use std::sync::LazyLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

static REGISTRY: LazyLock<PrometheusRecorder> = LazyLock::new(|| PrometheusBuilder::new().build_recorder());

/// Runs `record` (which uses the `metrics` macros) against the worker's registry.
pub fn record<T>(record: impl FnOnce() -> T) -> T {
    metrics::with_local_recorder(&*REGISTRY, record)
}

/// The registry in Prometheus text format.
pub fn render() -> String {
    REGISTRY.handle().render()
}

/// A session ended its greeting stage: `accepted`, `disabled`, `client_rejected` or `api_unreachable`.
pub fn session(outcome: &'static str) {
    record(|| metrics::counter!("mailsensor_smtp_sessions_total", "outcome" => outcome).increment(1));
}

/// A message's data ended: `stored`, `refused` (the API refused it for good: 554) or
/// `handoff_failed` (451; the sender retries).
pub fn message(outcome: &'static str) {
    record(|| metrics::counter!("mailsensor_smtp_messages_total", "outcome" => outcome).increment(1));
}

pub fn sessions_open(open: usize) {
    record(|| metrics::gauge!("mailsensor_smtp_sessions_open").set(open as f64));
}

pub fn settings_revision(revision: i64) {
    record(|| metrics::gauge!("mailsensor_worker_settings_revision").set(revision as f64));
}
