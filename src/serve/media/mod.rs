//! The media adapter layer: one endpoint, written once, in front of every
//! media's own HTTP/protobuf protocol (Tencent's recommended architecture:
//! protocol adapter -> one common decision model).
//!
//! What every media endpoint does lives here: the admission layer (load
//! shedding, the deadline and the fail-open/closed default answer), body
//! limits (413 straight from `Content-Length`), pings, test traffic on the
//! uncounted path, doubtful-id reporting, cache-time bounds and metrics
//! labelled by media. A [`MediaProtocol`] only decodes its request,
//! translates it to a [`Translated`] request and encodes the answer: adding
//! a media is one file of translation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::InvalidRequest;
use super::error::{ApiError, ErrorCode};
use crate::decision::{Decision, DecisionEngine, DecisionRequest};
use crate::domain::ids::DeviceKey;
use crate::domain::media::{Media, MediaScope};
use crate::domain::os::Os;
use crate::telemetry::event::{DecisionAnswered, DeviceIdIgnored};
use crate::telemetry::{self, IgnoredId, Outcome};

mod config;
pub mod shape;

pub use config::{FailMode, MediaConfig, MediaFields, SEVEN_DAYS};

/// The content type of answers (and of the requests media send).
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// What kind of call a decoded request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A latency probe: answered at once, never decided.
    Ping,
    /// Test traffic: decided on the uncounted path (never an opportunity).
    Test,
    /// A real ad opportunity.
    Live,
}

/// A media request as the decision sees it.
#[derive(Debug, Default)]
pub struct Translated {
    /// The usable device keys, the media's preferred kind first.
    pub devices: Vec<DeviceKey>,
    /// Ids the media flagged as doubtful (not decided on, reported to the
    /// doubtful-id rule).
    pub flagged: Vec<DeviceKey>,
    /// The device's platform.
    pub os: Os,
    /// The media's experiment ids.
    pub experiments: Vec<u64>,
    /// The media's strategy ids the request asks about (Ocean Engine's
    /// `rta_ids`); empty = every strategy the media knows.
    pub asked: Vec<i64>,
}

/// What the endpoint hands an adapter to encode an answer with.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    /// Server time so far.
    pub elapsed: Duration,
    /// The cache time to send, within the configured bounds; `None` = send none.
    pub cache_seconds: Option<u32>,
}

impl Reply {
    /// `processing_time_ms` as media protocols carry it.
    pub fn millis(&self) -> i32 {
        i32::try_from(self.elapsed.as_millis()).unwrap_or(i32::MAX)
    }
}

/// One media's protocol: decode, translate, encode. Nothing else.
pub trait MediaProtocol: Send + Sync + Sized + 'static {
    /// The media.
    const MEDIA: Media;
    /// The `api` label of its test traffic.
    const TEST_API: &'static str;
    /// Its configuration's protocol part.
    type Fields: MediaFields;
    /// Its decoded request.
    type Request: Send + 'static;

    /// The adapter for a configuration section.
    fn new(cfg: &MediaConfig<Self::Fields>) -> Self;
    /// Decodes a body, bounding its shape first; the error names the field.
    fn decode(&self, body: &[u8]) -> Result<Self::Request, InvalidRequest>;
    /// What kind of call it is.
    fn call(&self, req: &Self::Request) -> Call;
    /// The request as the decision sees it; ids dropped on the way are
    /// counted under `api`. An error is answered 400.
    fn translate(
        &self,
        req: &Self::Request,
        api: &'static str,
    ) -> Result<Translated, InvalidRequest>;
    /// The answer to a ping.
    fn ping(&self, req: &Self::Request) -> Vec<u8>;
    /// The answer to a decision.
    fn answer(&self, req: &Self::Request, decision: &Decision<&str>, reply: Reply) -> Vec<u8>;
    /// The default answer (shed or late): `take` per the configured fail
    /// mode; `req` is `None` when the body was not read yet.
    fn default_answer(&self, req: Option<&Self::Request>, take: bool, reply: Reply) -> Vec<u8>;
}

/// The endpoint's router: `POST <path>` behind its admission layer (load
/// shedding and deadline), with the configured body limit. Empty when disabled.
pub fn router<P: MediaProtocol>(
    engine: Arc<DecisionEngine>,
    cfg: &MediaConfig<P::Fields>,
) -> Router {
    if !cfg.enabled {
        return Router::new();
    }
    let endpoint = Arc::new(Endpoint {
        protocol: P::new(cfg),
        engine,
        api: <P::Fields as MediaFields>::SECTION,
        deadline: Duration::from_millis(cfg.deadline_ms),
        max_body_bytes: cfg.max_body_bytes,
        default_take: cfg.default_answer == FailMode::FailOpen,
        min_cache_seconds: cfg.min_cache_seconds,
        max_cache_seconds: cfg.max_cache_seconds,
        in_flight: tokio::sync::Semaphore::new(cfg.max_in_flight),
    });
    Router::new()
        .route(&cfg.path, post(answer::<P>))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .route_layer(middleware::from_fn_with_state(endpoint.clone(), admit::<P>))
        .with_state(endpoint)
}

