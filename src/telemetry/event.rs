//! One type per observable event. Its `emit()` writes the counters (and the
//! log line, where the event has one) with fixed labels, so a call site is one
//! line and nobody has to remember which metric goes with which event.
//! Device and user ids are never fields here: they must not reach a label or
//! an info-level log.

use std::time::Duration;

use std::sync::OnceLock;

use crate::telemetry::repeat::RepeatFilter;
use crate::telemetry::throttle::LogThrottle;
use crate::telemetry::{self, IgnoredId, Outcome};

/// A request decided (or answered by default) on one API.
#[derive(Debug, Clone, Copy)]
pub struct DecisionAnswered {
    /// The API it came in on (`grpc`, `grpc_batch`, or a media: `tencent`, `tencent_test`, `oceanengine`, `meituan`, `meituan_test`).
    pub api: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// Server time from arrival to the answer.
    pub elapsed: Duration,
}

impl DecisionAnswered {
    /// Counts the decision and records its server time.
    pub fn emit(self) {
        metrics::counter!(telemetry::DECIDE_REQUESTS, "api" => self.api, "outcome" => self.outcome.label())
            .increment(1);
        metrics::histogram!(telemetry::DECIDE_DURATION, "api" => self.api)
            .record(self.elapsed.as_secs_f64());
    }
}

/// A request refused as invalid, by the field at fault.
#[derive(Debug, Clone, Copy)]
pub struct RequestRejected {
    /// The API.
    pub api: &'static str,
    /// The field's name without indexes.
    pub field: &'static str,
}

impl RequestRejected {
    /// Counts the rejection.
    pub fn emit(self) {
        metrics::counter!(telemetry::INVALID_REQUESTS, "api" => self.api, "field" => self.field)
            .increment(1);
    }
}

/// A device id a media protocol dropped before deciding.
#[derive(Debug, Clone, Copy)]
pub struct DeviceIdIgnored {
    /// The API.
    pub api: &'static str,
    /// The protocol field it came in.
    pub field: &'static str,
    /// Why it was dropped.
    pub reason: IgnoredId,
}

impl DeviceIdIgnored {
    /// Counts the dropped id.
    pub fn emit(self) {
        metrics::counter!(telemetry::IGNORED_DEVICE_IDS, "api" => self.api, "field" => self.field, "reason" => self.reason.label())
            .increment(1);
    }
}

/// A device or user put on the anti-cheat blacklist (or its entry renewed).
#[derive(Debug, Clone, Copy)]
pub struct EntryBlacklisted {
    /// The reason label of the entry (`operator`, `request_rate`, ...).
    pub reason: &'static str,
}

impl EntryBlacklisted {
    /// Counts the listing.
    pub fn emit(self) {
        metrics::counter!(telemetry::BLACKLIST_LISTED, "reason" => self.reason).increment(1);
        tracing::debug!(reason = self.reason, "blacklist entry added");
    }
}

/// An ingested event skipped as invalid.
#[derive(Debug, Clone)]
pub struct EventSkipped<'a> {
    /// The topic.
    pub topic: &'a str,
    /// Its partition and offset.
    pub position: (i32, i64),
    /// The skip reason label.
    pub reason: &'static str,
}

impl EventSkipped<'_> {
    /// Counts the skip and logs where it was.
    pub fn emit(self) {
        metrics::counter!(telemetry::INGEST_SKIPPED, "topic" => self.topic.to_string(), "reason" => self.reason)
            .increment(1);
        let (partition, offset) = self.position;
        tracing::warn!(topic = %self.topic, partition, offset, reason = self.reason, "skipping event");
    }
}

/// A snapshot of the index written.
#[derive(Debug, Clone)]
pub struct SnapshotWritten<'a> {
    /// Where.
    pub path: &'a std::path::Path,
    /// Users it holds.
    pub users: u64,
    /// How long writing took, seconds.
    pub seconds: f64,
    /// When it finished, Unix seconds.
    pub at_unix_seconds: f64,
}

impl SnapshotWritten<'_> {
    /// Counts it, records its duration and time, and logs it.
    pub fn emit(self) {
        metrics::counter!(telemetry::SNAPSHOTS, "result" => "ok").increment(1);
        metrics::histogram!(telemetry::SNAPSHOT_DURATION).record(self.seconds);
        metrics::gauge!(telemetry::SNAPSHOT_LAST).set(self.at_unix_seconds);
        tracing::info!(path = %self.path.display(), users = self.users, seconds = self.seconds, "snapshot written");
    }
}

