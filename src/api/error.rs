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
            StoreError::Conflict { .. } | StoreError::Exists { .. } => {
                ApiError::Conflict(e.to_string())
            }
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
            ExecError::BadArchive(_) => ApiError::BadRequest(e.to_string()),
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
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}
