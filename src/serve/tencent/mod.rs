//! Tencent Ads RTA over HTTP/protobuf: `POST /rta/tencent`, wire-compatible with
//! the media's own `tencent.ad.rta` protocol (proto2), so that Tencent's RTA can
//! call the engine without an adapter. Same decision path as the gRPC API
//! ([`DecisionEngine::decide`]); only the wire format differs.
//!
//! What each request gets (pings, decisions, test traffic on the uncounted
//! path, the default answer when shed or late, 400/413), how device ids are
//! read (the cached id first, doubtful ids dropped, a malformed id ignored and
//! counted rather than failing the request) and why: `docs/tencent.md`.

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
use md5::{Digest, Md5};
use prost::Message;
use tokio::sync::Semaphore;

use super::InvalidRequest;
use super::error::{ApiError, ErrorCode};
use super::limits::MAX_EXPERIMENTS;
mod config;
pub mod shape;

use crate::decision::{Decision, DecisionEngine, DecisionRequest};
use crate::domain::ids::{DeviceIdKind as Kind, DeviceKey};
use crate::strategy::{BID_FACTOR_RANGE, Os};
use crate::telemetry::event::{DecisionAnswered, DeviceIdIgnored};
use crate::telemetry::{self, IgnoredId, Outcome};
pub use config::{FactorField, FailMode, TENCENT_MAX_CACHE_SECONDS, TencentConfig};

/// Generated types of the `tencent.ad.rta` protocol (proto/tencent/rta.proto).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("tencent.ad.rta");
}

use pb::rta_request::device::{CacheDeviceIdType, DeviceIdTag};
use pb::rta_request::{Device, OperatingSystem};

/// Where the endpoint is served on the HTTP port.
pub const PATH: &str = "/rta/tencent";

/// The content type of answers.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// `RtaResponse.code` values. The media reads 0 as "take" and anything else as
/// "refuse all"; distinct non-zero codes tell the media's debugging tools why.
pub mod code {
    /// Take the traffic (restricted to `out_target_id` when any are given).
    pub const TAKE: u32 = 0;
    /// No strategy matched the device.
    pub const NO_MATCH: u32 = 1;
    /// Not decided (shed or out of time) and the default answer is `fail_closed`.
    pub const DEFAULT_REFUSE: u32 = 2;
}

/// The `api` label of live traffic.
pub const API: &str = "tencent";
/// The `api` label of `is_test` traffic.
pub const API_TEST: &str = "tencent_test";

/// Longest `dsp_tag_str` the media accepts, bytes.
pub const MAX_DSP_TAG: usize = 20;

/// CAID entries looked at per request (each gives at most two keys), so that one
/// request resolves at most 5 + 2 * 4 device keys.
pub const MAX_QAID_INFOS: usize = 4;

/// The endpoint's router: `POST /rta/tencent` behind its admission layer (load
/// shedding and deadline), with the configured body limit. Empty when disabled.
pub fn router(engine: Arc<DecisionEngine>, cfg: &TencentConfig) -> Router {
    if !cfg.enabled {
        return Router::new();
    }
    let endpoint = Arc::new(Endpoint::new(engine, cfg));
    Router::new()
        .route(PATH, post(answer))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .route_layer(middleware::from_fn_with_state(endpoint.clone(), admit))
        .with_state(endpoint)
}

/// The endpoint's settings and what it answers from.
struct Endpoint {
    engine: Arc<DecisionEngine>,
    deadline: Duration,
    max_body_bytes: usize,
    default_answer: FailMode,
    min_cache_seconds: u32,
    max_cache_seconds: u32,
    user_weight_factor: bool,
    cpc_factor: bool,
    in_flight: Semaphore,
}

/// When the request reached the endpoint (set by [`admit`]).
#[derive(Debug, Clone, Copy)]
struct Arrival(Instant);

impl Endpoint {
    fn new(engine: Arc<DecisionEngine>, cfg: &TencentConfig) -> Self {
        Self {
            engine,
            deadline: Duration::from_millis(cfg.deadline_ms),
            max_body_bytes: cfg.max_body_bytes,
            default_answer: cfg.default_answer,
            min_cache_seconds: cfg.min_cache_seconds,
            max_cache_seconds: cfg.max_cache_seconds,
            user_weight_factor: cfg
                .bid_factor_fields
                .contains(&FactorField::UserWeightFactor),
            cpc_factor: cfg.bid_factor_fields.contains(&FactorField::CpcFactor),
            in_flight: Semaphore::new(cfg.max_in_flight),
        }
    }