/// A snapshot that could not be written.
#[derive(Debug)]
pub struct SnapshotFailed<'a> {
    /// Why.
    pub error: &'a dyn std::error::Error,
}

impl SnapshotFailed<'_> {
    /// Counts and logs the failure.
    pub fn emit(self) {
        metrics::counter!(telemetry::SNAPSHOTS, "result" => "error").increment(1);
        tracing::error!(error = %self.error, "snapshot failed; offsets not committed");
    }
}

/// A strategy set reloaded and swapped in.
#[derive(Debug, Clone, Copy)]
pub struct StrategiesReloaded<'a> {
    /// The new set's version.
    pub version: &'a str,
    /// Its live strategies.
    pub strategies: usize,
}

impl StrategiesReloaded<'_> {
    /// Counts and logs the reload.
    pub fn emit(self) {
        metrics::counter!(telemetry::STRATEGY_RELOADS, "result" => "ok").increment(1);
        tracing::info!(version = %self.version, strategies = self.strategies, "strategies reloaded");
    }
}

/// A strategy reload rejected; the previous set keeps serving.
#[derive(Debug)]
pub struct StrategyReloadRejected<'a> {
    /// Why.
    pub error: &'a dyn std::error::Error,
}

impl StrategyReloadRejected<'_> {
    /// Counts and logs the rejection.
    pub fn emit(self) {
        metrics::counter!(telemetry::STRATEGY_RELOADS, "result" => "error").increment(1);
        tracing::warn!(error = %self.error, "strategy reload rejected; the previous set keeps serving");
    }
}

/// An admin request refused for its credentials. The token itself is never
/// a field: it must not reach a log.
#[derive(Debug, Clone, Copy)]
pub struct AdminAuthFailed<'a> {
    /// Why (`missing`, `invalid`, `forbidden`).
    pub reason: &'static str,
    /// The route asked for.
    pub route: &'a str,
}

impl AdminAuthFailed<'_> {
    /// Counts the refusal; logged at debug only, so that a flood of
    /// anonymous requests cannot flood the log.
    pub fn emit(self) {
        metrics::counter!(telemetry::ADMIN_AUTH_FAILURES, "reason" => self.reason).increment(1);
        tracing::debug!(reason = self.reason, route = %self.route, "admin request refused");
    }
}

/// An admin mutation made, with who made it: the audit trail.
#[derive(Debug, Clone)]
pub struct AdminActionAudited<'a> {
    /// The token's configured name.
    pub token: &'a str,
    /// Method and route, e.g. `POST /blacklist`.
    pub action: String,
    /// What it acted on, when it names something: a kind and a fingerprint,
    /// never a device or user id.
    pub target: Option<&'a str>,
    /// The HTTP status answered.
    pub result: u16,
}

impl AdminActionAudited<'_> {
    /// Counts the action and writes its audit line; the same line again
    /// within 10 s is counted, not written, and the next one written says how
    /// many it held (`repeated`).
    pub fn emit(self) {
        static REPEATS: OnceLock<RepeatFilter> = OnceLock::new();
        let repeats = REPEATS.get_or_init(|| RepeatFilter::new(Duration::from_secs(10)));
        let key = (self.token, self.action.as_str(), self.target, self.result);
        if let Some(repeated) = repeats.admit(key, std::time::Instant::now()) {
            tracing::info!(
                token = %self.token,
                action = %self.action,
                target = self.target.unwrap_or("-"),
                result = self.result,
                repeated,
                "admin audit"
            );
        }
        metrics::counter!(telemetry::ADMIN_ACTIONS, "action" => self.action, "result" => self.result.to_string())
            .increment(1);
    }
}

/// An admin mutation refused because its token's rate is spent.
#[derive(Debug, Clone, Copy)]
pub struct AdminRateLimited<'a> {
    /// The token's configured name (a configured, low-cardinality label).
    pub token: &'a str,
}

impl AdminRateLimited<'_> {
    /// Counts it; a warning at most once every 10 s.
    pub fn emit(self) {
        static LOG: LogThrottle = LogThrottle::new(Duration::from_secs(10));
        metrics::counter!(telemetry::ADMIN_RATE_LIMITED, "token" => self.token.to_string())
            .increment(1);
        if let Some(held) = LOG.admit() {
            tracing::warn!(token = %self.token, limited_since_last_line = held, "admin mutations rate-limited");
        }
    }
}

