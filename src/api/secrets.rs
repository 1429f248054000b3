//! Secret and config handlers: create, list, inspect, remove. Both kinds
//! are one shape; a secret's data is never answered, a config's is.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::types::Created;
use super::{ApiError, Ctx};
use crate::store::{Change, Kind, Object, ReadView};
use crate::types::*;

/// What `secret create` and `config create` send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileCreate {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The data, base64 (standard alphabet, padded).
    pub data: String,
}

/// A secret or a config as `ls` and `inspect` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileBody {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created_ms: i64,
    /// Its size in bytes.
    pub size: usize,
    /// The services that use it (names).
    #[serde(default)]
    pub services: Vec<String>,
    /// Configs only: the data, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

fn refs(s: &Service, kind: Kind) -> &[FileRef] {
    match kind {
        Kind::Config => &s.spec.task.configs,
        _ => &s.spec.task.secrets,
    }
}

fn body(kind: Kind, f: &Secret, services: &[Service]) -> FileBody {
    FileBody {
        id: f.id.clone(),
        name: f.spec.name.clone(),
        labels: f.spec.labels.clone(),
        created_ms: f.meta.created_ms,
        size: f.spec.data.len(),
        services: services
            .iter()
            .filter(|s| refs(s, kind).iter().any(|r| r.id == f.id))
            .map(|s| s.spec.name.clone())
            .collect(),
        data: (kind == Kind::Config)
            .then(|| base64::engine::general_purpose::STANDARD.encode(&f.spec.data)),
    }
}

fn find(view: &ReadView, kind: Kind, name: &str) -> Result<Secret, ApiError> {
    view.find_file(kind, name)?
        .ok_or_else(|| ApiError::NotFound(format!("{} {name} not found", kind.as_str())))
}

fn valid_name(kind: Kind, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "invalid {} name {name:?}: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit",
        kind.as_str()
    )))
}

/// The routes of one kind (`Kind::Secret` or `Kind::Config`) under
/// `base` (`/v1/secrets`, `/v1/configs`).
pub fn routes(router: Router<Arc<Ctx>>, base: &str, kind: Kind) -> Router<Arc<Ctx>> {
    router
        .route(
            base,
            get(move |ctx| list(ctx, kind)).post(move |ctx, req| create(ctx, req, kind)),
        )
        .route(
            &format!("{base}/{{name}}"),
            get(move |ctx, name| inspect(ctx, name, kind))
                .delete(move |ctx, name| remove(ctx, name, kind)),
        )
}

/// The secret (config) `req` asks for, checked, refused if its name is
/// taken.
pub(super) fn new_file(view: &ReadView, kind: Kind, req: FileCreate) -> Result<Secret, ApiError> {
    valid_name(kind, &req.name)?;
    let max = match kind {
        Kind::Config => MAX_CONFIG_BYTES,
        _ => MAX_SECRET_BYTES,
    };
    // A base64 text is 4/3 of its data: a longer one is refused unread.
    if req.data.len() > max / 3 * 4 + 4 {
        return Err(too_big(kind, max));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(req.data.as_bytes())
        .map_err(|e| ApiError::BadRequest(format!("the data is not base64: {e}")))?;
    if data.len() > max {
        return Err(too_big(kind, max));
    }
    if data.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "a {} cannot be empty",
            kind.as_str()
        )));
    }
    super::networks::managers_support(view, crate::LEVEL_SECRETS, "secrets and configs")?;
    if view
        .find_file(kind, &req.name)?
        .is_some_and(|f| f.spec.name == req.name)
    {
        return Err(ApiError::Conflict(format!(
            "{} {} already exists",
            kind.as_str(),
            req.name
        )));
    }
    Ok(Secret {
        id: new_id(),
        meta: Meta::default(),
        spec: SecretSpec {
            name: req.name,
            labels: req.labels,
            data: data.into(),
        },
    })
}

async fn create(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<FileCreate>,
    kind: Kind,
) -> Result<Json<Created>, ApiError> {
    ctx.identity()?;
    let view = ctx.read_current().await?;
    let f = new_file(&view, kind, req)?;
    let id = f.id.clone();
    let object = match kind {
        Kind::Config => Object::Config(f),
        _ => Object::Secret(f),
    };
    ctx.proposer.propose(vec![Change::Create(object)]).await?;
    Ok(Json(Created {
        id,
        warnings: Vec::new(),
    }))
}

fn too_big(kind: Kind, max: usize) -> ApiError {
    ApiError::BadRequest(format!(
        "a {} holds at most {} KiB",
        kind.as_str(),
        max / 1024
    ))
}

async fn list(State(ctx): State<Arc<Ctx>>, kind: Kind) -> Result<Json<Vec<FileBody>>, ApiError> {
    ctx.identity()?;
    let view = ctx.read_current().await?;
    let services = view.services()?;
    let mut all = match kind {
        Kind::Config => view.configs()?,
        _ => view.secrets()?,
    };
    all.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    Ok(Json(all.iter().map(|f| body(kind, f, &services)).collect()))
}

async fn inspect(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    kind: Kind,
) -> Result<Json<FileBody>, ApiError> {
    ctx.identity()?;
    let view = ctx.read_current().await?;
    let f = find(&view, kind, &name)?;
    Ok(Json(body(kind, &f, &view.services()?)))
}

/// Refused while a service uses it (the store checks, in log order).
async fn remove(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    kind: Kind,
) -> Result<Json<Created>, ApiError> {
    ctx.identity()?;
    let view = ctx.read_current().await?;
    let f = find(&view, kind, &name)?;
    let users: Vec<String> = view
        .services()?
        .iter()
        .filter(|s| refs(s, kind).iter().any(|r| r.id == f.id))
        .map(|s| s.spec.name.clone())
        .collect();
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "{} {name} is in use by service {}",
            kind.as_str(),
            users.join(", ")
        )));
    }
    ctx.proposer
        .propose(vec![Change::Delete {
            kind,
            id: f.id.clone(),
            expected_version: Some(f.meta.version),
        }])
        .await?;
    Ok(Json(Created {
        id: f.id,
        warnings: Vec::new(),
    }))
}

/// Gives each of the spec's secret and config references the id of the
/// one its name (or id) names, and its defaults: a secret's target is its
/// name (under `/run/secrets`), a config's `/NAME`.
pub fn resolve(view: &ReadView, spec: &mut ServiceSpec) -> Result<(), ApiError> {
    for (kind, list) in [
        (Kind::Secret, &mut spec.task.secrets),
        (Kind::Config, &mut spec.task.configs),
    ] {
        // Those with an id were resolved when they were added.
        for r in list.iter_mut().filter(|r| r.id.is_empty()) {
            let f = find(view, kind, &r.name)?;
            r.id = f.id;
            r.name = f.spec.name;
            if r.target.is_empty() {
                r.target = match kind {
                    Kind::Config => format!("/{}", r.name),
                    _ => r.name.clone(),
                };
            }
        }
        let mut targets: Vec<String> = list.iter().map(|r| r.path(SECRETS_DIR)).collect();
        targets.sort();
        if let Some(w) = targets.windows(2).find(|w| w[0] == w[1]) {
            return Err(ApiError::BadRequest(format!(
                "two {}s have the same target {}",
                kind.as_str(),
                w[0]
            )));
        }
    }
    if !spec.task.secrets.is_empty() || !spec.task.configs.is_empty() {
        super::networks::managers_support(view, crate::LEVEL_SECRETS, "secrets and configs")?;
    }
    Ok(())
}