    /// The configured default answer, counted as `reason` (shed or deadline).
    fn default_response(
        &self,
        arrival: Instant,
        outcome: Outcome,
        request_id: Option<String>,
        api: &'static str,
    ) -> Response {
        let code = match self.default_answer {
            FailMode::FailOpen => code::TAKE,
            FailMode::FailClosed => code::DEFAULT_REFUSE,
        };
        let elapsed = arrival.elapsed();
        DecisionAnswered {
            api,
            outcome,
            elapsed,
        }
        .emit();
        protobuf(&pb::RtaResponse {
            request_id,
            code: Some(code),
            processing_time_ms: Some(millis(elapsed)),
            ..Default::default()
        })
    }

    /// The answer to a decision.
    fn to_response(
        &self,
        request_id: Option<String>,
        d: &Decision<&str>,
        elapsed: Duration,
    ) -> pb::RtaResponse {
        let mut out = pb::RtaResponse {
            request_id,
            code: Some(if d.take { code::TAKE } else { code::NO_MATCH }),
            response_cache_time: self.cache_time(d.cache_seconds),
            ..Default::default()
        };
        for m in &d.matches {
            if out.out_target_id.iter().any(|t| t == m.target_id) {
                continue;
            }
            out.out_target_id.push(m.target_id.to_string());
            let factor = media_factor(m.bid_factor);
            out.target_infos.push(pb::rta_response::TargetInfo {
                out_target_id: Some(m.target_id.to_string()),
                user_weight_factor: self.user_weight_factor.then_some(factor),
                cpc_factor: self.cpc_factor.then_some(factor),
                pcvr: m.pcvr.map(|p| p as f32),
                dsp_tag_str: Some(dsp_tag(m.strategy_id)),
                ..Default::default()
            });
        }
        out.processing_time_ms = Some(millis(elapsed));
        out
    }

    /// The decision's cache hint within the configured bounds; none for 0.
    fn cache_time(&self, hint: u32) -> Option<u32> {
        (hint > 0).then(|| hint.clamp(self.min_cache_seconds, self.max_cache_seconds))
    }
}

/// The admission layer in front of the handler (the shape of linkerd's inbound
/// stack: limits are layers, not code inside the service). A request that finds
/// `max_in_flight` requests in progress is shed at once with the default answer;
/// an admitted one must be answered within the deadline, counted from here, or it
/// gets the default answer (the handler is dropped; decisions themselves take
/// microseconds, so what runs out of time is reading a slow body or a queue).
async fn admit(State(ep): State<Arc<Endpoint>>, mut req: Request, next: Next) -> Response {
    let arrival = Instant::now();
    let http1 = req.version() <= axum::http::Version::HTTP_11;
    let Ok(_permit) = ep.in_flight.try_acquire() else {
        return closing(
            ep.default_response(arrival, Outcome::Shed, None, API),
            http1,
        );
    };
    req.extensions_mut().insert(Arrival(arrival));
    match tokio::time::timeout(ep.deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => closing(
            ep.default_response(arrival, Outcome::Deadline, None, API),
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

/// `POST /rta/tencent`.
async fn answer(State(ep): State<Arc<Endpoint>>, req: Request) -> Response {
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
            "body_size",
            ErrorCode::TooLarge,
            format!("Content-Length over the {}-byte limit", ep.max_body_bytes),
        );
    }
    let body = match Bytes::from_request(req, &()).await {
        Ok(b) => b,
        Err(rejection) => return body_rejected(&rejection),
    };
    let req = match read_request(&body) {
        Ok(r) => r,
        Err(e) => {
            e.count(API);
            return ApiError::from(e).into_plain_response();
        }
    };
    if req.is_ping() {
        metrics::counter!(telemetry::PINGS, "api" => API).increment(1);
        return protobuf(&pb::RtaResponse {
            request_id: req.id,
            code: Some(code::TAKE),
            ..Default::default()
        });
    }
    let api = if req.is_test() { API_TEST } else { API };
    if arrival.elapsed() >= ep.deadline {
        // queued past the budget: answering fast beats deciding late
        return ep.default_response(arrival, Outcome::Deadline, req.id, api);
    }
    let translated = Translated::from_request(&req, api);
    let dreq = DecisionRequest {
        devices: &translated.devices,
        os: translated.os,
        experiments: &translated.experiments,
        only_strategies: &[],
    };
    let is_test = req.is_test();
    let respond = |decision: &Decision<&str>| {
        let elapsed = arrival.elapsed();
        DecisionAnswered {
            api,
            outcome: decision.outcome,
            elapsed,
        }
        .emit();
        ep.to_response(req.id, decision, elapsed)
    };
    let response = if is_test {
        // the uncounted path: test traffic is never a real opportunity
        ep.engine.decide_uncounted_with(&dreq, respond)
    } else {
        if !translated.flagged.is_empty() {
            ep.engine.flag_doubtful_ids(&translated.flagged);
        }
        ep.engine.decide_with(&dreq, respond)
    };
    protobuf(&response)
}

fn body_rejected(rejection: &BytesRejection) -> Response {
    let (field, code) = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ("body_size", ErrorCode::TooLarge)
    } else {
        ("body", ErrorCode::InvalidArgument)
    };
    refused(field, code, rejection.body_text())
}

