//! Tencent Ads RTA over HTTP/protobuf: `POST /rta/tencent`, wire-compatible with
//! the media's own `tencent.ad.rta` protocol (proto2), so that a brand can point
//! Tencent's RTA at the engine without an adapter. Same decision path as the gRPC
//! API ([`DecisionEngine::decide`]); only the wire format differs.
//!
//! # What a request gets
//! * **`is_ping`**: `code` 0 and `request_id`, nothing else, at once; the index is
//!   not touched (a latency probe). Counted in `rta_pings_total{api="tencent"}`.
//! * **A decision**: `code` 0 with `out_target_id` (the matched strategies' target
//!   ids, strategy-file order, each once) and one `target_infos` entry per target id
//!   (from the first strategy in file order that has it): `out_target_id`, the
//!   strategy's bid factor in `user_weight_factor` and/or `cpc_factor`
//!   ([`TencentConfig::bid_factor_fields`]), `pcvr` when a model predicted one, and
//!   `dsp_tag_str` naming our strategy for attribution ([`dsp_tag`]). Or, when no
//!   strategy matched, [`code::NO_MATCH`] ("refuse all"). `response_cache_time` is
//!   the decision's cache hint clamped to the configured floor and ceiling; a hint
//!   of 0 (only placeholder ids: nothing may be cached) sends no cache time at all.
//!   `processing_time_ms` is the server's time from the request reaching the
//!   endpoint to the answer being encoded.
//! * **`is_test`**: decided like live traffic, answered the same, but counted under
//!   `api="tencent_test"`. Test traffic (the media's debugging tool) is neither shown
//!   nor billed, so it must never count as a real opportunity: it is decided through
//!   [`DecisionEngine::decide_uncounted`], the engine's uncounted path (no
//!   `rta_strategy_matches_total`), and frequency caps or feedback models added
//!   later must skip it the same way.
//! * **Default answer** ([`TencentConfig::default_answer`]): when more than
//!   `max_in_flight` requests are in progress the request is shed at once, and when
//!   its deadline passes first (a slow body, a queue) it gets the default instead of
//!   a decision. `fail_closed` answers [`code::DEFAULT_REFUSE`]; `fail_open` answers
//!   code 0 without strategy ids, which the media reads as "every ad of the
//!   advertiser may compete". Counted as `outcome="shed"` / `outcome="deadline"`.
//! * **HTTP 400** with a one-line reason for a body that is not an `RtaRequest`,
//!   **413** for a body over `max_body_bytes`; both counted in
//!   `rta_invalid_requests_total{api="tencent"}`. Everything else is HTTP 200, as
//!   the media expects (it treats other statuses as errors).
//!
//! # Device ids
//! `imei_md5sum`, `oaid_md5sum`, `idfa_md5sum`, `android_id_md5sum`, `mac_md5sum`
//! and each `qaid_infos` entry (CAID: `qaid` is the 32-hex CAID itself, the key the
//! gRPC API uses; `qaid_md5sum` is `md5(CAID)`, the key of `raw:caid:` records;
//! both are looked up) become device keys. The id the media caches our answer
//! under (`cached_deviceid_type`) is looked up first, so that the answer is about
//! the device the media will cache it for. Empty strings are absent ids. Ids the
//! media lists in `doubtful_ids_list` are dropped (`OAID_DOUBTFUL` drops the OAID
//! md5 too: it is the hash of a doubtful raw OAID), and so are ids of our own
//! doubtful list, inside the decision.
//!
//! **A present id that is not 32 hex characters is ignored and counted**
//! (`rta_ignored_device_ids_total{reason="malformed"}`), not a 400. The gRPC API
//! rejects it because its callers can fix their code; the media cannot be asked
//! to, and refusing the whole request for one bad field would turn one broken SDK
//! value into lost traffic *and* an error-rate hit that makes the media throttle
//! the advertiser. The remaining ids still decide; the counter shows operators
//! which field is broken.

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
    let Ok(_permit) = ep.in_flight.try_acquire() else {
        return ep.default_response(arrival, Outcome::Shed, None, API);
    };
    req.extensions_mut().insert(Arrival(arrival));
    match tokio::time::timeout(ep.deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ep.default_response(arrival, Outcome::Deadline, None, API),
    }
}

