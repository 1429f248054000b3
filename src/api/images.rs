//! Image handlers: load a tarball into containerd, list, remove. After a
//! change, the node's description (its image list) is refreshed in the
//! store so the scheduler sees what the node has.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::Json;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::types::{ImageLoaded, PullBody, PullLine};
use super::{ApiError, Ctx};
use crate::agent::images::RemoveError;
use crate::executor::PullRequest;
use crate::registry::ImagePlatform;
use crate::types::{normalize_image, registry_host, ImageInfo};

pub async fn load(State(ctx): State<Arc<Ctx>>, body: Body) -> Result<Json<ImageLoaded>, ApiError> {
    let dir = ctx.data_dir.join("tmp");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(format!("load-{}.tar", crate::types::new_id()));
    let result = async {
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot write {}: {e}", path.display())))?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("upload failed: {e}")))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError::Internal(format!("cannot write upload: {e}")))?;
        }
        file.flush()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok::<_, ApiError>(ctx.images.load_image(&path).await?)
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    let images = result?;
    ctx.node.refresh().await;
    Ok(Json(ImageLoaded { images }))
}

/// Pulls an image onto this node with the cluster's access for its
/// registry, answering with progress lines as it goes.
pub async fn pull(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<PullBody>,
) -> Result<Response, ApiError> {
    let image = normalize_image(&req.image).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let platform = req
        .platform
        .as_deref()
        .map(ImagePlatform::parse)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let host = registry_host(&image).to_string();
    // A manager knows the cluster's registries; a worker pulls with none.
    let access = ctx
        .store
        .read()
        .ok()
        .and_then(|v| v.cluster().ok().flatten())
        .and_then(|c| c.registries.into_iter().find(|r| r.host == host));
    let pull = PullRequest {
        image,
        digest: None,
        platform,
        access,
        peers: None,
    };
    let (tx, mut rx) = mpsc::channel(64);
    let (lines_tx, lines_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let images = ctx.images.clone();
        let pulling = images.pull_image(&pull, Some(tx));
        tokio::pin!(pulling);
        let last = loop {
            tokio::select! {
                r = &mut pulling => break r,
                Some(e) = rx.recv() => {
                    let line = PullLine { progress: Some(e), ..Default::default() };
                    let _ = lines_tx.send(Ok(ndjson(&line))).await;
                }
            }
        };
        let line = match last {
            Ok(p) => {
                ctx.node.refresh().await;
                PullLine {
                    done: Some(p),
                    ..Default::default()
                }
            }
            Err(e) => PullLine {
                error: Some(e.to_string()),
                ..Default::default()
            },
        };
        let _ = lines_tx.send(Ok(ndjson(&line))).await;
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(ReceiverStream::new(lines_rx)))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn ndjson<T: serde::Serialize>(v: &T) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

pub async fn list(State(ctx): State<Arc<Ctx>>) -> Result<Json<Vec<ImageInfo>>, ApiError> {
    let mut images = ctx.images.images().await?;
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(images))
}

#[derive(serde::Deserialize)]
pub struct NameQuery {
    name: String,
}

pub async fn remove(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<NameQuery>,
) -> Result<Json<ImageLoaded>, ApiError> {
    let removed = ctx
        .image_keeper
        .remove(&q.name)
        .await
        .map_err(|e| match e {
            RemoveError::NotFound(name) => ApiError::NotFound(format!("image {name} not found")),
            RemoveError::InUse(_) => ApiError::Conflict(e.to_string()),
            RemoveError::Bad(why) => ApiError::BadRequest(why),
            RemoveError::Exec(e) => e.into(),
        })?;
    ctx.node.refresh().await;
    Ok(Json(ImageLoaded { images: removed }))
}
