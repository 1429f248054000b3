//! Service handlers: create, list, inspect, update, scale, remove, tasks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;

use super::spec::{ServiceBody, ServiceSpecBody};
use super::types::{Created, ScaleRequest, ServiceRow, ServiceUpdate, TaskRow};
use super::{validate, ApiError, Ctx};
use crate::registry::Resolved;
use crate::store::{Change, Kind, Object, ReadView};
use crate::types::*;

fn find(view: &ReadView, name: &str) -> Result<Service, ApiError> {
    view.find_service(name)?
        .ok_or_else(|| ApiError::NotFound(format!("service {name} not found")))
}

pub(super) fn normalized(mut spec: ServiceSpec) -> Result<ServiceSpec, ApiError> {
    validate::service_spec(&spec)?;
    spec.task.container.image = normalize_image(&spec.task.container.image)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(spec)
}

pub async fn create(
    State(ctx): State<Arc<Ctx>>,
    Json(body): Json<ServiceSpecBody>,
) -> Result<Json<Created>, ApiError> {
    ctx.identity()?;
    let no_resolve = body.no_resolve_image;
    let mut spec = normalized(body.into_spec()?)?;
    if ctx
        .store
        .read()?
        .find_service(&spec.name)?
        .is_some_and(|s| s.spec.name == spec.name)
    {
        return Err(ApiError::Conflict(format!(
            "service {} already exists",
            spec.name
        )));
    }
    super::networks::resolve_networks(&ctx.store.read()?, &mut spec)?;
    super::secrets::resolve(&ctx.store.read()?, &mut spec)?;
    admin_allowed(&ctx.store.read()?, &spec)?;
    let warnings = pin_image(&ctx.store.read()?, &mut spec.task.container, no_resolve).await?;
    let mut service = Service {
        id: new_id(),
        meta: Meta::default(),
        spec,
        spec_version: 1,
        previous_spec: None,
        vips: Vec::new(),
        update_status: None,
        rebalance: Vec::new(),
    };
    let id = service.id.clone();
    super::networks::write_service(&ctx, &mut service, true).await?;
    Ok(Json(Created { id, warnings }))
}

/// How long `service create` and `update` wait for the registry to say
/// what a tag points at.
const RESOLVE_WAIT: Duration = Duration::from_secs(15);

/// Pins the image's tag to the digest its registry has for it now (as
/// Swarm does), with the platforms it offers, so every node runs the same
/// image and the scheduler knows where it can run; when the registry
/// cannot be reached, to the one image the nodes hold under that tag
/// (loaded with `image load`). Returns what the user should know when
/// neither could say.
pub(super) async fn pin_image(
    view: &ReadView,
    c: &mut ContainerSpec,
    no_resolve: bool,
) -> Result<Vec<String>, ApiError> {
    c.image_digest = None;
    c.image_platforms = Vec::new();
    if no_resolve || c.image.contains('@') {
        return Ok(Vec::new());
    }
    let resolved = resolve_tag(view, &c.image).await?;
    pin_with(view, c, resolved)
}

/// What the registry of `image` says its tag names now, or why it could
/// not say, within `RESOLVE_WAIT`.
pub(super) async fn resolve_tag(
    view: &ReadView,
    image: &str,
) -> Result<Result<Resolved, String>, ApiError> {
    let host = registry_host(image);
    let access = view
        .cluster()?
        .and_then(|cl| cl.registries.into_iter().find(|r| r.host == host));
    Ok(
        match tokio::time::timeout(
            RESOLVE_WAIT,
            crate::registry::resolve(image, access.as_ref()),
        )
        .await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.0),
            Err(_) => Err(format!("no answer within {RESOLVE_WAIT:?}")),
        },
    )
}

