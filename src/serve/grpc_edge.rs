//! What tonic's own server did at the edge of every gRPC call, now that the
//! listener serves tonic's routes itself: the call's deadline (the client's
//! `grpc-timeout`, never longer than the server's), and one status fixed:
//! a message over the size limit is `RESOURCE_EXHAUSTED` (as the gRPC spec
//! and every other gRPC server say), where tonic's decoder says `OUT_OF_RANGE`.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// `grpc-status` of OUT_OF_RANGE and RESOURCE_EXHAUSTED.
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// Runs the call within its deadline; past it, answers `DEADLINE_EXCEEDED`.
pub async fn edge(State(server_budget): State<Duration>, req: Request, next: Next) -> Response {
    let budget = req
        .headers()
        .get("grpc-timeout")
        .and_then(|v| parse_timeout(v.as_bytes()))
        .map_or(server_budget, |client| client.min(server_budget));
    match tokio::time::timeout(budget, next.run(req)).await {
        Ok(mut response) => {
            too_large_is_resource_exhausted(response.headers_mut());
            response
        }
        Err(_) => tonic::Status::deadline_exceeded("the call's deadline passed")
            .into_http::<axum::body::Body>()
            .into_response(),
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