/// A request refused before it was decoded: counted by `field`, answered
/// with `code`'s status and the message as text.
fn refused(field: &'static str, code: ErrorCode, message: String) -> Response {
    let invalid = InvalidRequest::new(field, field, message);
    invalid.count(API);
    ApiError {
        code,
        ..ApiError::from(invalid)
    }
    .into_plain_response()
}

fn protobuf(msg: &pb::RtaResponse) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        Bytes::from(msg.encode_to_vec()),
    )
        .into_response()
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// A bid factor as the media takes it. Tencent's `user_weight_factor` and
/// `cpc_factor` are plain multipliers (1.0 neutral, 0.8 = 20 % less, 1.2 = 20 %
/// more; its reports bucket them in steps of 0.5 from 0 to 5), bounded to 0.2 ..= 5
/// by default: the same scale as our bid factors, so the value is passed through,
/// clamped to those bounds (strategy files are already validated against them).
pub fn media_factor(bid_factor: f64) -> f32 {
    if !bid_factor.is_finite() {
        return 1.0;
    }
    bid_factor.clamp(*BID_FACTOR_RANGE.start(), *BID_FACTOR_RANGE.end()) as f32
}

/// The `dsp_tag_str` of a strategy: the strategy id, which the media substitutes
/// into click and conversion reports (`__RTA_DSP_TAG__`) so that they can be joined
/// back to our strategies. The media takes at most 20 bytes; a longer id becomes its
/// first 11 bytes, `~`, and the first 8 hex characters of md5(id), e.g.
/// `new_customer_brand_cross_category` -> `new_custome~028dbeaf`: still readable,
/// and unique in practice.
pub fn dsp_tag(strategy_id: &str) -> String {
    if strategy_id.len() <= MAX_DSP_TAG {
        return strategy_id.to_string();
    }
    let mut cut = 11;
    while !strategy_id.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = hex::encode(Md5::digest(strategy_id.as_bytes()));
    format!("{}~{}", &strategy_id[..cut], &digest[..8])
}

/// Decodes a request body after bounding its element count on the wire
/// ([`shape::check`]); the endpoint's first step, and a fuzz target's.
pub fn read_request(body: &[u8]) -> Result<pb::RtaRequest, InvalidRequest> {
    shape::check(body)?;
    pb::RtaRequest::decode(body).map_err(|e| {
        InvalidRequest::new(
            "body",
            "body",
            format!("not a tencent.ad.rta.RtaRequest: {e}"),
        )
    })
}

/// A Tencent request as the decision sees it.
#[derive(Debug)]
pub struct Translated {
    /// The usable device keys, the cached kind first.
    pub devices: Vec<DeviceKey>,
    /// Ids the media flagged as doubtful (not decided on).
    pub flagged: Vec<DeviceKey>,
    /// The device's platform.
    pub os: Os,
    /// The media's experiment ids.
    pub experiments: Vec<u64>,
}

impl Translated {
    /// Translates a decoded request; ids dropped on the way are counted under `api`.
    pub fn from_request(req: &pb::RtaRequest, api: &'static str) -> Self {
        let Some(device) = req.device.as_ref() else {
            return Self {
                devices: Vec::new(),
                flagged: Vec::new(),
                os: Os::Unknown,
                experiments: experiments(req),
            };
        };
        let os = match device.os.map(OperatingSystem::try_from) {
            Some(Ok(OperatingSystem::OsAndroid)) => Os::Android,
            Some(Ok(OperatingSystem::OsIos)) => Os::Ios,
            Some(Ok(OperatingSystem::OsHarmony)) => Os::Harmony,
            Some(Ok(
                OperatingSystem::OsWindows
                | OperatingSystem::OsSymbian
                | OperatingSystem::OsJava
                | OperatingSystem::OsMac,
            )) => Os::Other,
            // unknown and future enum values: tolerated, not guessed
            _ => Os::Unknown,
        };
        let (mut keyed, flagged) = device_keys(device, api);
        let cached = cached_kind(device);
        // stable: the cached kind first, the rest keep their order
        keyed.sort_by_key(|(kind, _)| Some(*kind) != cached);
        Self {
            devices: keyed.into_iter().map(|(_, k)| k).collect(),
            flagged,
            os,
            experiments: experiments(req),
        }
    }
}

