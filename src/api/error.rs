//! The API's one error type, and its one conversion to HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::types::ErrorBody;
use crate::executor::ExecError;
use crate::node::NodeError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotInCluster(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } | StoreError::Exists { .. } | StoreError::Invalid(_) => {
                ApiError::Conflict(e.to_string())
            }
            StoreError::TooLarge { .. } => ApiError::BadRequest(e.to_string()),
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
            ExecError::ImageNotFound(_) => ApiError::NotFound(e.to_string()),
            ExecError::BadArchive(_) | ExecError::Pull(_) => ApiError::BadRequest(e.to_string()),
            ExecError::Other(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::AlreadyInCluster { .. } => ApiError::Conflict(e.to_string()),
            NodeError::NotInCluster => ApiError::NotInCluster(e.to_string()),
            NodeError::ManagerCannotLeave => ApiError::BadRequest(e.to_string()),
            NodeError::Stopping => ApiError::Unavailable(e.to_string()),
            NodeError::Failed(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotInCluster(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = ErrorBody {
            message: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

/// The most of an error body that is read back to be rewritten as JSON.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Every error answer is JSON with one `message`, including the ones axum
/// makes itself: 415 for a body that is not JSON, 422 for JSON of the
/// wrong shape, 404 for an unknown path, 405 for a wrong method.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    (status, Json(ErrorBody { message })).into_response()
}
