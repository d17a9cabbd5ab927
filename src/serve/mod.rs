//! Wire formats only: each submodule translates its protocol to a
//! [`DecisionRequest`](crate::decision::DecisionRequest) and the
//! [`Decision`](crate::decision::Decision) back. Invalid input becomes one
//! [`InvalidRequest`]; every API error is an [`error::ApiError`] whose code
//! maps to a gRPC and an HTTP status in one place.

pub mod admin;
pub mod admin_policy;
pub mod endpoints;
pub mod error;
pub mod grpc;
pub mod grpc_edge;
pub mod listener;
pub mod media;
pub mod meituan;
pub mod node;
pub mod oceanengine;
pub mod runtime;
pub mod tencent;
pub mod tokens;

/// Generated protobuf types and gRPC stubs of `rta.v1`.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("rta.v1");

    /// Encoded descriptors of our protos, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/rta_descriptor.bin"));
}

/// Limits on what one request may carry.
pub mod limits {
    /// Device ids per request.
    pub const MAX_DEVICE_IDS: usize = 16;
    /// Bytes of a request id.
    pub const MAX_REQUEST_ID: usize = 128;
    /// Strategy ids a request may restrict itself to.
    pub const MAX_STRATEGY_FILTER: usize = 1024;
    /// Experiment ids per request.
    pub const MAX_EXPERIMENTS: usize = 256;
    /// Bytes of a media or slot id.
    pub const MAX_MEDIA_ID: usize = 128;
}

/// A request field that is invalid, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRequest {
    /// The field's path, e.g. `device_ids[1].value`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
    /// The field's name without indexes, for metric labels.
    pub field_label: &'static str,
}

impl InvalidRequest {
    /// An invalid field.
    pub fn new(
        field_label: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            field_label,
        }
    }

    /// Counts it in metrics under `api`.
    pub fn count(&self, api: &'static str) {
        crate::telemetry::event::RequestRejected {
            api,
            field: self.field_label,
        }
        .emit();
    }
}

impl From<InvalidRequest> for tonic::Status {
    fn from(e: InvalidRequest) -> Self {
        error::ApiError::from(e).into()
    }
}

impl axum::response::IntoResponse for InvalidRequest {
    /// The admin API's answer: 400 with a JSON body naming the field.
    fn into_response(self) -> axum::response::Response {
        error::ApiError::from(self).into_response()
    }
}
