//! Metric names in one place, the Prometheus exporter, and tracing setup.
//!
//! Names follow `rta_<noun>_<unit>`; labels are low-cardinality (api, outcome,
//! strategy id), never a device or user id.

pub mod event;
pub mod label;
pub mod repeat;
pub mod throttle;

pub use label::{IgnoredId, Outcome, Refusal};

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Decisions made, by `api` (grpc, grpc_batch, or a media endpoint: tencent,
/// tencent_test, oceanengine, meituan, meituan_test) and `outcome`.
pub const DECIDE_REQUESTS: &str = "rta_decide_requests_total";
/// Server time per decision, by `api`.
pub const DECIDE_DURATION: &str = "rta_decide_duration_seconds";
/// Requests rejected as invalid, by `api` and `field`.
pub const INVALID_REQUESTS: &str = "rta_invalid_requests_total";
/// Device ids ignored because they are doubtful (shared placeholders).
pub const DOUBTFUL_IDS: &str = "rta_doubtful_device_ids_total";
/// Matches per strategy.
pub const STRATEGY_MATCHES: &str = "rta_strategy_matches_total";
/// Audience matches a later step refused, by `strategy` and `reason`
/// (cap, score, no_vector, holdout).
pub const STRATEGY_REFUSALS: &str = "rta_strategy_refusals_total";
/// Experiment assignments of matched traffic, by `strategy` and `arm`
/// (a variant's name, holdout, outside).
pub const EXPERIMENT_ARMS: &str = "rta_experiment_assignments_total";
/// Requests refused because a device or the user is blacklisted, by `reason`.
pub const BLACKLIST_REFUSALS: &str = "rta_blacklist_refusals_total";
/// Entries added to the blacklist by rules, control events and operators, by `reason`.
pub const BLACKLIST_LISTED: &str = "rta_blacklist_listed_total";
/// Unexpired blacklist entries, by `reason`.
pub const BLACKLIST_ENTRIES: &str = "rta_blacklist_entries";
/// Observed rate per strategy from decayed feedback, by `strategy` and `rate`
/// (ctr, cvr). This and the next two are written at scrape time by
/// `decision::calibration::write_calibration`, not kept in the exporter.
pub const MODEL_OBSERVED_RATE: &str = "rta_model_observed_rate";
/// Mean calibrated prediction served to the users that feedback is about, by `strategy` and `rate`.
pub const MODEL_PREDICTED_RATE: &str = "rta_model_predicted_rate";
/// Logit shift applied by calibration, by `strategy` and `rate`.
pub const MODEL_CALIBRATION_SHIFT: &str = "rta_model_calibration_shift";
/// Calibration runs.
pub const MODEL_RECALIBRATIONS: &str = "rta_model_recalibrations_total";
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
/// Bytes of the index's hash tables (device and profile slots), by `table`:
/// what pre-sizing (`users.expected`) reserved, or what growth reached.
pub const INDEX_TABLE_BYTES: &str = "rta_index_table_bytes";
/// Admin requests refused for their credentials, by `reason` (missing,
/// invalid, forbidden).
pub const ADMIN_AUTH_FAILURES: &str = "rta_admin_auth_failures_total";
/// Decide calls refused for their credentials, by `api` and `reason`.
pub const CLIENT_AUTH_FAILURES: &str = "rta_client_auth_failures_total";
/// Admin mutations, by `action` (method and route) and `result` (HTTP status).
pub const ADMIN_ACTIONS: &str = "rta_admin_actions_total";
/// 1 while `/readyz` says ready, 0 while starting, catching up or draining.
pub const READY: &str = "rta_ready";
/// Connections accepted, by `listener` (grpc, media, admin).
pub const CONNECTIONS_ACCEPTED: &str = "rta_connections_accepted_total";
/// Connections open now, by `listener`.
pub const CONNECTIONS_OPEN: &str = "rta_connections_open";
/// Connections closed at accept, by `listener` and `reason` (at_capacity, not_allowed).
pub const CONNECTIONS_REFUSED: &str = "rta_connections_refused_total";
/// Connections ended, by `listener` and `reason` (client, idle, no_request,
/// tls_handshake, tls_timeout, shutdown, close_timeout, error).
pub const CONNECTIONS_CLOSED: &str = "rta_connections_closed_total";
/// Failed accepts (e.g. out of file descriptors), by `listener`.
pub const ACCEPT_ERRORS: &str = "rta_accept_errors_total";
/// Certificate reloads from disk, by `result` (ok, error).
pub const TLS_RELOADS: &str = "rta_tls_reloads_total";
/// Admin mutations refused for their token's rate, by `token` (its configured name).
pub const ADMIN_RATE_LIMITED: &str = "rta_admin_rate_limited_total";
/// Latency probes (Tencent `is_ping`) answered, by `api`.
pub const PINGS: &str = "rta_pings_total";
/// Device ids a media protocol dropped before the decision, by `api`, `field`
/// (the protocol's field name) and `reason` ([`IgnoredId`]).
pub const IGNORED_DEVICE_IDS: &str = "rta_ignored_device_ids_total";

/// Events consumed, by `topic` and `result` (applied, skipped).
pub const INGEST_EVENTS: &str = "rta_ingest_events_total";
/// Events skipped, by `topic` and `reason`.
pub const INGEST_SKIPPED: &str = "rta_ingest_skipped_total";
/// Seconds from an event's time to when it was applied, by `topic`.
pub const INGEST_FRESHNESS: &str = "rta_ingest_event_age_seconds";
/// Messages not yet consumed, by `topic` and `partition`.
pub const INGEST_LAG: &str = "rta_ingest_consumer_lag_messages";
/// Dead letters that could not be written.
pub const DEAD_LETTER_FAILURES: &str = "rta_dead_letter_failures_total";
/// Snapshots written, by `result` (ok, error).
pub const SNAPSHOTS: &str = "rta_snapshots_total";
/// Time to write a snapshot.
pub const SNAPSHOT_DURATION: &str = "rta_snapshot_duration_seconds";
/// Unix time of the last snapshot written.
pub const SNAPSHOT_LAST: &str = "rta_snapshot_last_success_timestamp_seconds";

/// Latency buckets (seconds) for [`DECIDE_DURATION`]: 1 us .. 100 ms.
const DURATION_BUCKETS: &[f64] = &[
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,
];

/// Freshness buckets (seconds): 1 ms .. 10 min.
const FRESHNESS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 600.0,
];

