//! gRPC `rta.v1.RtaService`: Decide and BatchDecide.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::InvalidRequest;
use super::limits::*;
use super::pb;
use crate::decision::{Decision, DecisionEngine, DecisionRequest};
use crate::domain::ids::{DeviceIdKind, DeviceKey};
use crate::serve::error::{ApiError, ErrorCode};
use crate::serve::tokens::{AuthFailure, BearerTokens};
use crate::strategy::Os;
use crate::telemetry::event::{ClientAuthFailed, DecisionAnswered};

/// The gRPC service over a decision engine.
#[derive(Clone)]
pub struct RtaGrpc {
    engine: Arc<DecisionEngine>,
    max_batch: usize,
}

impl RtaGrpc {
    /// A service answering from `engine`; batches above `max_batch` are rejected.
    pub fn new(engine: Arc<DecisionEngine>, max_batch: usize) -> Self {
        Self { engine, max_batch }
    }

    fn decide_one(
        &self,
        req: &pb::DecideRequest,
        field_prefix: &str,
        api: &'static str,
        scope: Option<&[String]>,
    ) -> Result<pb::DecideResponse, Status> {
        let started = Instant::now();
        let parsed = parse_request(req, field_prefix).inspect_err(|e| e.count(api))?;
        let only: Vec<&str> = match scope {
            None => req.strategy_ids.iter().map(String::as_str).collect(),
            Some(allowed) => {
                if let Some(denied) = req.strategy_ids.iter().find(|s| !allowed.contains(s)) {
                    ClientAuthFailed {
                        api,
                        reason: "forbidden",
                    }
                    .emit();
                    return Err(ApiError::new(
                        ErrorCode::PermissionDenied,
                        format!(
                            "{field_prefix}strategy_ids: {denied:?} is not among this caller's strategies"
                        ),
                    )
                    .into());
                }
                if req.strategy_ids.is_empty() {
                    allowed.iter().map(String::as_str).collect()
                } else {
                    req.strategy_ids.iter().map(String::as_str).collect()
                }
            }
        };
        let dreq = DecisionRequest {
            devices: &parsed.devices,
            os: parsed.os,
            experiments: &req.experiment_ids,
            only_strategies: &only,
            media: None,
        };
        Ok(self.engine.decide_with(&dreq, |decision| {
            let elapsed = started.elapsed();
            DecisionAnswered {
                api,
                outcome: decision.outcome,
                elapsed,
            }
            .emit();
            to_response(&req.request_id, decision, elapsed.as_micros())
        }))
    }
}

/// Validates a `DecideRequest` as `Decide` does, without deciding: the
/// entry point of the `decide_request` fuzz target and of callers that want
/// the field error before sending.
pub fn check_request(req: &pb::DecideRequest) -> Result<(), InvalidRequest> {
    parse_request(req, "").map(|_| ())
}

struct Parsed {
    devices: Vec<DeviceKey>,
    os: Os,
}

fn parse_request(req: &pb::DecideRequest, prefix: &str) -> Result<Parsed, InvalidRequest> {
    if req.request_id.len() > MAX_REQUEST_ID {
        return Err(InvalidRequest::new(
            "request_id",
            format!("{prefix}request_id"),
            format!("longer than {MAX_REQUEST_ID} bytes"),
        ));
    }
    if req.device_ids.is_empty() {
        // a request about no device is a caller's bug, not a refusal
        return Err(InvalidRequest::new(
            "device_ids",
            format!("{prefix}device_ids"),
            "at least one device id is required",
        ));
    }
    if req.device_ids.len() > MAX_DEVICE_IDS {
        return Err(InvalidRequest::new(
            "device_ids",
            format!("{prefix}device_ids"),
            format!("more than {MAX_DEVICE_IDS} ids"),
        ));
    }
    if req.strategy_ids.len() > MAX_STRATEGY_FILTER {
        return Err(InvalidRequest::new(
            "strategy_ids",
            format!("{prefix}strategy_ids"),
            format!("more than {MAX_STRATEGY_FILTER} ids"),
        ));
    }
    if req.experiment_ids.len() > MAX_EXPERIMENTS {
        return Err(InvalidRequest::new(
            "experiment_ids",
            format!("{prefix}experiment_ids"),
            format!("more than {MAX_EXPERIMENTS} ids"),
        ));
    }
    if req.media_id.len() > MAX_MEDIA_ID || req.slot_id.len() > MAX_MEDIA_ID {
        return Err(InvalidRequest::new(
            "media_id",
            format!("{prefix}media_id"),
            format!("media_id and slot_id are at most {MAX_MEDIA_ID} bytes"),
        ));
    }
    let mut devices = Vec::with_capacity(req.device_ids.len());
    for (i, d) in req.device_ids.iter().enumerate() {
        let field = || format!("{prefix}device_ids[{i}]");
        let kind = pb::DeviceIdType::try_from(d.r#type).map_err(|_| {
            InvalidRequest::new(
                "device_ids.type",
                format!("{}.type", field()),
                format!("unknown device id type {}", d.r#type),
            )
        })?;
        let key = match kind {
            pb::DeviceIdType::Unspecified => {
                return Err(InvalidRequest::new(
                    "device_ids.type",
                    format!("{}.type", field()),
                    "device id type is required",
                ));
            }
            pb::DeviceIdType::OaidRaw => DeviceKey::from_raw(DeviceIdKind::Oaid, &d.value),
            _ => DeviceKey::from_md5_hex(&d.value),
        }
        .map_err(|e| {
            InvalidRequest::new(
                "device_ids.value",
                format!("{}.value", field()),
                e.to_string(),
            )
        })?;
        devices.push(key);
    }
    let os = match pb::Os::try_from(req.os) {
        Ok(os) => Os::from(os),
        Err(_) => {
            return Err(InvalidRequest::new(
                "os",
                format!("{prefix}os"),
                format!("unknown os {}", req.os),
            ));
        }
    };
    Ok(Parsed { devices, os })
}

