//! `leave`: a worker leaves its cluster cleanly (see `node::leave` for
//! what it removes). A manager holds a copy of the cluster's state, so it
//! is demoted first.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;

use super::{ApiError, Ctx, Left};

#[derive(serde::Deserialize)]
pub struct LeaveQuery {
    #[serde(default)]
    force: bool,
}

pub async fn leave(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<LeaveQuery>,
) -> Result<Json<Left>, ApiError> {
    Ok(Json(ctx.node.leave(q.force).await?))
}
