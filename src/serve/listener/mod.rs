//! The accept loop under every listener (gRPC, media HTTP, admin HTTP): a cap
//! on open connections, an optional source-address allow-list, TLS, and the
//! timeouts that keep a silent or slow client from holding a socket.
//!
//! axum's and tonic's own `serve` have none of these, so each listener runs
//! this loop and hands each connection to hyper's HTTP/1.1 + HTTP/2 server
//! (HTTP/2 only for gRPC) itself. A connection past the cap is accepted and
//! closed at once, counted, so a flood of idle sockets meets a closed door
//! instead of an exhausted file-descriptor table; the other listeners, each
//! under its own cap, keep answering.

mod activity;
pub mod allow;
mod connection;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::domain::field::FieldError;
use crate::telemetry::event::{AcceptFailed, ConnectionRefused};

pub use allow::AllowList;
pub use tls::{TlsConfig, TlsError, TlsFiles};

/// Connection limits and timeouts of the three listeners (`[connections]`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Most open connections on the gRPC listener.
    pub max_grpc: usize,
    /// Most open connections on the media HTTP listener.
    pub max_media: usize,
    /// Most open connections on the admin listener.
    pub max_admin: usize,
    /// Time a new connection has for its TLS handshake and its first
    /// request head (later heads are bounded by the idle timeout).
    pub header_read_timeout_ms: u64,
    /// A connection with no request in progress for this long is closed
    /// (HTTP/2 gets a GOAWAY first).
    pub idle_timeout_seconds: u64,
    /// An admin request's whole time, its body included (then 408).
    pub admin_request_timeout_ms: u64,
    /// HTTP/2 PING to a connection silent this long (0: never).
    pub keepalive_interval_seconds: u64,
    /// How long a PING may go unanswered before the connection is closed.
    pub keepalive_timeout_seconds: u64,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max_grpc: 20_000,
            max_media: 20_000,
            max_admin: 256,
            header_read_timeout_ms: 5_000,
            idle_timeout_seconds: 300,
            admin_request_timeout_ms: 10_000,
            keepalive_interval_seconds: 30,
            keepalive_timeout_seconds: 10,
            max_streams_per_connection: 256,
        }
    }
}

impl ConnectionsConfig {
    /// Checks ranges, naming the key.
    pub fn validate(&self) -> Result<(), FieldError> {
        for (key, max) in [
            ("connections.max_grpc", self.max_grpc),
            ("connections.max_media", self.max_media),
            ("connections.max_admin", self.max_admin),
        ] {
            if !(1..=1_000_000).contains(&max) {
                return Err(FieldError::new(key, "must be 1..=1000000"));
            }
        }
        if !(1..=600_000).contains(&self.header_read_timeout_ms) {
            return Err(FieldError::new(
                "connections.header_read_timeout_ms",
                "must be 1..=600000",
            ));
        }
        if !(1..=86_400).contains(&self.idle_timeout_seconds) {
            return Err(FieldError::new(
                "connections.idle_timeout_seconds",
                "must be 1..=86400",
            ));
        }
        if !(1..=600_000).contains(&self.admin_request_timeout_ms) {
            return Err(FieldError::new(
                "connections.admin_request_timeout_ms",
                "must be 1..=600000",
            ));
        }
        if self.keepalive_interval_seconds > 0 && self.keepalive_timeout_seconds == 0 {
            return Err(FieldError::new(
                "connections.keepalive_timeout_seconds",
                "must be at least 1 when keepalive_interval_seconds is set",
            ));
        }
        if self.max_streams_per_connection == 0 {
            return Err(FieldError::new(
                "connections.max_streams_per_connection",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Lowers the three caps in proportion when together with `reserve`
    /// descriptors (Kafka, snapshots, logs) they would pass the process's
    /// open-file limit: past it, `accept` fails for every listener at once.
    /// Returns whether it lowered them.
    pub fn fit_to_fd_limit(&mut self, fd_limit: u64, reserve: u64) -> bool {
        let total = (self.max_grpc + self.max_media + self.max_admin) as u64;
        let room = fd_limit.saturating_sub(reserve).max(3);
        if total <= room {
            return false;
        }
        let scale = |n: usize| ((n as u64 * room) / total).max(1) as usize;
        self.max_grpc = scale(self.max_grpc);
        self.max_media = scale(self.max_media);
        self.max_admin = scale(self.max_admin);
        true
    }
}

/// Which listener, for metric labels and protocol choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// gRPC `Decide`: HTTP/2 only.
    Grpc,
    /// Media protocols: HTTP/1.1 and h2c.
    Media,
    /// Admin API and `/metrics`.
    Admin,
}

impl Kind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Media => "media",
            Self::Admin => "admin",
        }
    }
}

