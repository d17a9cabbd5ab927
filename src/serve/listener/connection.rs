//! One accepted connection: the TLS handshake, HTTP served by hyper, and the
//! watch that closes it when it stays silent or idle, or the server stops.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::Kind;
use super::activity::{Activity, idle_watch};
use super::tls::TlsFiles;
use crate::telemetry::event::{ConnectionClosed, ConnectionOpened};

/// What every connection of one listener shares.
pub(super) struct Shared {
    pub(super) kind: Kind,
    pub(super) http: auto::Builder<TokioExecutor>,
    pub(super) tls: Option<Arc<TlsFiles>>,
    /// Time for the TLS handshake plus the first request head.
    pub(super) first_request: Duration,
    pub(super) idle: Duration,
}

/// How long a closing connection's in-flight requests may take before the
/// connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Serves one connection until it ends; `_slot` is its place under the
/// listener's cap, freed when this returns.
pub(super) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    app: Router,
    shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let label = shared.kind.label();
    let _open = ConnectionOpened { listener: label }.emit();
    let Some(tls) = &shared.tls else {
        let reason = http(&shared, tcp, app, shutdown).await;
        ConnectionClosed {
            listener: label,
            reason,
        }
        .emit();
        return;
    };
    let acceptor = tls.acceptor(shared.kind);
    let reason = match tokio::time::timeout(shared.first_request, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => http(&shared, stream, app, shutdown).await,
        Ok(Err(e)) => {
            // a scanner or a client with the wrong CA: debug, never a flood
            tracing::debug!(listener = label, error = %e, "TLS handshake failed");
            "tls_handshake"
        }
        Err(_) => "tls_timeout",
    };
    ConnectionClosed {
        listener: label,
        reason,
    }
    .emit();
}

/// Serves HTTP on `io`; returns why the connection ended.
async fn http<I>(
    shared: &Shared,
    io: I,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> &'static str
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let tracked = activity.clone();
    let service = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let activity = tracked.clone();
        let answer = hyper::service::Service::call(&service, req);
        async move {
            let _in_flight = activity.begin();
            answer.await
        }
    });
    let conn = shared.http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = idle_watch(&activity, shared.first_request, shared.idle);
    tokio::pin!(idle);
    let mut closing: Option<&'static str> = None;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                return match (ended, closing) {
                    (_, Some(reason)) => reason,
                    (Ok(()), None) => "client",
                    (Err(e), None) => {
                        tracing::debug!(error = %e, "connection ended with an error");
                        "error"
                    }
                };
            }
            reason = &mut idle, if closing.is_none() => {
                if reason == "no_request" {
                    // nothing was asked, so nothing is owed: an HTTP/2
                    // connection still waiting for its preface would wait
                    // out a graceful close
                    return reason;
                }
                closing = Some(reason);
                conn.as_mut().graceful_shutdown();
            }
            _ = shutdown.wait_for(|stop| *stop), if closing.is_none() => {
                closing = Some("shutdown");
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(CLOSE_GRACE), if closing.is_some() => {
                return "close_timeout";
            }
        }
    }
}
