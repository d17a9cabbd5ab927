//! Admin HTTP: health, readiness, Prometheus metrics, strategies (list and
//! reload), user profiles by device id, decision explanations, the
//! anti-cheat blacklist (list, add, remove) and the model's calibration
//! (observed vs predicted per strategy, recalibrate now).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::InvalidRequest;
use super::limits::MAX_DEVICE_IDS;
use crate::decision::DecisionRequest;
use crate::decision::blacklist::{Listed, Reason};
use crate::index::record::{UserRecord, parse_device};
use crate::serve::admin_policy::{AdminLimits, MutationRate};
use crate::serve::error::{ApiError, ErrorCode};
use crate::serve::node::Node;
use crate::serve::tokens::{AuthFailure, BearerTokens, Role};
use crate::strategy::Os;
use crate::telemetry;
use crate::telemetry::event::{AdminActionAudited, AdminAuthFailed, AdminRateLimited};

/// The health checks, served on every HTTP listener: `/healthz` (the
/// process is up) and `/readyz` (ready for traffic).
pub fn health_router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(node)
}

/// The admin router, for the admin listener only: the health checks and
/// `/metrics`, open, and the admin API behind [`BearerTokens`] (a `read` token
/// for `GET`, a `write` token for every mutation; each mutation audited).
pub fn router(
    node: Arc<Node>,
    auth: Arc<BearerTokens>,
    limits: AdminLimits,
    request_timeout: Duration,
) -> Router {
    let gate = Arc::new(Gate {
        tokens: auth,
        rate: MutationRate::new(&limits),
    });
    let api = Router::new()
        .route("/strategies", get(strategies))
        .route("/strategies/reload", post(reload))
        .route("/users/{device}", get(user))
        .route("/explain", get(explain))
        .route(
            "/blacklist",
            get(blacklist_list)
                .post(blacklist_add)
                .delete(blacklist_remove),
        )
        .route("/calibration", get(calibration))
        .route("/calibration/recalibrate", post(recalibrate))
        .route_layer(middleware::from_fn_with_state(gate, authorize))
        .layer(axum::Extension(limits))
        .with_state(node.clone());
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(node.clone())
        .merge(api)
        .merge(health_router(node))
        .layer(middleware::from_fn_with_state(request_timeout, within))
}

/// Bounds an admin request's whole time, its body included: a body that
/// trickles in a byte a second gets 408 instead of holding its connection.
async fn within(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError {
            code: ErrorCode::Timeout,
            field: None,
            message: format!("the request took longer than {} ms", limit.as_millis()),
        }
        .into_response(),
    }
}