/// A `Decide` call refused for its credentials (never with the token).
#[derive(Debug, Clone, Copy)]
pub struct ClientAuthFailed {
    /// The API (`grpc`).
    pub api: &'static str,
    /// Why (`missing`, `invalid`).
    pub reason: &'static str,
}

impl ClientAuthFailed {
    /// Counts the refusal (no log line: a flood of them must not flood the log).
    pub fn emit(self) {
        metrics::counter!(telemetry::CLIENT_AUTH_FAILURES, "api" => self.api, "reason" => self.reason)
            .increment(1);
    }
}

/// A connection accepted on a listener; the guard it returns counts it open
/// until the connection ends.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionOpened {
    /// The listener (`grpc`, `media`, `admin`).
    pub listener: &'static str,
}

/// Keeps a connection counted in `rta_connections_open` while it lives.
#[derive(Debug)]
pub struct OpenConnection {
    listener: &'static str,
}

impl ConnectionOpened {
    /// Counts the connection accepted and open.
    #[must_use = "the connection counts as open while the guard lives"]
    pub fn emit(self) -> OpenConnection {
        metrics::counter!(telemetry::CONNECTIONS_ACCEPTED, "listener" => self.listener)
            .increment(1);
        metrics::gauge!(telemetry::CONNECTIONS_OPEN, "listener" => self.listener).increment(1.0);
        OpenConnection {
            listener: self.listener,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(telemetry::CONNECTIONS_OPEN, "listener" => self.listener).decrement(1.0);
    }
}

/// A connection closed at accept: the listener at its cap, or a source
/// address outside the allow-list.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionRefused {
    /// The listener.
    pub listener: &'static str,
    /// `at_capacity` or `not_allowed`.
    pub reason: &'static str,
}

impl ConnectionRefused {
    /// Counts it; a warning at most once every 10 s says how many.
    pub fn emit(self) {
        static LOG: LogThrottle = LogThrottle::new(Duration::from_secs(10));
        metrics::counter!(telemetry::CONNECTIONS_REFUSED, "listener" => self.listener, "reason" => self.reason)
            .increment(1);
        if let Some(held) = LOG.admit() {
            tracing::warn!(
                listener = self.listener,
                reason = self.reason,
                refused_since_last_line = held,
                "connection closed at accept"
            );
        }
    }
}

/// A connection ended, and why.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionClosed {
    /// The listener.
    pub listener: &'static str,
    /// Why (see [`telemetry::CONNECTIONS_CLOSED`]).
    pub reason: &'static str,
}

impl ConnectionClosed {
    /// Counts it.
    pub fn emit(self) {
        metrics::counter!(telemetry::CONNECTIONS_CLOSED, "listener" => self.listener, "reason" => self.reason)
            .increment(1);
    }
}

/// `accept` failed (out of file descriptors, most often).
#[derive(Debug)]
pub struct AcceptFailed<'a> {
    /// The listener.
    pub listener: &'static str,
    /// The error.
    pub error: &'a std::io::Error,
}

impl AcceptFailed<'_> {
    /// Counts it; an error line at most once a second.
    pub fn emit(self) {
        static LOG: LogThrottle = LogThrottle::new(Duration::from_secs(1));
        metrics::counter!(telemetry::ACCEPT_ERRORS, "listener" => self.listener).increment(1);
        if let Some(held) = LOG.admit() {
            tracing::error!(
                listener = self.listener,
                error = %self.error,
                failed_since_last_line = held,
                "accept failed"
            );
        }
    }
}

/// New certificates loaded from disk, or a failed attempt (the old keep serving).
#[derive(Debug)]
pub struct TlsReloaded<'a> {
    /// The error, when the new files were refused.
    pub error: Option<&'a dyn std::error::Error>,
}

impl TlsReloaded<'_> {
    /// Counts and logs it.
    pub fn emit(self) {
        match self.error {
            None => {
                metrics::counter!(telemetry::TLS_RELOADS, "result" => "ok").increment(1);
                tracing::info!("TLS certificates reloaded");
            }
            Some(error) => {
                metrics::counter!(telemetry::TLS_RELOADS, "result" => "error").increment(1);
                tracing::warn!(%error, "TLS certificates not reloaded; the previous ones keep serving");
            }
        }
    }
}