/// Pins `c`'s image to what its registry answered, or, when it could not
/// be asked, to the one image the nodes hold under that tag.
pub(super) fn pin_with(
    view: &ReadView,
    c: &mut ContainerSpec,
    resolved: Result<Resolved, String>,
) -> Result<Vec<String>, ApiError> {
    let image = c.image.clone();
    let why = match resolved {
        Ok(r) => {
            c.image_digest = Some(r.digest);
            c.image_platforms = r.platforms;
            return Ok(Vec::new());
        }
        Err(why) => why,
    };
    // Unreachable (an air-gapped cluster, most often): the copies the
    // nodes hold under this tag decide, if they agree.
    let mut held: Vec<&ImageInfo> = Vec::new();
    let nodes = view.nodes()?;
    for n in &nodes {
        if let Some(i) = n.description.images.iter().find(|i| i.name == image) {
            if !held.iter().any(|h| h.digest == i.digest) {
                held.push(i);
            }
        }
    }
    Ok(match held.as_slice() {
        [one] if !one.digest.is_empty() => {
            c.image_digest = Some(one.digest.clone());
            c.image_platforms = one.platforms.clone();
            Vec::new()
        }
        [] => vec![format!(
            "no node has image {image} and its registry could not be asked for it ({why}): its tasks are rejected (and retried ever more slowly) until it can be pulled or is loaded with `shoal image load`"
        )],
        _ => vec![format!(
            "image {image} could not be accessed on a registry to record its digest ({why}), and nodes hold different images under that name: each node runs the one it has"
        )],
    })
}

pub async fn list(State(ctx): State<Arc<Ctx>>) -> Result<Json<Vec<ServiceRow>>, ApiError> {
    let view = ctx.read_current().await?;
    let tasks = view.tasks()?;
    let nodes = view.nodes()?;
    let mut services = view.services()?;
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let rows = services
        .iter()
        .map(|s| {
            let ts: Vec<Task> = tasks
                .iter()
                .filter(|t| t.service_id == s.id)
                .cloned()
                .collect();
            let global_target = crate::scheduler::eligible_for_global(&nodes, &s.spec.task).len();
            ServiceRow::new(s, &ts, global_target as u64)
        })
        .collect();
    Ok(Json(rows))
}

