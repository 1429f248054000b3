//! Autolock: `cluster update --autolock`, `unlock-key`, and `unlock`.
//!
//! The unlock key is cluster state (in the sealed store, beside the CA
//! key). Each manager seals its own keys with it as soon as it applies the
//! change (`manager::keep_keys_sealed`). A manager that starts with sealed
//! keys serves only `unlock` (see `serve_locked`) until it is given it.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

use super::error::ApiError;
use super::types::ErrorBody;
use super::Ctx;
use crate::keyring::{KeyError, Keyring, Locked};
use crate::seal::UnlockKey;
use crate::store::{Change, Object};
use crate::types::Cluster;

#[derive(Debug, Serialize, Deserialize)]
pub struct UnlockRequest {
    pub key: String,
}

/// The unlock key, when the cluster is autolocked.
#[derive(Debug, Serialize, Deserialize)]
pub struct UnlockKeyReply {
    pub key: Option<String>,
}

const NOT_LOCKED: &str = "autolock is off: there is no unlock key (turn autolock on first)";

/// Turn autolock on (a new key, unless one is set) or off.
pub fn set_autolock(cluster: &mut Cluster, on: bool) -> Result<(), ApiError> {
    cluster.unlock_key = match (on, cluster.unlock_key.take()) {
        (true, Some(key)) => Some(key),
        (true, None) => Some(new_key()?),
        (false, _) => None,
    };
    Ok(())
}

fn new_key() -> Result<String, ApiError> {
    Ok(UnlockKey::generate()
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .display())
}

/// `shoal unlock-key`: show the key.
pub async fn show_key(State(ctx): State<Arc<Ctx>>) -> Result<Json<UnlockKeyReply>, ApiError> {
    let cluster = current_cluster(&ctx).await?;
    match cluster.unlock_key {
        Some(key) => Ok(Json(UnlockKeyReply { key: Some(key) })),
        None => Err(ApiError::BadRequest(NOT_LOCKED.into())),
    }
}

/// `shoal unlock-key --rotate`: a new key; managers reseal with it.
pub async fn rotate_key(State(ctx): State<Arc<Ctx>>) -> Result<Json<UnlockKeyReply>, ApiError> {
    let mut cluster = current_cluster(&ctx).await?;
    if cluster.unlock_key.is_none() {
        return Err(ApiError::BadRequest(NOT_LOCKED.into()));
    }
    let key = new_key()?;
    cluster.unlock_key = Some(key.clone());
    ctx.proposer
        .propose(vec![Change::Update(Object::Cluster(cluster))])
        .await?;
    Ok(Json(UnlockKeyReply { key: Some(key) }))
}

async fn current_cluster(ctx: &Ctx) -> Result<Cluster, ApiError> {
    ctx.read_current()
        .await?
        .cluster()?
        .ok_or_else(|| ApiError::Internal("no cluster object".into()))
}

/// `shoal unlock` on a daemon that is not locked.
pub async fn not_locked() -> ApiError {
    ApiError::BadRequest("this node is not locked".into())
}

/// Serve the control socket of a locked manager: `unlock` only, every
/// other request is told to unlock first. Returns the opened keyring.
pub async fn serve_locked(listener: UnixListener, locked: Locked) -> anyhow::Result<Keyring> {
    let (tx, rx) = oneshot::channel();
    let state = Arc::new(LockedState {
        locked,
        opened: Mutex::new(Some(tx)),
    });
    let app = Router::new()
        .route("/v1/unlock", post(unlock))
        .fallback(locked_reply)
        .with_state(state);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = done_rx.await;
    });
    let server = tokio::spawn(async move { server.await });
    let keyring = rx.await?;
    let _ = done_tx.send(());
    server.await??;
    Ok(keyring)
}

struct LockedState {
    locked: Locked,
    opened: Mutex<Option<oneshot::Sender<Keyring>>>,
}

async fn unlock(
    State(state): State<Arc<LockedState>>,
    Json(req): Json<UnlockRequest>,
) -> Result<Json<()>, ApiError> {
    let key = UnlockKey::parse(&req.key).map_err(ApiError::BadRequest)?;
    let keyring = state.locked.unlock(&key).map_err(|e| match e {
        KeyError::WrongKey => ApiError::BadRequest(e.to_string()),
        _ => ApiError::Internal(e.to_string()),
    })?;
    match state.opened.lock().unwrap().take() {
        Some(tx) => {
            let _ = tx.send(keyring);
            Ok(Json(()))
        }
        None => Err(ApiError::BadRequest("this node is already unlocked".into())),
    }
}

async fn locked_reply() -> impl IntoResponse {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(ErrorBody {
            message: "this manager is locked (the cluster is autolocked): run `shoal unlock` and give it the unlock key".into(),
        }),
    )
}
