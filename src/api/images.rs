//! Image handlers: load a tarball into containerd, list, remove. After a
//! change, the node's description (its image list) is refreshed in the
//! store so the scheduler sees what the node has.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::Json;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::types::ImageLoaded;
use super::{ApiError, Ctx};
use crate::types::{normalize_image, ImageInfo};

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
    let name = normalize_image(&q.name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !ctx.images.images().await?.iter().any(|i| i.name == name) {
        return Err(ApiError::NotFound(format!("image {name} not found")));
    }
    ctx.images.remove_image(&name).await?;
    ctx.node.refresh().await;
    Ok(Json(ImageLoaded { images: vec![name] }))
}