/// `POST /rta/tencent`.
async fn answer(State(ep): State<Arc<Endpoint>>, req: Request) -> Response {
    let arrival = req
        .extensions()
        .get::<Arrival>()
        .map_or_else(Instant::now, |a| a.0);
    let body = match Bytes::from_request(req, &()).await {
        Ok(b) => b,
        Err(rejection) => return body_rejected(&rejection),
    };
    let req = match pb::RtaRequest::decode(body) {
        Ok(r) => r,
        Err(e) => {
            let e = InvalidRequest::new(
                "body",
                "body",
                format!("not a tencent.ad.rta.RtaRequest: {e}"),
            );
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
    let invalid = InvalidRequest::new(field, field, rejection.body_text());
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
/// `new_custome~1c4b8d2e`: still readable, and unique in practice.
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

/// A Tencent request as the decision sees it.
#[derive(Debug)]
struct Translated {
    devices: Vec<DeviceKey>,
    /// Ids the media flagged as doubtful (not decided on).
    flagged: Vec<DeviceKey>,
    os: Os,
    experiments: Vec<u64>,
}

impl Translated {
    fn from_request(req: &pb::RtaRequest, api: &'static str) -> Self {
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
            Some(Ok(
                OperatingSystem::OsWindows | OperatingSystem::OsSymbian | OperatingSystem::OsJava,
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
mod tests {
    use super::*;
    use crate::decision::MatchedStrategy;
    use crate::domain::ids::DeviceIdKind;

    fn md5_of(s: &str) -> String {
        hex::encode(Md5::digest(s.as_bytes()))
    }

    fn request(device: Device) -> pb::RtaRequest {
        pb::RtaRequest {
            id: Some("r".into()),
            device: Some(device),
            ..Default::default()
        }
    }

    fn endpoint(cfg: &TencentConfig) -> Endpoint {
        let taxonomy = crate::domain::taxonomy::Taxonomy::default_taxonomy();
        let set = crate::strategy::StrategySet::from_toml("", "<empty>", &taxonomy).unwrap();
        let engine = DecisionEngine::new(
            Arc::new(crate::index::UserIndex::default()),
            set,
            crate::decision::Clock::Fixed(1),
        );
        Endpoint::new(Arc::new(engine), cfg)
    }

    fn matched(
        strategy: &'static str,
        target: &'static str,
        factor: f64,
    ) -> MatchedStrategy<&'static str> {
        MatchedStrategy {
            strategy_id: strategy,
            target_id: target,
            bid_factor: factor,
            pctr: None,
            pcvr: None,
        }
    }

    #[test]
    fn exp_ids_reach_the_decision_request() {
        let mut req = request(Device::default());
        req.exps = vec![
            pb::rta_request::Experiment {
                exp_id: Some(32768),
            },
            pb::rta_request::Experiment { exp_id: None },
            pb::rta_request::Experiment {
                exp_id: Some(u32::MAX),
            },
        ];
        let t = Translated::from_request(&req, API);
        assert_eq!(t.experiments, [32768, u64::from(u32::MAX)]);
    }

    #[test]
    fn the_id_the_media_caches_by_is_looked_up_first() {
        let device = Device {
            imei_md5sum: Some(md5_of("imei")),
            oaid_md5sum: Some(md5_of("oaid")),
            cached_deviceid_type: Some(CacheDeviceIdType::OaidMd5 as i32),
            ..Default::default()
        };
        let t = Translated::from_request(&request(device), API);
        let hex: Vec<String> = t.devices.iter().map(DeviceKey::to_hex).collect();
        assert_eq!(hex, [md5_of("oaid"), md5_of("imei")]);
    }

    #[test]
    fn caid_is_looked_up_by_value_and_by_md5() {
        let caid = "0123456789abcdef0123456789abcdef";
        let device = Device {
            qaid_infos: vec![pb::rta_request::device::QaidInfo {
                version: Some(20230330),
                qaid: Some(caid.into()),
                qaid_md5sum: Some(md5_of(caid)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = Translated::from_request(&request(device), API);
        assert_eq!(
            t.devices,
            [
                DeviceKey::from_md5_hex(caid).unwrap(),
                DeviceKey::from_raw(DeviceIdKind::Caid, caid).unwrap()
            ]
        );
    }

    #[test]
    fn empty_malformed_and_flagged_ids_are_dropped_and_the_rest_kept() {
        let device = Device {
            imei_md5sum: Some(String::new()),
            oaid_md5sum: Some("not-hex".into()),
            idfa_md5sum: Some(md5_of("IDFA")),
            mac_md5sum: Some(md5_of("mac")),
            android_id_md5sum: Some(md5_of("aid")),
            doubtful_ids_list: vec![DeviceIdTag::MacMd5Doubtful as i32, 99],
            os: Some(OperatingSystem::OsIos as i32),
            ..Default::default()
        };
        let t = Translated::from_request(&request(device), API);
        let hex: Vec<String> = t.devices.iter().map(DeviceKey::to_hex).collect();
        assert_eq!(hex, [md5_of("IDFA"), md5_of("aid")]);
        assert_eq!(t.os, Os::Ios);
    }

    #[test]
    fn oaid_doubtful_also_drops_the_oaid_md5() {
        let device = Device {
            oaid_md5sum: Some(md5_of("oaid")),
            doubtful_ids_list: vec![DeviceIdTag::OaidDoubtful as i32],
            ..Default::default()
        };
        assert!(
            Translated::from_request(&request(device), API)
                .devices
                .is_empty()
        );
    }

    #[test]
    fn at_most_four_caid_entries_are_looked_at() {
        let device = Device {
            qaid_infos: (0..10)
                .map(|i| pb::rta_request::device::QaidInfo {
                    qaid: Some(md5_of(&i.to_string())),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        assert_eq!(
            Translated::from_request(&request(device), API)
                .devices
                .len(),
            MAX_QAID_INFOS
        );
    }

    #[test]
    fn unknown_os_values_are_tolerated_as_unknown() {
        let device = Device {
            os: Some(42),
            ..Default::default()
        };
        assert_eq!(
            Translated::from_request(&request(device), API).os,
            Os::Unknown
        );
    }

    #[test]
    fn factors_are_clamped_to_the_media_bounds_on_the_same_scale() {
        assert_eq!(media_factor(1.8), 1.8_f32);
        assert_eq!(media_factor(0.05), 0.2_f32);
        assert_eq!(media_factor(9.0), 5.0_f32);
        assert_eq!(media_factor(f64::NAN), 1.0_f32);
    }

    #[test]
    fn dsp_tags_fit_the_media_limit_and_keep_short_ids() {
        assert_eq!(dsp_tag("goal_urban_fitness"), "goal_urban_fitness");
        let long = "new_customer_brand_cross_category";
        let tag = dsp_tag(long);
        assert_eq!(tag.len(), MAX_DSP_TAG);
        assert!(tag.starts_with("new_custome~"), "{tag}");
        assert_eq!(&tag[12..], &md5_of(long)[..8]);
        assert_ne!(dsp_tag("new_customer_diapers_to_formula"), tag);
    }

    #[test]
    fn a_decision_becomes_target_ids_and_infos_once_per_target_id() {
        let ep = endpoint(&TencentConfig {
            bid_factor_fields: vec![FactorField::CpcFactor],
            ..Default::default()
        });
        let mut pcvr = matched("b", "2", 7.5);
        pcvr.pcvr = Some(0.25);
        let d = Decision {
            take: true,
            matches: vec![matched("a", "1", 1.5), pcvr, matched("c", "1", 2.0)],
            cache_seconds: 300,
            outcome: Outcome::Take,
        };
        let r = ep.to_response(Some("id".into()), &d, Duration::from_micros(1500));
        assert_eq!(r.code, Some(code::TAKE));
        assert_eq!(r.out_target_id, ["1", "2"]);
        assert_eq!(r.target_infos.len(), 2);
        assert_eq!(r.target_infos[0].cpc_factor, Some(1.5));
        assert_eq!(r.target_infos[0].user_weight_factor, None);
        assert_eq!(r.target_infos[0].dsp_tag_str.as_deref(), Some("a"));
        assert_eq!(r.target_infos[1].cpc_factor, Some(5.0));
        assert_eq!(r.target_infos[1].pcvr, Some(0.25));
        assert_eq!(r.response_cache_time, Some(300));
        assert_eq!(r.processing_time_ms, Some(1));
    }

    #[test]
    fn cache_hints_are_clamped_but_a_zero_hint_sends_no_cache_time() {
        let ep = endpoint(&TencentConfig {
            min_cache_seconds: 900,
            max_cache_seconds: 1200,
            ..Default::default()
        });
        assert_eq!(ep.cache_time(300), Some(900));
        assert_eq!(ep.cache_time(1800), Some(1200));
        assert_eq!(ep.cache_time(1000), Some(1000));
        assert_eq!(ep.cache_time(0), None);
    }
}