pub async fn inspect(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> Result<Json<ServiceBody>, ApiError> {
    Ok(Json((&find(&ctx.read_current().await?, &name)?).into()))
}

pub async fn tasks(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<TaskRow>>, ApiError> {
    let view = ctx.read_current().await?;
    let service = find(&view, &name)?;
    let nodes = view.nodes()?;
    let mut tasks = view.tasks_of_service(&service.id)?;
    // Slot order, newest first within a slot, as `docker service ps`.
    tasks.sort_by_key(|t| {
        (
            t.slot,
            // Global tasks are grouped by node; replicated ones by slot only.
            t.node_id.clone().filter(|_| t.slot == 0),
            std::cmp::Reverse((t.meta.created_ms, t.meta.version)),
        )
    });
    Ok(Json(
        tasks
            .iter()
            .map(|t| TaskRow::new(t, Some(&service), &nodes))
            .collect(),
    ))
}

pub async fn update(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    Json(req): Json<ServiceUpdate>,
) -> Result<Json<ServiceBody>, ApiError> {
    ctx.identity()?;
    let mut service = find(&ctx.store.read()?, &name)?;
    let mut spec = service.spec.clone();
    let c = &mut spec.task.container;
    let new_image = req.image.is_some();
    if let Some(image) = req.image {
        c.image = image;
    }
    if let Some(args) = req.args {
        c.args = args;
    }
    if req.entrypoint_reset {
        c.entrypoint = None;
    }
    if let Some(ep) = req.entrypoint {
        c.entrypoint = Some(ep);
    }
    edit_labels(
        &mut c.labels,
        &req.container_label_add,
        &req.container_label_rm,
    )?;
    if let Some(w) = req.workdir {
        c.workdir = Some(w).filter(|w| !w.is_empty());
    }
    if let Some(u) = req.user {
        c.user = Some(u).filter(|u| !u.is_empty());
    }
    if let Some(sig) = req.stop_signal {
        c.stop_signal = Some(sig).filter(|s| !s.is_empty());
    }
    if let Some(ms) = req.stop_grace_period_ms {
        c.stop_grace_period_ms = ms;
    }
    for cap in super::spec::caps(&req.cap_add)? {
        c.cap_drop.retain(|d| *d != cap);
        if !c.cap_add.contains(&cap) {
            c.cap_add.push(cap);
        }
    }
    for cap in super::spec::caps(&req.cap_drop)? {
        c.cap_add.retain(|a| *a != cap);
        if !c.cap_drop.contains(&cap) {
            c.cap_drop.push(cap);
        }
    }
    if let Some(ro) = req.read_only {
        c.read_only = ro;
    }
    req.options.apply(&name, c)?;
    for key in &req.env_rm {
        c.env.retain(|e| e.split('=').next() != Some(key.as_str()));
    }
    for kv in &req.env_add {
        let key = kv.split('=').next().unwrap_or("");
        c.env.retain(|e| e.split('=').next() != Some(key));
        c.env.push(kv.clone());
    }
    for p in &req.publish_rm {
        let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
        let port: u16 = port.parse().map_err(|_| {
            ApiError::BadRequest(format!("invalid port {p:?}: expected PORT or PORT/udp"))
        })?;
        let before = spec.task.ports.len();
        spec.task
            .ports
            .retain(|c| !(c.published == port && c.protocol.as_str() == proto));
        if spec.task.ports.len() == before {
            return Err(ApiError::BadRequest(format!(
                "service {name} publishes no port {port}/{proto}"
            )));
        }
    }
    for p in super::spec::ports(req.publish_add.clone())? {
        spec.task
            .ports
            .retain(|c| !(c.published == p.published && c.protocol == p.protocol));
        spec.task.ports.push(p);
    }
    edit_labels(&mut spec.labels, &req.label_add, &req.label_rm)?;
    let restart = &mut spec.task.restart;
    if let Some(cond) = &req.restart_condition {
        restart.condition = cond.parse().map_err(ApiError::BadRequest)?;
    }
    if let Some(ms) = req.restart_delay_ms {
        restart.delay_ms = ms;
    }
    if let Some(n) = req.restart_max_attempts {
        restart.max_attempts = Some(n).filter(|n| *n > 0);
    }
    edit_networks(&ctx, &name, &mut spec, &req.network_add, &req.network_rm)?;
    edit_files(
        &name,
        "secret",
        &mut spec.task.secrets,
        &req.secret_add,
        &req.secret_rm,
    )?;
    edit_files(
        &name,
        "config",
        &mut spec.task.configs,
        &req.config_add,
        &req.config_rm,
    )?;
    super::secrets::resolve(&ctx.store.read()?, &mut spec)?;
    for target in &req.mount_rm {
        let before = spec.task.mounts.len();
        spec.task.mounts.retain(|m| m.target != *target);
        if spec.task.mounts.len() == before {
            return Err(ApiError::BadRequest(format!(
                "service {name} has no mount at {target}"
            )));
        }
    }
    for m in super::spec::mounts(req.mount_add.clone())? {
        spec.task.mounts.retain(|o| o.target != m.target);
        spec.task.mounts.push(m);
    }
    admin_allowed(&ctx.store.read()?, &spec)?;
    if let Some(m) = &req.endpoint_mode {
        spec.endpoint_mode = m.parse().map_err(ApiError::BadRequest)?;
    }
    spec.update = req.update.apply(&spec.update, "update")?;
    spec.rollback = req.rollback.apply(&spec.rollback, "rollback")?;
    if req.force {
        spec.task.force_update += 1;
    }
    req.resources.apply(&mut spec.task.resources);
    let placement = &mut spec.task.placement;
    for c in &req.constraint_rm {
        if !placement.constraints.contains(c) {
            return Err(ApiError::BadRequest(format!(
                "service {name} has no constraint {c:?}"
            )));
        }
        placement.constraints.retain(|x| x != c);
    }
    for c in &req.constraint_add {
        if !placement.constraints.contains(c) {
            placement.constraints.push(c.clone());
        }
    }
    for p in super::spec::spread_prefs(req.placement_pref_rm.clone())? {
        placement.spread.retain(|x| *x != p);
    }
    for p in super::spec::spread_prefs(req.placement_pref_add.clone())? {
        if !placement.spread.contains(&p) {
            placement.spread.push(p);
        }
    }
    if let Some(n) = req.max_replicas_per_node {
        placement.max_replicas_per_node = n;
    }
    spec.task.health = req
        .health
        .apply(spec.task.health.take())
        .map_err(ApiError::BadRequest)?;
    if let Some(n) = req.replicas {
        match &mut spec.mode {
            ServiceMode::Replicated { replicas } => *replicas = n,
            ServiceMode::ReplicatedJob { completions, .. } => *completions = n,
            ServiceMode::Global | ServiceMode::GlobalJob => {
                return Err(ApiError::BadRequest(format!(
                    "service {name} is global: replicas apply to replicated services only"
                )))
            }
        }
    }
    if let Some(n) = req.max_concurrent {
        match &mut spec.mode {
            ServiceMode::ReplicatedJob { max_concurrent, .. } => *max_concurrent = n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "service {name} is not a replicated job: --max-concurrent applies to replicated jobs only"
                )))
            }
        }
    }
    let mut spec = normalized(spec)?;
    let warnings = if new_image {
        pin_image(
            &ctx.store.read()?,
            &mut spec.task.container,
            req.no_resolve_image,
        )
        .await?
    } else {
        Vec::new()
    };
    service.set_spec(spec, now_ms());
    super::networks::write_service(&ctx, &mut service, false).await?;
    let view = ctx.store.read()?;
    let mut body: ServiceBody = (&find(&view, &service.id)?).into();
    body.warnings = warnings;
    Ok(Json(body))
}