/// One media endpoint: its adapter, settings and what it answers from.
struct Endpoint<P> {
    protocol: P,
    engine: Arc<DecisionEngine>,
    api: &'static str,
    deadline: Duration,
    max_body_bytes: usize,
    default_take: bool,
    min_cache_seconds: u32,
    max_cache_seconds: u32,
    in_flight: tokio::sync::Semaphore,
}

/// When the request reached the endpoint (set by [`admit`]).
#[derive(Debug, Clone, Copy)]
struct Arrival(Instant);

impl<P: MediaProtocol> Endpoint<P> {
    /// The configured default answer, counted as `outcome` (shed or deadline).
    fn default_response(
        &self,
        arrival: Instant,
        outcome: Outcome,
        req: Option<&P::Request>,
        api: &'static str,
    ) -> Response {
        let elapsed = arrival.elapsed();
        DecisionAnswered {
            api,
            outcome,
            elapsed,
        }
        .emit();
        let reply = Reply {
            elapsed,
            cache_seconds: None,
        };
        protobuf(self.protocol.default_answer(req, self.default_take, reply))
    }

    /// The decision's cache hint within the configured bounds.
    fn cache_time(&self, hint: u32) -> Option<u32> {
        bounded_cache(hint, self.min_cache_seconds, self.max_cache_seconds)
    }
}

/// A cache hint within `min ..= max`; none for 0 (an answer that must not
/// be cached, e.g. for placeholder ids, is never given a floor).
fn bounded_cache(hint: u32, min: u32, max: u32) -> Option<u32> {
    (hint > 0).then(|| hint.clamp(min, max))
}

/// The admission layer in front of the handler (the shape of linkerd's inbound
/// stack: limits are layers, not code inside the service). A request that finds
/// `max_in_flight` requests in progress is shed at once with the default answer;
/// an admitted one must be answered within the deadline, counted from here, or it
/// gets the default answer (the handler is dropped; decisions themselves take
/// microseconds, so what runs out of time is reading a slow body or a queue).
async fn admit<P: MediaProtocol>(
    State(ep): State<Arc<Endpoint<P>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let arrival = Instant::now();
    let http1 = req.version() <= axum::http::Version::HTTP_11;
    let Ok(_permit) = ep.in_flight.try_acquire() else {
        return closing(
            ep.default_response(arrival, Outcome::Shed, None, ep.api),
            http1,
        );
    };
    req.extensions_mut().insert(Arrival(arrival));
    match tokio::time::timeout(ep.deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => closing(
            ep.default_response(arrival, Outcome::Deadline, None, ep.api),
            http1,
        ),
    }
}