/// A bound listener with its policy, not yet serving.
pub struct Listener {
    kind: Kind,
    tcp: TcpListener,
    max_connections: usize,
    shared: Arc<connection::Shared>,
    allow: Option<Arc<AllowList>>,
}

impl Listener {
    /// Wraps a bound socket with the limits of its kind; `tls` turns TLS on,
    /// `allow` restricts who may connect.
    pub fn new(
        kind: Kind,
        tcp: TcpListener,
        limits: &ConnectionsConfig,
        tls: Option<Arc<TlsFiles>>,
        allow: Option<Arc<AllowList>>,
    ) -> Self {
        let max_connections = match kind {
            Kind::Grpc => limits.max_grpc,
            Kind::Media => limits.max_media,
            Kind::Admin => limits.max_admin,
        };
        let mut http = auto::Builder::new(TokioExecutor::new());
        if kind == Kind::Grpc {
            http = http.http2_only();
        }
        // hyper's own header timer also runs while a keep-alive connection
        // waits for its next request, which would cut every idle HTTP/1.1
        // connection at the header timeout; the connection's watch bounds
        // the first head by `header_read_timeout_ms` and any later wait by
        // `idle_timeout_seconds` instead
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true);
        let keepalive = (limits.keepalive_interval_seconds > 0)
            .then(|| Duration::from_secs(limits.keepalive_interval_seconds));
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_streams_per_connection)
            .max_header_list_size(16 * 1024)
            .keep_alive_interval(keepalive)
            .keep_alive_timeout(Duration::from_secs(limits.keepalive_timeout_seconds.max(1)));
        Self {
            kind,
            tcp,
            max_connections,
            shared: Arc::new(connection::Shared {
                kind,
                http,
                tls,
                first_request: Duration::from_millis(limits.header_read_timeout_ms),
                idle: Duration::from_secs(limits.idle_timeout_seconds),
            }),
            allow,
        }
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves `app` until `shutdown` turns true, then closes every connection
    /// gracefully (in-flight requests finish) and returns once they are
    /// closed or `grace` has passed.
    pub async fn serve(self, app: Router, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let label = self.kind.label();
        loop {
            let accepted = tokio::select! {
                accepted = self.tcp.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning on
                    // an accept that fails until a descriptor frees
                    AcceptFailed {
                        listener: label,
                        error: &error,
                    }
                    .emit();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            if let Some(allow) = &self.allow
                && !allow.contains(peer.ip())
            {
                ConnectionRefused {
                    listener: label,
                    reason: "not_allowed",
                }
                .emit();
                continue;
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                ConnectionRefused {
                    listener: label,
                    reason: "at_capacity",
                }
                .emit();
                continue;
            };
            if let Err(e) = tcp.set_nodelay(true) {
                // answers are a few small frames: Nagle plus the client's
                // delayed ACK would hold them for milliseconds
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            tokio::spawn(connection::serve(
                self.shared.clone(),
                tcp,
                app.clone(),
                shutdown.clone(),
                slot,
            ));
        }
        drop(self.tcp);
        // every connection holds a slot until it is closed
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(grace, slots.acquire_many(all)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_past_the_open_file_limit_are_lowered_in_proportion() {
        let mut c = ConnectionsConfig::default();
        assert!(!c.fit_to_fd_limit(1_048_576, 256), "room for all");
        assert_eq!(c.max_media, 20_000);
        assert!(c.fit_to_fd_limit(1_024, 256));
        assert!(c.max_grpc + c.max_media + c.max_admin <= 768);
        assert_eq!(c.max_grpc, c.max_media);
        assert!(c.max_admin >= 1 && c.max_admin < c.max_media);
        // a limit below the reserve still leaves every listener a connection
        let mut tiny = ConnectionsConfig::default();
        tiny.fit_to_fd_limit(10, 256);
        assert!(tiny.max_grpc >= 1 && tiny.max_media >= 1 && tiny.max_admin >= 1);
    }

    #[test]
    fn out_of_range_limits_name_their_key() {
        let bad = ConnectionsConfig {
            max_media: 0,
            ..ConnectionsConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("connections.max_media")
        );
        let bad = ConnectionsConfig {
            keepalive_timeout_seconds: 0,
            ..ConnectionsConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