fn experiments(req: &pb::RtaRequest) -> Vec<u64> {
    req.exps
        .iter()
        .filter_map(|e| e.exp_id)
        .map(u64::from)
        .take(MAX_EXPERIMENTS)
        .collect()
}

fn cached_kind(device: &Device) -> Option<Kind> {
    match CacheDeviceIdType::try_from(device.cached_deviceid_type?).ok()? {
        CacheDeviceIdType::IdfaMd5 => Some(Kind::Idfa),
        CacheDeviceIdType::ImeiMd5 => Some(Kind::Imei),
        CacheDeviceIdType::Oaid | CacheDeviceIdType::OaidMd5 => Some(Kind::Oaid),
        CacheDeviceIdType::AndroididMd5 => Some(Kind::AndroidId),
        CacheDeviceIdType::MacMd5 => Some(Kind::Mac),
        CacheDeviceIdType::Qaid => Some(Kind::Caid),
        CacheDeviceIdType::Nil => None,
    }
}

fn ignore(api: &'static str, field: &'static str, reason: IgnoredId) {
    DeviceIdIgnored { api, field, reason }.emit();
}

/// The usable device keys of a request, with their kind, and the keys the
/// media flagged as doubtful (dropped; see the module docs for what else is
/// dropped and why).
fn device_keys(device: &Device, api: &'static str) -> (Vec<(Kind, DeviceKey)>, Vec<DeviceKey>) {
    let flagged = |tags: &[DeviceIdTag]| {
        device
            .doubtful_ids_list
            .iter()
            .any(|t| tags.iter().any(|tag| *tag as i32 == *t))
    };
    let mut keys = Vec::with_capacity(6);
    let mut doubtful_keys = Vec::new();
    let mut take = |kind: Kind, field: &'static str, value: Option<&str>, doubtful: bool| {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return;
        };
        if doubtful {
            ignore(api, field, IgnoredId::FlaggedDoubtful);
            if let Ok(key) = DeviceKey::from_md5_hex(value)
                && !key.is_doubtful()
            {
                doubtful_keys.push(key);
            }
            return;
        }
        match DeviceKey::from_md5_hex(value) {
            Ok(key) => keys.push((kind, key)),
            Err(_) => ignore(api, field, IgnoredId::Malformed),
        }
    };
    use DeviceIdTag as T;
    take(
        Kind::Imei,
        "imei_md5sum",
        device.imei_md5sum.as_deref(),
        flagged(&[T::ImeiMd5Doubtful]),
    );
    take(
        Kind::Oaid,
        "oaid_md5sum",
        device.oaid_md5sum.as_deref(),
        flagged(&[T::OaidMd5Doubtful, T::OaidDoubtful]),
    );
    take(
        Kind::Idfa,
        "idfa_md5sum",
        device.idfa_md5sum.as_deref(),
        flagged(&[T::IdfaMd5Doubtful]),
    );
    let caid_doubtful = flagged(&[T::QaidDoubtful]);
    for (i, info) in device.qaid_infos.iter().enumerate() {
        if i >= MAX_QAID_INFOS {
            ignore(api, "qaid_infos", IgnoredId::TooMany);
            continue;
        }
        take(
            Kind::Caid,
            "qaid_infos.qaid",
            info.qaid.as_deref(),
            caid_doubtful,
        );
        take(
            Kind::Caid,
            "qaid_infos.qaid_md5sum",
            info.qaid_md5sum.as_deref(),
            caid_doubtful,
        );
    }
    take(
        Kind::AndroidId,
        "android_id_md5sum",
        device.android_id_md5sum.as_deref(),
        flagged(&[T::AndroididMd5Doubtful]),
    );
    take(
        Kind::Mac,
        "mac_md5sum",
        device.mac_md5sum.as_deref(),
        flagged(&[T::MacMd5Doubtful]),
    );
    (keys, doubtful_keys)
}

#[cfg(test)]
mod tests;
