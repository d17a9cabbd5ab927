//! One API error vocabulary for every surface: an [`ErrorCode`] maps once to a
//! gRPC status and an HTTP status, and an [`ApiError`] carries the code, a
//! message and, for an invalid request, the field at fault. The admin API
//! answers it as a JSON body (`{"error": ..., "field": ...}`); the media
//! endpoints, whose callers log the text, as `text/plain`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::serve::InvalidRequest;

/// What kind of error an API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed or a field is out of range.
    InvalidArgument,
    /// No valid credentials.
    Unauthenticated,
    /// Valid credentials that do not allow the request.
    PermissionDenied,
    /// A body of a media type the endpoint does not take.
    UnsupportedMediaType,
    /// What the request names does not exist.
    NotFound,
    /// The request is well formed but its content is rejected (a strategy
    /// file that does not compile).
    Unprocessable,
    /// The request is larger than allowed.
    TooLarge,
    /// A bounded table is full.
    ResourceExhausted,
    /// The request took longer than allowed (its body included).
    Timeout,
    /// The caller sent more requests than its rate allows.
    RateLimited,
    /// A failure of ours.
    Internal,
}

impl ErrorCode {
    /// The gRPC status code.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::InvalidArgument | Self::UnsupportedMediaType => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::Unprocessable => tonic::Code::FailedPrecondition,
            Self::TooLarge | Self::ResourceExhausted | Self::RateLimited => {
                tonic::Code::ResourceExhausted
            }
            Self::Timeout => tonic::Code::DeadlineExceeded,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error an API answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Its kind.
    pub code: ErrorCode,
    /// What went wrong, for the caller.
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

/// The JSON body of an admin error.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error of `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// The answer of a media endpoint: the status and the message as text.
    pub fn into_plain_response(self) -> Response {
        (self.code.http_status(), format!("{}\n", self.message)).into_response()
    }
}

impl From<InvalidRequest> for ApiError {
    fn from(e: InvalidRequest) -> Self {
        Self {
            code: ErrorCode::InvalidArgument,
            message: e.to_string(),
            field: Some(e.field),
        }
    }
}

impl IntoResponse for ApiError {
    /// The admin API's answer: the status and a JSON body.
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
            field: self.field.as_deref(),
        };
        (self.code.http_status(), Json(body)).into_response()
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        tonic::Status::new(e.code.grpc_code(), e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_maps_to_one_grpc_and_one_http_status() {
        let table = [
            (
                ErrorCode::InvalidArgument,
                tonic::Code::InvalidArgument,
                400,
            ),
            (
                ErrorCode::Unauthenticated,
                tonic::Code::Unauthenticated,
                401,
            ),
            (
                ErrorCode::PermissionDenied,
                tonic::Code::PermissionDenied,
                403,
            ),
            (
                ErrorCode::UnsupportedMediaType,
                tonic::Code::InvalidArgument,
                415,
            ),
            (ErrorCode::NotFound, tonic::Code::NotFound, 404),
            (
                ErrorCode::Unprocessable,
                tonic::Code::FailedPrecondition,
                422,
            ),
            (ErrorCode::TooLarge, tonic::Code::ResourceExhausted, 413),
            (
                ErrorCode::ResourceExhausted,
                tonic::Code::ResourceExhausted,
                507,
            ),
            (ErrorCode::Internal, tonic::Code::Internal, 500),
        ];
        for (code, grpc, http) in table {
            assert_eq!(code.grpc_code(), grpc, "{code:?}");
            assert_eq!(code.http_status().as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn an_invalid_request_keeps_its_field_and_message_on_both_surfaces() {
        let invalid = InvalidRequest::new("device_ids.value", "device_ids[1].value", "too short");
        let status = tonic::Status::from(invalid.clone());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "device_ids[1].value: too short");
        let api = ApiError::from(invalid);
        assert_eq!(api.field.as_deref(), Some("device_ids[1].value"));
        assert_eq!(api.into_response().status(), StatusCode::BAD_REQUEST);
    }
}