fn to_response(request_id: &str, d: &Decision<&str>, micros: u128) -> pb::DecideResponse {
    pb::DecideResponse {
        request_id: request_id.to_string(),
        take: d.take,
        matches: d
            .matches
            .iter()
            .map(|m| pb::MatchedStrategy {
                strategy_id: m.strategy_id.to_string(),
                target_id: m.target_id.to_string(),
                bid_factor: m.bid_factor,
                pctr: m.pctr,
                pcvr: m.pcvr,
            })
            .collect(),
        cache_seconds: d.cache_seconds,
        processing_time_us: u32::try_from(micros).unwrap_or(u32::MAX),
    }
}

#[tonic::async_trait]
impl pb::rta_service_server::RtaService for RtaGrpc {
    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        let scope = caller_scope(&request);
        let req = request.into_inner();
        Ok(Response::new(self.decide_one(
            &req,
            "",
            "grpc",
            scope.as_deref(),
        )?))
    }

    async fn batch_decide(
        &self,
        request: Request<pb::BatchDecideRequest>,
    ) -> Result<Response<pb::BatchDecideResponse>, Status> {
        let scope = caller_scope(&request);
        let batch = request.into_inner();
        if batch.requests.len() > self.max_batch {
            let e = InvalidRequest::new(
                "requests",
                "requests",
                format!("more than {} requests in one batch", self.max_batch),
            );
            e.count("grpc_batch");
            return Err(e.into());
        }
        let mut responses = Vec::with_capacity(batch.requests.len());
        for (i, req) in batch.requests.iter().enumerate() {
            responses.push(self.decide_one(
                req,
                &format!("requests[{i}]."),
                "grpc_batch",
                scope.as_deref(),
            )?);
        }
        Ok(Response::new(pb::BatchDecideResponse { responses }))
    }
}

impl From<pb::Os> for Os {
    fn from(os: pb::Os) -> Self {
        match os {
            pb::Os::Unspecified => Os::Unknown,
            pb::Os::Android => Os::Android,
            pb::Os::Ios => Os::Ios,
            pb::Os::Harmony => Os::Harmony,
            pb::Os::Other => Os::Other,
        }
    }
}

impl From<Os> for pb::Os {
    fn from(os: Os) -> Self {
        match os {
            Os::Unknown => pb::Os::Unspecified,
            Os::Android => pb::Os::Android,
            Os::Ios => pb::Os::Ios,
            Os::Harmony => pb::Os::Harmony,
            Os::Other => pb::Os::Other,
        }
    }
}

/// The strategies a scoped caller may ask about (set by [`check_caller`]).
#[derive(Debug, Clone)]
struct CallerScope(Arc<[String]>);

fn caller_scope<T>(request: &Request<T>) -> Option<Arc<[String]>> {
    request
        .extensions()
        .get::<CallerScope>()
        .map(|s| s.0.clone())
}

/// Lets a `Decide` / `BatchDecide` call in when it carries one of `tokens` as
/// `authorization: Bearer <token>` metadata; every call when none is
/// configured. Missing or unknown tokens are `UNAUTHENTICATED`, counted by
/// reason. The health and reflection services are not behind it.
pub fn check_caller(
    tokens: Arc<BearerTokens>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req| {
        if tokens.is_empty() {
            return Ok(req);
        }
        let presented = req.metadata().get("authorization").map(|v| v.as_bytes());
        match tokens.caller(presented) {
            Ok(caller) => {
                let mut req = req;
                if let Some(scope) = caller.scope {
                    req.extensions_mut().insert(CallerScope(scope));
                }
                Ok(req)
            }
            Err(failure) => {
                ClientAuthFailed {
                    api: "grpc",
                    reason: failure.label(),
                }
                .emit();
                Err(tonic::Status::unauthenticated(match failure {
                    AuthFailure::Missing => "a bearer token is required",
                    AuthFailure::Invalid | AuthFailure::Forbidden => {
                        "the bearer token is not valid"
                    }
                }))
            }
        }
    }
}