/// An answer given before the body was read: on HTTP/1.1 the unread body
/// leaves the connection unusable, so say it closes (else the client's next
/// request on it meets a reset). HTTP/2 streams are independent: nothing to say.
fn closing(mut response: Response, http1: bool) -> Response {
    if http1 {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// `POST <path>`.
async fn answer<P: MediaProtocol>(State(ep): State<Arc<Endpoint<P>>>, req: Request) -> Response {
    let arrival = req
        .extensions()
        .get::<Arrival>()
        .map_or_else(Instant::now, |a| a.0);
    // a body announced over the limit is refused from its header, before
    // waiting for bytes that would only be thrown away
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > ep.max_body_bytes as u64) {
        return refused(
            ep.api,
            "body_size",
            ErrorCode::TooLarge,
            format!("Content-Length over the {}-byte limit", ep.max_body_bytes),
        );
    }
    let body = match Bytes::from_request(req, &()).await {
        Ok(b) => b,
        Err(rejection) => return body_rejected(ep.api, &rejection),
    };
    let req = match ep.protocol.decode(&body) {
        Ok(r) => r,
        Err(e) => return invalid(ep.api, e),
    };
    let call = ep.protocol.call(&req);
    let api = match call {
        Call::Ping => {
            metrics::counter!(telemetry::PINGS, "api" => ep.api).increment(1);
            return protobuf(ep.protocol.ping(&req));
        }
        Call::Test => P::TEST_API,
        Call::Live => ep.api,
    };
    if arrival.elapsed() >= ep.deadline {
        // queued past the budget: answering fast beats deciding late
        return ep.default_response(arrival, Outcome::Deadline, Some(&req), api);
    }
    let translated = match ep.protocol.translate(&req, api) {
        Ok(t) => t,
        Err(e) => return invalid(ep.api, e),
    };
    let dreq = DecisionRequest {
        devices: &translated.devices,
        os: translated.os,
        experiments: &translated.experiments,
        only_strategies: &[],
        media: Some(MediaScope {
            media: P::MEDIA,
            ids: &translated.asked,
        }),
    };
    let respond = |decision: &Decision<&str>| {
        let elapsed = arrival.elapsed();
        DecisionAnswered {
            api,
            outcome: decision.outcome,
            elapsed,
        }
        .emit();
        let reply = Reply {
            elapsed,
            cache_seconds: ep.cache_time(decision.cache_seconds),
        };
        ep.protocol.answer(&req, decision, reply)
    };
    let body = if call == Call::Test {
        // the uncounted path: test traffic is never a real opportunity
        ep.engine.decide_uncounted_with(&dreq, respond)
    } else {
        if !translated.flagged.is_empty() {
            ep.engine.flag_doubtful_ids(&translated.flagged);
        }
        ep.engine.decide_with(&dreq, respond)
    };
    protobuf(body)
}

fn invalid(api: &'static str, e: InvalidRequest) -> Response {
    e.count(api);
    ApiError::from(e).into_plain_response()
}

fn body_rejected(api: &'static str, rejection: &BytesRejection) -> Response {
    let (field, code) = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ("body_size", ErrorCode::TooLarge)
    } else {
        ("body", ErrorCode::InvalidArgument)
    };
    refused(api, field, code, rejection.body_text())
}

/// A request refused before it was decoded: counted by `field`, answered
/// with `code`'s status and the message as text.
fn refused(api: &'static str, field: &'static str, code: ErrorCode, message: String) -> Response {
    let invalid = InvalidRequest::new(field, field, message);
    invalid.count(api);
    ApiError {
        code,
        ..ApiError::from(invalid)
    }
    .into_plain_response()
}

fn protobuf(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], Bytes::from(body)).into_response()
}

/// A bid factor clamped to a media's `(min, max)`; 1.0 (neutral) for a
/// value that is not a number.
pub fn clamp_factor(bid_factor: f64, (min, max): (f64, f64)) -> f64 {
    if !bid_factor.is_finite() {
        return 1.0;
    }
    bid_factor.clamp(min, max)
}

/// Counts a device id a request carried but the decision will not use.
pub fn ignore(api: &'static str, field: &'static str, reason: IgnoredId) {
    DeviceIdIgnored { api, field, reason }.emit();
}

/// Reads an md5-hex id field the media sent: empty = absent, malformed =
/// ignored and counted under `field`.
pub fn md5_key(api: &'static str, field: &'static str, value: &str) -> Option<DeviceKey> {
    if value.is_empty() {
        return None;
    }
    match DeviceKey::from_md5_hex(value) {
        Ok(key) => Some(key),
        Err(_) => {
            ignore(api, field, IgnoredId::Malformed);
            None
        }
    }
}

/// Hashes a raw id field with the media's convention for `kind`: empty =
/// absent, too long = ignored and counted under `field`.
pub fn raw_key(
    api: &'static str,
    field: &'static str,
    kind: crate::domain::ids::DeviceIdKind,
    value: &str,
) -> Option<DeviceKey> {
    if value.is_empty() {
        return None;
    }
    match DeviceKey::from_raw(kind, value) {
        Ok(key) => Some(key),
        Err(_) => {
            ignore(api, field, IgnoredId::Malformed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_hints_are_clamped_but_a_zero_hint_sends_no_cache_time() {
        assert_eq!(bounded_cache(300, 900, 1200), Some(900));
        assert_eq!(bounded_cache(1800, 900, 1200), Some(1200));
        assert_eq!(bounded_cache(1000, 900, 1200), Some(1000));
        assert_eq!(bounded_cache(0, 900, 1200), None);
    }

    #[test]
    fn factors_are_clamped_and_a_non_number_is_neutral() {
        assert_eq!(clamp_factor(1.8, (0.2, 5.0)), 1.8);
        assert_eq!(clamp_factor(0.05, (0.5, 2.0)), 0.5);
        assert_eq!(clamp_factor(9.0, (0.5, 2.0)), 2.0);
        assert_eq!(clamp_factor(f64::NAN, (0.5, 2.0)), 1.0);
    }
}