/// The admin API's gate: the bearer token must allow the request's method
/// (`GET` reads, anything else writes); a mutation's body, when it has one,
/// must be JSON (so that no cross-site form post is taken); every mutation is
/// audited with the token's name, never the token.
async fn authorize(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let auth = &gate.tokens;
    let needs = if req.method() == Method::GET || req.method() == Method::HEAD {
        Role::Read
    } else {
        Role::Write
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let token = match auth.authorize(presented, needs) {
        Ok(name) => name.to_string(),
        Err(failure) => {
            AdminAuthFailed {
                reason: failure.label(),
                route: &route,
            }
            .emit();
            let (code, message) = match failure {
                AuthFailure::Missing => (ErrorCode::Unauthenticated, "a bearer token is required"),
                AuthFailure::Invalid => {
                    (ErrorCode::Unauthenticated, "the bearer token is not valid")
                }
                AuthFailure::Forbidden => (
                    ErrorCode::PermissionDenied,
                    "the token's role does not allow this request",
                ),
            };
            let mut response = ApiError::new(code, message).into_response();
            if code == ErrorCode::Unauthenticated {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return response;
        }
    };
    if needs == Role::Read {
        return next.run(req).await;
    }
    let action = format!("{} {route}", req.method());
    if !gate.rate.try_take(&token, std::time::Instant::now()) {
        AdminRateLimited { token: &token }.emit();
        let mut response = ApiError::new(
            ErrorCode::RateLimited,
            "this token's mutation rate is spent; retry in a second",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    req.extensions_mut().insert(Operator(token.clone()));
    let json_or_none = req.headers().get(header::CONTENT_TYPE).is_none_or(|ct| {
        ct.to_str().is_ok_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
    });
    let response = if json_or_none {
        next.run(req).await
    } else {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "admin mutations take application/json bodies only",
        )
        .into_response()
    };
    AdminActionAudited {
        token: &token,
        action,
        target: response
            .extensions()
            .get::<AuditTarget>()
            .map(|t| t.0.as_str()),
        result: response.status().as_u16(),
    }
    .emit();
    response
}

/// The admin API's gate: who may come in, and how often they may change things.
struct Gate {
    tokens: Arc<BearerTokens>,
    rate: MutationRate,
}

/// The name of the token a mutation came with (set by the gate).
#[derive(Debug, Clone)]
struct Operator(String);

/// What a mutation acted on, for the audit line: never a device or user id,
/// only its kind and a fingerprint (see [`fingerprint`]).
#[derive(Debug, Clone)]
struct AuditTarget(String);

/// `device:<12 hex>` or `user:<12 hex>`: the first 12 hex digits of SHA-256
/// over the entry's `listed` JSON (`{"device":"imei:..."}`), so an operator
/// can match an audit line to an entry without the log holding the id.
fn fingerprint(listed: &Listed) -> String {
    use sha2::{Digest, Sha256};
    let kind = match listed {
        Listed::User(_) => "user",
        _ => "device",
    };
    let json = serde_json::to_string(listed).unwrap_or_default();
    let digest = hex::encode(Sha256::digest(json.as_bytes()));
    format!("{kind}:{}", &digest[..12])
}

fn audited(mut response: Response, target: String) -> Response {
    response.extensions_mut().insert(AuditTarget(target));
    response
}

async fn readyz(State(node): State<Arc<Node>>) -> Response {
    if node.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics_text(State(node): State<Arc<Node>>) -> Response {
    node.update_gauges();
    let mut body = telemetry::prometheus().render();
    crate::decision::calibration::write_calibration(&mut body, &node.engine.calibration_rates());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[derive(Serialize)]
struct StrategyView {
    id: String,
    target_id: String,
    bid_factor: f64,
    description: String,
    audience: String,
    match_unknown_devices: bool,
}

#[derive(Serialize)]
struct StrategiesView {
    version: String,
    strategies: Vec<StrategyView>,
}

async fn strategies(State(node): State<Arc<Node>>) -> Json<StrategiesView> {
    let set = node.engine.strategies();
    Json(StrategiesView {
        version: set.version.clone(),
        strategies: set
            .strategies()
            .iter()
            .map(|s| StrategyView {
                id: s.id.to_string(),
                target_id: s.target_id.to_string(),
                bid_factor: s.bid_factor,
                description: s.description.clone(),
                audience: s.audience.clone(),
                match_unknown_devices: s.match_unknown_devices,
            })
            .collect(),
    })
}

async fn reload(State(node): State<Arc<Node>>) -> Response {
    // compiling a large file takes milliseconds: keep it off the async workers
    let result = tokio::task::spawn_blocking(move || node.reload()).await;
    match result {
        Ok(Ok(summary)) => (StatusCode::OK, Json(summary)).into_response(),
        Ok(Err(e)) => ApiError::new(ErrorCode::Unprocessable, e.to_string()).into_response(),
        Err(e) => ApiError::new(ErrorCode::Internal, e.to_string()).into_response(),
    }
}

async fn user(State(node): State<Arc<Node>>, AdminPath(device): AdminPath<String>) -> Response {
    let key = match parse_device(&device) {
        Ok(k) => k,
        Err(e) => return InvalidRequest::new("device", "device", e.to_string()).into_response(),
    };
    let today = node.engine.today();
    let idx = node.engine.index();
    let record = idx.resolve(&[key]).and_then(|u| {
        idx.with_profile(u, |p| UserRecord::from_profile(u, p, &node.taxonomy, today))
    });
    match record {
        Some(r) => Json(r).into_response(),
        None => ApiError::new(ErrorCode::NotFound, "no user has this device").into_response(),
    }
}

#[derive(Deserialize)]
struct ExplainQuery {
    /// Comma-separated device ids (`<md5>`, `<kind>:<md5>` or `raw:<kind>:<value>`).
    device: String,
    /// android, ios, harmony, other.
    #[serde(default)]
    os: Option<String>,
}

async fn explain(
    State(node): State<Arc<Node>>,
    AdminQuery(q): AdminQuery<ExplainQuery>,
) -> Response {
    let mut devices = Vec::new();
    for (i, d) in q.device.split(',').filter(|d| !d.is_empty()).enumerate() {
        if i >= MAX_DEVICE_IDS {
            return InvalidRequest::new(
                "device",
                "device",
                format!("more than {MAX_DEVICE_IDS} ids"),
            )
            .into_response();
        }
        match parse_device(d) {
            Ok(k) => devices.push(k),
            Err(e) => {
                return InvalidRequest::new("device", format!("device[{i}]"), e.to_string())
                    .into_response();
            }
        }
    }
    let os = match q.os.as_deref().unwrap_or("").parse::<Os>() {
        Ok(os) => os,
        Err(e) => return InvalidRequest::new("os", "os", e.to_string()).into_response(),
    };
    let explanation = node.engine.explain(&DecisionRequest {
        devices: &devices,
        os,
        experiments: &[],
        only_strategies: &[],
        media: None,
    });
    Json(explanation).into_response()
}

/// The most entries `GET /blacklist` returns.
const MAX_LISTED: usize = 10_000;

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Serialize)]
struct BlacklistView {
    /// Entries held, including expired ones not yet purged.
    held: usize,
    entries: Vec<crate::decision::blacklist::Entry>,
}

async fn blacklist_list(
    State(node): State<Arc<Node>>,
    AdminQuery(q): AdminQuery<ListQuery>,
) -> Response {
    let now = node.engine.clock().now_ms();
    let bl = node.engine.blacklist();
    Json(BlacklistView {
        held: bl.len(),
        entries: bl.list(now, q.limit.unwrap_or(1000).min(MAX_LISTED)),
    })
    .into_response()
}

/// Who a blacklist request is about: exactly one of a device id (`<md5>`,
/// `<kind>:<md5>` or `raw:<kind>:<value>`) and a user id.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Subject {
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    user: Option<u64>,
}

impl Subject {
    fn listed(&self) -> Result<Listed, InvalidRequest> {
        match (&self.device, self.user) {
            (Some(d), None) => {
                let key = parse_device(d)
                    .map_err(|e| InvalidRequest::new("device", "device", e.to_string()))?;
                if key.is_doubtful() {
                    return Err(InvalidRequest::new(
                        "device",
                        "device",
                        "a doubtful (placeholder) id never matches anyone; nothing to list"
                            .to_string(),
                    ));
                }
                Ok(Listed::Device(key))
            }
            (None, Some(u)) if u != 0 => Ok(Listed::User(u)),
            _ => Err(InvalidRequest::new(
                "subject",
                "device",
                "give exactly one of `device` and `user` (non-zero)".to_string(),
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    user: Option<u64>,
    #[serde(default)]
    reason: Option<Reason>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

async fn blacklist_add(
    State(node): State<Arc<Node>>,
    axum::Extension(limits): axum::Extension<AdminLimits>,
    operator: Option<axum::Extension<Operator>>,
    body: Result<Json<AddBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(axum::Extension(Operator(operator))) = operator else {
        return ApiError::new(ErrorCode::Internal, "no operator on an admitted mutation")
            .into_response();
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return InvalidRequest::new("body", "body", e.body_text()).into_response(),
    };
    let subject = Subject {
        device: body.device,
        user: body.user,
    };
    let listed = match subject.listed() {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let target = fingerprint(&listed);
    let ttl_seconds = body
        .ttl_seconds
        .unwrap_or_else(|| node.engine.blacklist().config().ttl_seconds)
        .min(limits.max_ttl_seconds);
    if let Some(ttl) = body.ttl_seconds
        && !(1..=limits.max_ttl_seconds).contains(&ttl)
    {
        let refused = InvalidRequest::new(
            "ttl_seconds",
            "ttl_seconds",
            format!(
                "must be within 1..={} (admin.max_ttl_seconds)",
                limits.max_ttl_seconds
            ),
        )
        .into_response();
        return audited(refused, target);
    }
    let now = node.engine.clock().now_ms();
    let ttl = std::time::Duration::from_secs(ttl_seconds);
    let response = match node.engine.blacklist().add_by(
        &operator,
        limits.max_entries_per_token,
        listed,
        body.reason.unwrap_or(Reason::Operator),
        now,
        ttl,
    ) {
        Ok(entry) => (StatusCode::CREATED, Json(entry)).into_response(),
        Err(e) => ApiError::new(ErrorCode::ResourceExhausted, e.to_string()).into_response(),
    };
    audited(response, target)
}

async fn blacklist_remove(
    State(node): State<Arc<Node>>,
    AdminQuery(q): AdminQuery<Subject>,
) -> Response {
    let listed = match q.listed() {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let target = fingerprint(&listed);
    let response = if node.engine.blacklist().remove(listed) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::new(ErrorCode::NotFound, "not on the blacklist").into_response()
    };
    audited(response, target)
}

async fn calibration(State(node): State<Arc<Node>>) -> Response {
    Json(node.engine.calibration_report()).into_response()
}

async fn recalibrate(State(node): State<Arc<Node>>) -> Response {
    node.engine.recalibrate();
    Json(node.engine.calibration_report()).into_response()
}

/// A query string whose rejection (a missing or malformed parameter) is an
/// admin JSON error naming the query, like every other admin error.
struct AdminQuery<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for AdminQuery<T> {
    type Rejection = InvalidRequest;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| AdminQuery(q))
            .map_err(|e| InvalidRequest::new("query", "query", e.body_text()))
    }
}

/// A path parameter whose rejection is an admin JSON error.
struct AdminPath<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for AdminPath<T> {
    type Rejection = InvalidRequest;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| AdminPath(p))
            .map_err(|e| InvalidRequest::new("path", "path", e.body_text()))
    }
}