/// What is root on the node is only what an admin allowed: every bind
/// mount of `spec` is of a path the cluster allows (`cluster update
/// --bind-allow`; a bind of `/` is root on the node), and `--privileged`
/// only with `--allow-privileged`. Task options are written only once
/// every manager can keep them (an older one would drop them when it
/// rewrites the service).
pub(super) fn admin_allowed(view: &ReadView, spec: &ServiceSpec) -> Result<(), ApiError> {
    let cluster = view.cluster()?;
    if spec.task.container.privileged && !cluster.as_ref().is_some_and(|c| c.allow_privileged) {
        return Err(ApiError::BadRequest(
            "privileged services are not allowed: a privileged task is root on its node (an admin allows them with `shoal cluster update --allow-privileged true`)".into(),
        ));
    }
    if spec.task.container.has_options()
        || !spec.task.mounts.is_empty()
        || !spec.depends_on.is_empty()
    {
        super::networks::managers_support(view, crate::LEVEL_OPTIONS, "task options")?;
    }
    let prefixes = cluster.map(|c| c.bind_prefixes).unwrap_or_default();
    for m in spec
        .task
        .mounts
        .iter()
        .filter(|m| m.kind == MountKind::Bind)
    {
        if !prefixes.iter().any(|p| path_under(&m.source, p)) {
            return Err(ApiError::BadRequest(format!(
                "bind mounts of {} are not allowed: the cluster allows {} (an admin adds a prefix with `shoal cluster update --bind-allow PATH`)",
                m.source,
                if prefixes.is_empty() {
                    "none".to_string()
                } else {
                    prefixes.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// Removes the keys of `rm` (each must be there) and sets the `KEY=VALUE`
/// pairs of `add`.
fn edit_labels(
    labels: &mut BTreeMap<String, String>,
    add: &[String],
    rm: &[String],
) -> Result<(), ApiError> {
    for key in rm {
        if labels.remove(key).is_none() {
            return Err(ApiError::BadRequest(format!("there is no label {key:?}")));
        }
    }
    for kv in add {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(())
}

/// `--secret-rm NAME` (each one the service uses) and `--secret-add`
/// (which replaces one of the same name); the same for configs.
fn edit_files(
    service: &str,
    what: &str,
    list: &mut Vec<FileRef>,
    add: &[super::spec::FileRefBody],
    rm: &[String],
) -> Result<(), ApiError> {
    for name in rm {
        let before = list.len();
        list.retain(|f| f.name != *name && f.id != *name);
        if list.len() == before {
            return Err(ApiError::BadRequest(format!(
                "service {service} uses no {what} {name}"
            )));
        }
    }
    for r in super::spec::file_refs(add.to_vec())? {
        list.retain(|f| f.name != r.name);
        list.push(r);
    }
    Ok(())
}

/// `--network-rm` (each one a network the service is on) and
/// `--network-add`, names resolved to ids.
fn edit_networks(
    ctx: &Ctx,
    name: &str,
    spec: &mut ServiceSpec,
    add: &[String],
    rm: &[String],
) -> Result<(), ApiError> {
    if add.is_empty() && rm.is_empty() {
        return Ok(());
    }
    let view = ctx.store.read()?;
    if spec.task.network.is_host() && !add.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "service {name} is on the host's network, which cannot be combined with other networks"
        )));
    }
    let mut list: Vec<NetworkAttachment> = match &spec.task.network {
        NetworkMode::Own(l) => l.clone(),
        NetworkMode::Host => Vec::new(),
    };
    for n in rm {
        let id = super::networks::find(&view, n)?.id;
        let before = list.len();
        list.retain(|a| a.network != id);
        if list.len() == before {
            return Err(ApiError::BadRequest(format!(
                "service {name} is not on network {n}"
            )));
        }
    }
    let mut added = ServiceSpec {
        task: TaskSpec {
            network: NetworkMode::Own(
                add.iter()
                    .map(|n| NetworkAttachment {
                        network: n.clone(),
                        aliases: Vec::new(),
                    })
                    .collect(),
            ),
            ..Default::default()
        },
        ..spec.clone()
    };
    super::networks::resolve_networks(&view, &mut added)?;
    for a in added.task.network.network_ids() {
        if !list.iter().any(|x| x.network == a) {
            list.push(NetworkAttachment {
                network: a.to_string(),
                aliases: Vec::new(),
            });
        }
    }
    spec.task.network = NetworkMode::Own(list);
    Ok(())
}

/// `service rollback`: the previous spec in force again, rolled out with
/// its rollback policy.
pub async fn rollback(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> Result<Json<ServiceBody>, ApiError> {
    ctx.identity()?;
    let service = find(&ctx.store.read()?, &name)?;
    if service.spec.mode.is_job() {
        return Err(ApiError::BadRequest(format!(
            "service {name} is a job: a job does not roll back; `service update` runs it again with any spec"
        )));
    }
    let Some(mut back) = service.rolled_back("manually requested rollback".into(), now_ms()) else {
        return Err(ApiError::BadRequest(format!(
            "service {name} has no previous spec to roll back to"
        )));
    };
    // The previous spec may name a network that was removed since, or
    // bind a path no longer allowed.
    validate::service_spec(&back.spec)?;
    admin_allowed(&ctx.store.read()?, &back.spec)?;
    super::networks::write_service(&ctx, &mut back, false).await?;
    let view = ctx.store.read()?;
    Ok(Json((&find(&view, &service.id)?).into()))
}

/// `service rebalance`: the tasks an even spread does not need where
/// they are move, as an update replaces tasks (its policy, its progress).
pub async fn rebalance(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> Result<Json<ServiceBody>, ApiError> {
    ctx.identity()?;
    let view = ctx.store.read()?;
    let mut service = find(&view, &name)?;
    if !matches!(service.spec.mode, ServiceMode::Replicated { .. }) {
        return Err(ApiError::BadRequest(format!(
            "service {name} is {}: only replicated services can be rebalanced (global ones run one task per node)",
            service.spec.mode.name()
        )));
    }
    if service
        .update_status
        .as_ref()
        .is_some_and(|u| u.state.in_progress())
    {
        return Err(ApiError::Conflict(format!(
            "service {name} is being updated: rebalance it once its rollout ends"
        )));
    }
    let tasks = view.tasks_of_service(&service.id)?;
    let live: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.is_live() && t.node_id.is_some())
        .collect();
    let nodes = view.nodes()?;
    let eligible: Vec<String> = crate::scheduler::eligible_for_global(&nodes, &service.spec.task);
    let moves = crate::scheduler::rebalance_moves(&live, &eligible);
    drop(view);
    let mut body: ServiceBody = if moves.is_empty() {
        (&service).into()
    } else {
        service.rebalanced(moves, now_ms());
        ctx.proposer
            .propose(vec![Change::Update(Object::Service(service.clone()))])
            .await?;
        (&find(&ctx.store.read()?, &service.id)?).into()
    };
    if body.rebalance.is_empty() {
        body.warnings.push(format!(
            "service {name} is balanced already: {} tasks over {} nodes",
            live.len(),
            eligible.len()
        ));
    }
    Ok(Json(body))
}

pub async fn scale(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    Json(req): Json<ScaleRequest>,
) -> Result<Json<Created>, ApiError> {
    ctx.identity()?;
    let mut service = find(&ctx.store.read()?, &name)?;
    match &mut service.spec.mode {
        ServiceMode::Replicated { replicas } => *replicas = req.replicas,
        ServiceMode::ReplicatedJob { completions, .. } => *completions = req.replicas,
        ServiceMode::Global | ServiceMode::GlobalJob => {
            return Err(ApiError::BadRequest(format!(
                "service {name} is global: only replicated services can be scaled"
            )))
        }
    }
    validate::service_spec(&service.spec)?;
    let id = service.id.clone();
    ctx.proposer
        .propose(vec![Change::Update(Object::Service(service))])
        .await?;
    Ok(Json(Created {
        id,
        warnings: Vec::new(),
    }))
}

pub async fn remove(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> Result<Json<Created>, ApiError> {
    ctx.identity()?;
    let service = find(&ctx.store.read()?, &name)?;
    // Its tasks are stopped and removed by the orchestrator and reaper.
    ctx.proposer
        .propose(vec![Change::Delete {
            kind: Kind::Service,
            id: service.id.clone(),
            expected_version: Some(service.meta.version),
        }])
        .await?;
    Ok(Json(Created {
        id: service.id,
        warnings: Vec::new(),
    }))
}
