//! What tonic's own server did at the edge of every gRPC call, now that the
//! listener serves tonic's routes itself: the call's deadline (the client's
//! `grpc-timeout`, never longer than the server's), and one status fixed:
//! a message over the size limit is `RESOURCE_EXHAUSTED` (as the gRPC spec
//! and every other gRPC server say), where tonic's decoder says `OUT_OF_RANGE`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response};
use tokio::time::Sleep;

use crate::telemetry::Outcome;
use crate::telemetry::event::DecisionAnswered;

/// `grpc-status` of OUT_OF_RANGE and RESOURCE_EXHAUSTED.
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// Wraps gRPC routes in [`GrpcEdge`] with the server's budget per call.
#[derive(Debug, Clone, Copy)]
pub struct GrpcEdgeLayer {
    /// The longest a call may take, whatever the client asks.
    pub server_budget: Duration,
}

impl<S> tower_layer::Layer<S> for GrpcEdgeLayer {
    type Service = GrpcEdge<S>;

    fn layer(&self, inner: S) -> GrpcEdge<S> {
        GrpcEdge {
            inner,
            server_budget: self.server_budget,
        }
    }
}

/// Runs each call within its deadline (past it: `DEADLINE_EXCEEDED`) and
/// names an oversized message `RESOURCE_EXHAUSTED`.
#[derive(Debug, Clone)]
pub struct GrpcEdge<S> {
    inner: S,
    server_budget: Duration,
}

impl<S, B> tower_service::Service<Request<B>> for GrpcEdge<S>
where
    S: tower_service::Service<Request<B>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let budget = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| parse_timeout(v.as_bytes()))
            .map_or(self.server_budget, |client| client.min(self.server_budget));
        // only the decision APIs count their deadline answers
        let api = match req.uri().path() {
            "/rta.v1.RtaService/Decide" => Some("grpc"),
            "/rta.v1.RtaService/BatchDecide" => Some("grpc_batch"),
            _ => None,
        };
        EdgeFuture {
            call: self.inner.call(req),
            deadline: tokio::time::sleep(budget),
            api,
            budget,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call racing its deadline.
    pub struct EdgeFuture<F> {
        #[pin]
        call: F,
        #[pin]
        deadline: Sleep,
        api: Option<&'static str>,
        budget: Duration,
    }
}

impl<F> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(Ok(mut response)) = this.call.poll(cx) {
            too_large_is_resource_exhausted(response.headers_mut());
            return Poll::Ready(Ok(response));
        }
        match this.deadline.poll(cx) {
            Poll::Ready(()) => {
                if let Some(api) = *this.api {
                    DecisionAnswered {
                        api,
                        outcome: Outcome::Deadline,
                        elapsed: *this.budget,
                    }
                    .emit();
                }
                Poll::Ready(Ok(tonic::Status::deadline_exceeded(
                    "the call's deadline passed",
                )
                .into_http::<Body>()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// tonic answers an oversized request message with a trailers-only response:
/// the status is in the headers.
fn too_large_is_resource_exhausted(headers: &mut HeaderMap) {
    if headers.get("grpc-status").map(HeaderValue::as_bytes) != Some(OUT_OF_RANGE.as_bytes()) {
        return;
    }
    let too_large = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| m.replace("%20", " ").contains("message length too large"));
    if too_large {
        headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
    }
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_unit_and_reject_the_malformed() {
        assert_eq!(parse_timeout(b"50m"), Some(Duration::from_millis(50)));
        assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"300u"), Some(Duration::from_micros(300)));
        assert_eq!(parse_timeout(b"123456789S"), None);
        assert_eq!(parse_timeout(b"m"), None);
        assert_eq!(parse_timeout(b"5x"), None);
        assert_eq!(parse_timeout(b"-5m"), None);
    }

    #[test]
    fn only_the_size_limit_status_is_renamed() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("Error,%20decoded%20message%20length%20too%20large"),
        );
        too_large_is_resource_exhausted(&mut h);
        assert_eq!(h["grpc-status"], "8");

        let mut other = HeaderMap::new();
        other.insert("grpc-status", HeaderValue::from_static("11"));
        other.insert(
            "grpc-message",
            HeaderValue::from_static("offset past the end"),
        );
        too_large_is_resource_exhausted(&mut other);
        assert_eq!(other["grpc-status"], "11");
    }
}