/// Snapshot duration buckets (seconds).
const SNAPSHOT_BUCKETS: &[f64] = &[0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Registers the failure counters at 0, so that a dashboard shows 0 rather
/// than "no data" and `increase()` sees their first failure (a counter that
/// first appears at 1 has no earlier sample to rise from).
pub fn register_failure_counters() {
    for api in ["grpc", "grpc_batch", "tencent", "oceanengine", "meituan"] {
        for outcome in [Outcome::Shed, Outcome::Deadline] {
            metrics::counter!(DECIDE_REQUESTS, "api" => api, "outcome" => outcome.label())
                .increment(0);
        }
    }
    for listener in ["grpc", "media", "admin"] {
        metrics::counter!(ACCEPT_ERRORS, "listener" => listener).increment(0);
        metrics::counter!(CONNECTIONS_REFUSED, "listener" => listener, "reason" => "at_capacity")
            .increment(0);
    }
    metrics::counter!(STRATEGY_RELOADS, "result" => "error").increment(0);
    metrics::counter!(TLS_RELOADS, "result" => "error").increment(0);
    metrics::counter!(DEAD_LETTER_FAILURES).increment(0);
}

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
                .set_buckets_for_metric(
                    Matcher::Full(INGEST_FRESHNESS.to_string()),
                    FRESHNESS_BUCKETS,
                )
                .expect("bucket list is non-empty")
                .set_buckets_for_metric(
                    Matcher::Full(SNAPSHOT_DURATION.to_string()),
                    SNAPSHOT_BUCKETS,
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
    describe_counter!(
        ADMIN_AUTH_FAILURES,
        "Admin requests refused for their credentials, by reason"
    );
    describe_counter!(ADMIN_ACTIONS, "Admin mutations, by action and result");
    describe_counter!(
        ADMIN_RATE_LIMITED,
        "Admin mutations refused for their token's rate, by token"
    );
    describe_counter!(
        CLIENT_AUTH_FAILURES,
        "Decide calls refused for their credentials, by api and reason"
    );
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
    describe_gauge!(
        INDEX_TABLE_BYTES,
        Unit::Bytes,
        "Bytes of the index's hash tables, by table (devices, profiles)"
    );
    describe_counter!(PINGS, "Latency probes answered, by api");
    describe_gauge!(READY, "1 while ready for traffic, 0 otherwise");
    describe_counter!(CONNECTIONS_ACCEPTED, "Connections accepted, by listener");
    describe_gauge!(CONNECTIONS_OPEN, "Connections open, by listener");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed at accept, by listener and reason"
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Connections ended, by listener and reason"
    );
    describe_counter!(ACCEPT_ERRORS, "Failed accepts, by listener");
    describe_counter!(TLS_RELOADS, "Certificate reloads, by result");
    describe_counter!(
        IGNORED_DEVICE_IDS,
        "Device ids dropped before the decision, by api, field and reason"
    );
    describe_counter!(
        STRATEGY_REFUSALS,
        "Audience matches refused by a later step, by strategy and reason"
    );
    describe_counter!(
        EXPERIMENT_ARMS,
        "Experiment assignments, by strategy and arm"
    );
    describe_counter!(
        BLACKLIST_REFUSALS,
        "Requests refused as blacklisted, by reason"
    );
    describe_counter!(BLACKLIST_LISTED, "Blacklist entries added, by reason");
    describe_gauge!(BLACKLIST_ENTRIES, "Unexpired blacklist entries, by reason");
    describe_counter!(MODEL_RECALIBRATIONS, "Calibration runs");
    describe_counter!(INGEST_EVENTS, "Events consumed, by topic and result");
    describe_counter!(INGEST_SKIPPED, "Events skipped, by topic and reason");
    describe_histogram!(
        INGEST_FRESHNESS,
        Unit::Seconds,
        "Event time to applied time, by topic"
    );
    describe_gauge!(
        INGEST_LAG,
        "Messages not yet consumed, by topic and partition"
    );
    describe_counter!(
        DEAD_LETTER_FAILURES,
        "Dead letters that could not be written"
    );
    describe_counter!(SNAPSHOTS, "Snapshots written, by result");
    describe_histogram!(SNAPSHOT_DURATION, Unit::Seconds, "Time to write a snapshot");
    describe_gauge!(SNAPSHOT_LAST, "Unix time of the last snapshot written");
}

/// Sets up `tracing` output; `RUST_LOG` overrides the default `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
