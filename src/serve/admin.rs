//! Admin HTTP: health, readiness, Prometheus metrics, strategies (list and
//! reload), user profiles by device id, and decision explanations.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::InvalidRequest;
use super::limits::MAX_DEVICE_IDS;
use crate::decision::DecisionRequest;
use crate::node::Node;
use crate::record::{UserRecord, parse_device};
use crate::strategy::Os;
use crate::telemetry;

/// The admin router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/strategies", get(strategies))
        .route("/strategies/reload", post(reload))
        .route("/users/{device}", get(user))
        .route("/explain", get(explain))
        .with_state(node)
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
    let body = telemetry::prometheus().render();
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

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

async fn reload(State(node): State<Arc<Node>>) -> Response {
    // compiling a large file takes milliseconds: keep it off the async workers
    let result = tokio::task::spawn_blocking(move || node.reload()).await;
    match result {
        Ok(Ok(summary)) => (StatusCode::OK, Json(summary)).into_response(),
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(ErrorBody {
                error: e.to_string(),
            }),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ErrorBody {
                error: e.to_string(),
            }),
        )
            .into_response(),
    }
}

async fn user(State(node): State<Arc<Node>>, Path(device): Path<String>) -> Response {
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
        None => (
            StatusCode::NOT_FOUND,
            Json(ErrorBody {
                error: "no user has this device".into(),
            }),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct ExplainQuery {
    /// Comma-separated device ids (32 hex, or raw:<kind>:<value>).
    device: String,
    /// android, ios, harmony, other.
    #[serde(default)]
    os: Option<String>,
}

async fn explain(State(node): State<Arc<Node>>, Query(q): Query<ExplainQuery>) -> Response {
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
    let os = match q.os.as_deref() {
        None | Some("") => Os::Unknown,
        Some("android") => Os::Android,
        Some("ios") => Os::Ios,
        Some("harmony") => Os::Harmony,
        Some("other") => Os::Other,
        Some(o) => {
            return InvalidRequest::new("os", "os", format!("unknown os `{o}`")).into_response();
        }
    };
    let explanation = node.engine.explain(&DecisionRequest {
        devices: &devices,
        os,
        experiments: &[],
        only_strategies: &[],
    });
    Json(explanation).into_response()
}
