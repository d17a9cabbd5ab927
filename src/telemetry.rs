//! Metric names in one place, the Prometheus exporter, and tracing setup.
//!
//! Names follow `rta_<noun>_<unit>`; labels are low-cardinality (api, outcome,
//! strategy id), never a device or user id.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Decisions made, by `api` (grpc, grpc_batch, tencent) and `outcome`.
pub const DECIDE_REQUESTS: &str = "rta_decide_requests_total";
/// Server time per decision, by `api`.
pub const DECIDE_DURATION: &str = "rta_decide_duration_seconds";
/// Requests rejected as invalid, by `api` and `field`.
pub const INVALID_REQUESTS: &str = "rta_invalid_requests_total";
/// Device ids ignored because they are doubtful (shared placeholders).
pub const DOUBTFUL_IDS: &str = "rta_doubtful_device_ids_total";
/// Matches per strategy.
pub const STRATEGY_MATCHES: &str = "rta_strategy_matches_total";
/// Live strategies.
pub const STRATEGIES_LIVE: &str = "rta_strategies";
/// Strategy-set reloads, by `result` (ok, error).
pub const STRATEGY_RELOADS: &str = "rta_strategy_reloads_total";
/// Users in the index.
pub const INDEX_USERS: &str = "rta_index_users";
/// Devices in the index.
pub const INDEX_DEVICES: &str = "rta_index_devices";
/// Heap bytes of profile bodies.
pub const INDEX_PROFILE_BYTES: &str = "rta_index_profile_heap_bytes";

/// Outcome label values of [`DECIDE_REQUESTS`].
pub mod outcome {
    /// At least one strategy matched.
    pub const TAKE: &str = "take";
    /// A known user matched no strategy.
    pub const NO_MATCH: &str = "no_match";
    /// No id resolved to a known user.
    pub const UNKNOWN_DEVICE: &str = "unknown_device";
    /// Every id was doubtful or none was given.
    pub const NO_USABLE_ID: &str = "no_usable_id";
}

/// Latency buckets (seconds) for [`DECIDE_DURATION`]: 1 us .. 100 ms.
const DURATION_BUCKETS: &[f64] = &[
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(DECIDE_DURATION.to_string()),
                    DURATION_BUCKETS,
                )
                .expect("bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; ours then stays unused.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(DECIDE_REQUESTS, "Decisions made, by api and outcome");
    describe_histogram!(DECIDE_DURATION, Unit::Seconds, "Server time per decision");
    describe_counter!(
        INVALID_REQUESTS,
        "Requests rejected as invalid, by api and field"
    );
    describe_counter!(DOUBTFUL_IDS, "Device ids ignored as doubtful");
    describe_counter!(STRATEGY_MATCHES, "Matches per strategy");
    describe_gauge!(STRATEGIES_LIVE, "Live strategies");
    describe_counter!(STRATEGY_RELOADS, "Strategy reloads, by result");
    describe_gauge!(INDEX_USERS, "Users in the index");
    describe_gauge!(INDEX_DEVICES, "Devices in the index");
    describe_gauge!(
        INDEX_PROFILE_BYTES,
        Unit::Bytes,
        "Heap bytes of profile bodies"
    );
}

/// Sets up `tracing` output; `RUST_LOG` overrides the default `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
