//! Stacks: the services, networks, secrets and configs that carry the
//! label `com.docker.stack.namespace=STACK`. A deploy is one change set:
//! every part is checked against the store before anything is written,
//! then the objects the services use are created, then every service
//! change (create, update, prune) is proposed at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;

use axum::extract::{Path, State};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::networks::NetworkCreate;
use super::secrets::FileCreate;
use super::spec::{ServiceBody, ServiceSpecBody, HOST_NETWORK};
use super::stack_types::*;
use super::types::TaskRow;
use super::{ApiError, Ctx};
use crate::registry::Resolved;
use crate::store::{Change, Kind, Object, ReadView};
use crate::types::*;

/// Bounds of one deploy, far above any real application's.
const MAX_SERVICES: usize = 1000;
const MAX_OBJECTS: usize = 1000;

/// A stack's objects as `stack services`, `ps` and `rm` need them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackInfo {
    pub name: String,
    pub services: Vec<ServiceBody>,
    pub networks: Vec<String>,
    pub secrets: Vec<String>,
    pub configs: Vec<String>,
}

fn valid_stack_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "invalid stack name {name:?}: use 1-40 letters, digits, '-', '_' or '.', starting with a letter or digit"
    )))
}

fn of_stack(labels: &BTreeMap<String, String>, stack: &str) -> bool {
    labels.get(NAMESPACE_LABEL).map(String::as_str) == Some(stack)
}

fn stack_services(view: &ReadView, stack: &str) -> Result<Vec<Service>, ApiError> {
    let mut out: Vec<Service> = view
        .services()?
        .into_iter()
        .filter(|s| of_stack(&s.spec.labels, stack))
        .collect();
    out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    Ok(out)
}

pub async fn list(State(ctx): State<Arc<Ctx>>) -> Result<Json<Vec<StackRow>>, ApiError> {
    let view = ctx.read_current().await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for s in view.services()? {
        if let Some(stack) = s.spec.labels.get(NAMESPACE_LABEL) {
            *counts.entry(stack.clone()).or_default() += 1;
        }
    }
    Ok(Json(
        counts
            .into_iter()
            .map(|(name, services)| StackRow {
                name,
                services,
                orchestrator: "swarm".into(),
            })
            .collect(),
    ))
}

pub async fn inspect(
    State(ctx): State<Arc<Ctx>>,
    Path(stack): Path<String>,
) -> Result<Json<StackInfo>, ApiError> {
    let view = ctx.read_current().await?;
    let services = stack_services(&view, &stack)?;
    let networks: Vec<String> = view
        .networks()?
        .into_iter()
        .filter(|n| of_stack(&n.spec.labels, &stack))
        .map(|n| n.spec.name)
        .collect();
    let files = |kind| -> Result<Vec<String>, ApiError> {
        let all = match kind {
            Kind::Config => view.configs()?,
            _ => view.secrets()?,
        };
        Ok(all
            .into_iter()
            .filter(|f| of_stack(&f.spec.labels, &stack))
            .map(|f| f.spec.name)
            .collect())
    };
    let (secrets, configs) = (files(Kind::Secret)?, files(Kind::Config)?);
    if services.is_empty() && networks.is_empty() && secrets.is_empty() && configs.is_empty() {
        return Err(ApiError::NotFound(format!(
            "nothing found in stack: {stack}"
        )));
    }
    Ok(Json(StackInfo {
        name: stack,
        services: services.iter().map(Into::into).collect(),
        networks,
        secrets,
        configs,
    }))
}

/// The tasks of the stack's services, and those of its services removed
/// a moment ago that are still there (as `stack rm` waits for them to go).
pub async fn tasks(
    State(ctx): State<Arc<Ctx>>,
    Path(stack): Path<String>,
) -> Result<Json<Vec<TaskRow>>, ApiError> {
    let view = ctx.read_current().await?;
    let services = stack_services(&view, &stack)?;
    let nodes = view.nodes()?;
    let mut tasks: Vec<Task> = view
        .tasks()?
        .into_iter()
        .filter(|t| {
            services.iter().any(|s| s.id == t.service_id)
                || of_stack(&t.spec.container.labels, &stack)
        })
        .collect();
    tasks.sort_by_key(|t| {
        (
            t.service_name.clone(),
            t.slot,
            t.node_id.clone().filter(|_| t.slot == 0),
            std::cmp::Reverse((t.meta.created_ms, t.meta.version)),
        )
    });
    Ok(Json(
        tasks
            .iter()
            .map(|t| TaskRow::new(t, services.iter().find(|s| s.id == t.service_id), &nodes))
            .collect(),
    ))
}

/// What a deploy will do to one service.
enum Step {
    Create(Box<ServiceSpec>, bool),
    Update(Box<Service>, Box<ServiceSpec>, bool),
    Remove(Box<Service>),
}

pub async fn deploy(
    State(ctx): State<Arc<Ctx>>,
    Path(stack): Path<String>,
    Json(mut req): Json<StackDeploy>,
) -> Result<Json<StackPlan>, ApiError> {
    ctx.identity()?;
    valid_stack_name(&stack)?;
    if req.services.len() > MAX_SERVICES
        || req.networks.len() + req.secrets.len() + req.configs.len() > MAX_OBJECTS
    {
        return Err(ApiError::BadRequest(format!(
            "a stack holds at most {MAX_SERVICES} services and {MAX_OBJECTS} networks, secrets and configs"
        )));
    }
    label(&stack, &mut req);
    if req.resolve_image == ResolveImage::Never {
        for s in &mut req.services {
            s.no_resolve_image = true;
        }
    }
    let view = ctx.read_current().await?;
    let fresh = resolve_tags(&view, &req).await?;
    let mut plan = StackPlan::default();
    let objects = plan_objects(&view, &stack, &req, &mut plan)?;
    let steps = plan_services(&view, &stack, &req, &fresh, &mut plan)?;
    if req.dry_run {
        return Ok(Json(plan));
    }
    if !objects.is_empty() {
        ctx.proposer.propose(objects).await?;
    }
    let view = ctx.read_current().await?;
    let changes = service_changes(&view, steps, &fresh, &mut plan.warnings).await?;
    if !changes.is_empty() {
        ctx.proposer.propose(changes).await?;
    }
    Ok(Json(plan))
}

/// What the registries answered for each image tag of a deploy (by its
/// normalized name), or why they could not.
type Fresh = HashMap<String, Result<Resolved, String>>;

/// Tags asked of their registries at once.
const RESOLVE_AT_ONCE: usize = 8;

/// The longest a deploy waits for the registries, all tags together (each
/// also waits at most `service create`'s 15 s): a stack of many images on
/// stalled registries is planned with what answered by then.
const RESOLVE_ALL_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// What each image tag of the deploy names now, asked once per image and
/// a few at a time (`--resolve-image always`, docker's default); nothing
/// otherwise. A tag pushed again since the last deploy then shows as a
/// change of its services' image digest.
async fn resolve_tags(view: &ReadView, req: &StackDeploy) -> Result<Fresh, ApiError> {
    if req.resolve_image != ResolveImage::Always {
        return Ok(Fresh::new());
    }
    let mut images: Vec<String> = req
        .services
        .iter()
        .filter(|b| !b.no_resolve_image)
        .filter_map(|b| normalize_image(&b.image).ok())
        .filter(|i| !i.contains('@'))
        .collect();
    images.sort_unstable();
    images.dedup();
    type Answer = Result<(String, Result<Resolved, String>), ApiError>;
    let deadline = tokio::time::Instant::now() + RESOLVE_ALL_WITHIN;
    let answers: Vec<Answer> = futures::stream::iter(images)
        .map(|image| async move {
            let asked = super::services::resolve_tag(view, &image);
            let r = match tokio::time::timeout_at(deadline, asked).await {
                Ok(r) => r?,
                Err(_) => Err(format!(
                    "no answer within the deploy's {RESOLVE_ALL_WITHIN:?} for all its images"
                )),
            };
            Ok((image, r))
        })
        .buffer_unordered(RESOLVE_AT_ONCE)
        .collect()
        .await;
    answers.into_iter().collect()
}

/// Everything the stack creates carries its namespace, whatever the
/// client sent.
fn label(stack: &str, req: &mut StackDeploy) {
    let ns = || (NAMESPACE_LABEL.to_string(), stack.to_string());
    for s in &mut req.services {
        s.labels.extend([ns()]);
        s.container_labels.extend([ns()]);
    }
    for n in req.networks.iter_mut().filter(|n| !n.external) {
        n.spec.labels.extend([ns()]);
    }
    for f in req
        .secrets
        .iter_mut()
        .chain(req.configs.iter_mut())
        .filter(|f| !f.external)
    {
        f.labels.extend([ns()]);
    }
}

fn change(action: &str, kind: &str, name: &str, fields: Vec<String>) -> PlanChange {
    PlanChange {
        action: action.into(),
        kind: kind.into(),
        name: name.into(),
        fields,
    }
}

/// The networks, secrets and configs to create; those that exist are
/// checked to be what the files say, as none of them can be changed.
fn plan_objects(
    view: &ReadView,
    stack: &str,
    req: &StackDeploy,
    plan: &mut StackPlan,
) -> Result<Vec<Change>, ApiError> {
    let mut out = Vec::new();
    let mut subnets: Vec<ipnet::Ipv4Net> = Vec::new();
    for n in &req.networks {
        let name = &n.spec.name;
        let existing = view.find_network(name)?.filter(|e| e.spec.name == *name);
        match existing {
            None if n.external || name == HOST_NETWORK => {
                if !n.external {
                    return Err(ApiError::BadRequest(format!(
                        "network {name} is predefined: use it with external: true"
                    )));
                }
                if name != HOST_NETWORK {
                    return Err(ApiError::NotFound(format!(
                        "network {name} is declared as external, but could not be found: create it with `shoal network create`"
                    )));
                }
            }
            None => {
                let network = super::networks::new_network(view, n.spec.clone(), &subnets)?;
                subnets.extend(crate::ipam::parse_subnet(&network.spec.subnet).ok());
                plan.changes.push(change("create", "network", name, Vec::new()));
                out.push(Change::Create(Object::Network(network)));
            }
            Some(_) if n.external => {}
            Some(e) if !of_stack(&e.spec.labels, stack) => {
                return Err(ApiError::Conflict(format!(
                    "network {name} exists and is not part of stack {stack}: declare it external: true, or give the stack's network another name"
                )))
            }
            Some(e) => {
                let fields = network_differs(&e.spec, &n.spec)?;
                if !fields.is_empty() {
                    return Err(ApiError::Conflict(format!(
                        "network {name} exists with another {}: a network cannot be changed; remove the stack (`shoal stack rm {stack}`) and deploy it again, or give the network another name",
                        fields.join(", ")
                    )));
                }
                plan.changes.push(change("unchanged", "network", name, Vec::new()));
            }
        }
    }
    for (kind, list) in [(Kind::Secret, &req.secrets), (Kind::Config, &req.configs)] {
        let what = kind.as_str();
        for f in list {
            let existing = view
                .find_file(kind, &f.name)?
                .filter(|e| e.spec.name == f.name);
            match existing {
                None if f.external => {
                    return Err(ApiError::NotFound(format!(
                        "{what} {} is declared as external, but could not be found: create it with `shoal {what} create`",
                        f.name
                    )))
                }
                None => {
                    let new = super::secrets::new_file(
                        view,
                        kind,
                        FileCreate {
                            name: f.name.clone(),
                            labels: f.labels.clone(),
                            data: f.data.clone(),
                        },
                    )?;
                    plan.changes.push(change("create", what, &f.name, Vec::new()));
                    out.push(Change::Create(match kind {
                        Kind::Config => Object::Config(new),
                        _ => Object::Secret(new),
                    }));
                }
                Some(_) if f.external => {}
                Some(e) if !of_stack(&e.spec.labels, stack) => {
                    return Err(ApiError::Conflict(format!(
                        "{what} {} exists and is not part of stack {stack}: declare it external: true, or give the stack's {what} another name",
                        f.name
                    )))
                }
                Some(e) => {
                    let data = base64::engine::general_purpose::STANDARD.decode(&f.data);
                    if !data.is_ok_and(|d| d[..] == e.spec.data[..]) {
                        return Err(ApiError::Conflict(format!(
                            "{what} {} exists with other data: a {what} cannot be changed; give it a new name (`name:` in the file, such as {}_v2) and deploy again",
                            f.name, f.name
                        )));
                    }
                    plan.changes.push(change("unchanged", what, &f.name, Vec::new()));
                }
            }
        }
    }
    Ok(out)
}

/// The settings of network `e` that differ from what `req` asks for.
fn network_differs(e: &NetworkSpec, req: &NetworkCreate) -> Result<Vec<String>, ApiError> {
    let (want, subnet) = super::networks::spec(req.clone())?;
    let mut fields = Vec::new();
    if want.driver != e.driver {
        fields.push("driver".to_string());
    }
    if want.encrypted != e.encrypted {
        fields.push("encryption".into());
    }
    if want.attachable != e.attachable {
        fields.push("attachable".into());
    }
    if subnet.is_some() && (want.subnet != e.subnet || want.gateway != e.gateway) {
        fields.push("subnet".into());
    }
    Ok(fields)
}

/// What each service of the stack becomes; cycles and unknown
/// dependencies refused.
fn plan_services(
    view: &ReadView,
    stack: &str,
    req: &StackDeploy,
    fresh: &Fresh,
    plan: &mut StackPlan,
) -> Result<Vec<Step>, ApiError> {
    let existing = stack_services(view, stack)?;
    let mut unasked: Vec<String> = Vec::new();
    let mut names: Vec<&str> = req.services.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(ApiError::BadRequest(format!(
            "service {} is given twice",
            w[0]
        )));
    }
    check_dependencies(view, &req.services)?;
    let mut steps = Vec::new();
    for body in &req.services {
        let no_resolve = body.no_resolve_image;
        let spec = body
            .clone()
            .into_spec()
            .and_then(super::services::normalized)
            .map_err(|e| of_service(&body.name, e))?;
        check_refs(view, req, &spec).map_err(|e| of_service(&body.name, e))?;
        let name = spec.name.clone();
        let current = view.find_service(&name)?.filter(|s| s.spec.name == name);
        match current {
            None => {
                plan.changes
                    .push(change("create", "service", &name, Vec::new()));
                steps.push(Step::Create(Box::new(spec), no_resolve));
            }
            Some(s) if !of_stack(&s.spec.labels, stack) => {
                return Err(ApiError::Conflict(format!(
                    "service {name} exists and is not part of stack {stack}"
                )))
            }
            Some(s) => {
                let mut fields =
                    differences(&comparable(view, &s.spec)?, &comparable(view, &spec)?);
                let (old, new) = (&s.spec.task.container, &spec.task.container);
                match fresh.get(&new.image) {
                    _ if old.image != new.image || no_resolve => {}
                    Some(Ok(r)) if old.image_digest.as_ref() != Some(&r.digest) => {
                        fields.push("image digest".into());
                    }
                    Some(Err(why)) if !unasked.contains(&new.image) => {
                        plan.warnings.push(format!(
                            "image {}: its registry could not say what the tag names now ({why}): services keep the image they run",
                            new.image
                        ));
                        unasked.push(new.image.clone());
                    }
                    _ => {}
                }
                if fields.is_empty() {
                    plan.changes
                        .push(change("unchanged", "service", &name, Vec::new()));
                } else {
                    plan.changes
                        .push(change("update", "service", &name, fields));
                    steps.push(Step::Update(Box::new(s), Box::new(spec), no_resolve));
                }
            }
        }
    }
    for s in existing {
        if req.services.iter().any(|b| b.name == s.spec.name) {
            continue;
        }
        if req.prune {
            plan.changes
                .push(change("remove", "service", &s.spec.name, Vec::new()));
            steps.push(Step::Remove(Box::new(s)));
        } else {
            plan.warnings.push(format!(
                "service {} is no longer in the files: it is kept (--prune removes it)",
                s.spec.name
            ));
        }
    }
    Ok(steps)
}

/// A service's spec in the words of the API, with what the managers add
/// to it (the image's digest, ids of networks, secrets and configs, the
/// default file targets) put back into the user's words, so that a file
/// deployed twice compares equal.
fn comparable(view: &ReadView, spec: &ServiceSpec) -> Result<serde_json::Value, ApiError> {
    let mut body = ServiceSpecBody::from(spec);
    body.image_digest = None;
    body.image_platforms = Vec::new();
    let name_of = |n: &String| -> Result<String, ApiError> {
        Ok(view.find_network(n)?.map_or(n.clone(), |f| f.spec.name))
    };
    for n in &mut body.networks {
        *n = name_of(n)?;
    }
    body.network_aliases = std::mem::take(&mut body.network_aliases)
        .into_iter()
        .map(|(n, a)| Ok((name_of(&n)?, a)))
        .collect::<Result<_, ApiError>>()?;
    for (kind, list) in [
        (Kind::Secret, &mut body.secrets),
        (Kind::Config, &mut body.configs),
    ] {
        for f in list.iter_mut() {
            f.id.clear();
            if f.target.is_empty() {
                f.target = match kind {
                    Kind::Config => format!("/{}", f.source),
                    _ => f.source.clone(),
                };
            }
        }
    }
    serde_json::to_value(&body).map_err(|e| ApiError::Internal(e.to_string()))
}

/// What a service uses is in the stack or exists, and it asks for nothing
/// the cluster does not allow: checked before anything is written, so
/// that a refusal leaves nothing behind.
fn check_refs(view: &ReadView, req: &StackDeploy, spec: &ServiceSpec) -> Result<(), ApiError> {
    for id in spec.task.network.network_ids() {
        if !req.networks.iter().any(|n| n.spec.name == id) && view.find_network(id)?.is_none() {
            return Err(ApiError::NotFound(format!("network {id} not found")));
        }
    }
    for (kind, refs, listed) in [
        (Kind::Secret, &spec.task.secrets, &req.secrets),
        (Kind::Config, &spec.task.configs, &req.configs),
    ] {
        for r in refs {
            if !listed.iter().any(|f| f.name == r.name) && view.find_file(kind, &r.name)?.is_none()
            {
                return Err(ApiError::NotFound(format!(
                    "{} {} not found",
                    kind.as_str(),
                    r.name
                )));
            }
        }
    }
    super::services::admin_allowed(view, spec)
}

/// The keys of `a` and `b` whose values differ, one level into objects
/// (`update.parallelism`).
fn differences(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x == y {
            continue;
        }
        match (x.and_then(|v| v.as_object()), y.and_then(|v| v.as_object())) {
            (Some(_), Some(_)) => {
                let null = serde_json::Value::Null;
                for sub in differences(x.unwrap_or(&null), y.unwrap_or(&null)) {
                    out.push(format!("{k}.{sub}"));
                }
            }
            _ => out.push(k.clone()),
        }
    }
    out
}

/// `depends_on` within the stack: every service named is in the stack or
/// exists, and no service waits, however indirectly, for itself.
fn check_dependencies(view: &ReadView, services: &[ServiceSpecBody]) -> Result<(), ApiError> {
    let deps: HashMap<&str, Vec<&str>> = services
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.depends_on.iter().map(|d| d.service.as_str()).collect(),
            )
        })
        .collect();
    for s in services {
        for d in &s.depends_on {
            if !deps.contains_key(d.service.as_str()) && view.find_service(&d.service)?.is_none() {
                return Err(ApiError::BadRequest(format!(
                    "service {} depends on {}, which is neither in the stack nor a service",
                    s.name, d.service
                )));
            }
        }
    }
    // Depth-first, in name order so the same files name the same cycle.
    let mut names: Vec<&str> = deps.keys().copied().collect();
    names.sort_unstable();
    let mut done: Vec<&str> = Vec::new();
    for start in names {
        let mut path = vec![start];
        if let Some(cycle) = find_cycle(&deps, &mut path, &mut done) {
            return Err(ApiError::BadRequest(format!(
                "dependency cycle: {}",
                cycle.join(" -> ")
            )));
        }
    }
    Ok(())
}

fn find_cycle<'a>(
    deps: &HashMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
    done: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    let here = *path.last()?;
    if done.contains(&here) {
        return None;
    }
    for &next in deps.get(here).map(Vec::as_slice).unwrap_or_default() {
        if let Some(at) = path.iter().position(|p| *p == next) {
            let mut cycle = path[at..].to_vec();
            cycle.push(next);
            return Some(cycle);
        }
        path.push(next);
        let found = find_cycle(deps, path, done);
        path.pop();
        if found.is_some() {
            return found;
        }
    }
    done.push(here);
    None
}

/// The store changes of the service steps, made against `view` (where
/// the stack's networks, secrets and configs now exist): names resolved
/// to ids, images pinned, virtual IPs given, as `service create` and
/// `update` do.
async fn service_changes(
    view: &ReadView,
    steps: Vec<Step>,
    fresh: &Fresh,
    warnings: &mut Vec<String>,
) -> Result<Vec<Change>, ApiError> {
    let mut written: Vec<Service> = Vec::new();
    let mut created: Vec<bool> = Vec::new();
    let mut changes = Vec::new();
    for step in steps {
        let mut service = match step {
            Step::Remove(s) => {
                changes.push(Change::Delete {
                    kind: Kind::Service,
                    id: s.id.clone(),
                    expected_version: Some(s.meta.version),
                });
                continue;
            }
            Step::Create(mut spec, no_resolve) => {
                prepare(view, &mut spec)?;
                created.push(true);
                warnings.extend(pin(view, &mut spec.task.container, no_resolve, fresh).await?);
                Service {
                    id: new_id(),
                    meta: Meta::default(),
                    spec: *spec,
                    spec_version: 1,
                    previous_spec: None,
                    vips: Vec::new(),
                    update_status: None,
                    rebalance: Vec::new(),
                }
            }
            Step::Update(mut s, mut spec, no_resolve) => {
                prepare(view, &mut spec)?;
                created.push(false);
                // What the user does not say in a file stays as it was: the
                // pinned digest of an unchanged image, `update --force`'s
                // count, a network's aliases.
                // An image the registry could not be asked about keeps it.
                let (old, new) = (&s.spec.task.container, &mut spec.task.container);
                let asked = fresh.get(&new.image).is_some_and(|r| r.is_ok()) && !no_resolve;
                if old.image == new.image && !asked {
                    new.image_digest = old.image_digest.clone();
                    new.image_platforms = old.image_platforms.clone();
                } else {
                    warnings.extend(pin(view, new, no_resolve, fresh).await?);
                }
                spec.task.force_update = s.spec.task.force_update;
                s.set_spec(*spec, now_ms());
                *s
            }
        };
        super::networks::assign_vips_among(view, &mut service, &written)?;
        written.push(service.clone());
    }
    for (s, create) in written.into_iter().zip(created) {
        changes.push(match create {
            true => Change::Create(Object::Service(s)),
            false => Change::Update(Object::Service(s)),
        });
    }
    Ok(changes)
}

/// What `service create` checks and resolves before it writes a spec.
fn prepare(view: &ReadView, spec: &mut ServiceSpec) -> Result<(), ApiError> {
    super::networks::resolve_networks(view, spec)
        .and_then(|_| super::secrets::resolve(view, spec))
        .and_then(|_| super::services::admin_allowed(view, spec))
        .map_err(|e| of_service(&spec.name, e))
}

/// A refusal of one service of the stack, saying which.
fn of_service(name: &str, e: ApiError) -> ApiError {
    match e {
        ApiError::BadRequest(m) => ApiError::BadRequest(format!("service {name}: {m}")),
        ApiError::NotFound(m) => ApiError::NotFound(format!("service {name}: {m}")),
        ApiError::Conflict(m) => ApiError::Conflict(format!("service {name}: {m}")),
        other => other,
    }
}

/// Pins `c`'s image as `service create` does, with what the deploy has
/// already asked the registry, if it did.
async fn pin(
    view: &ReadView,
    c: &mut ContainerSpec,
    no_resolve: bool,
    fresh: &Fresh,
) -> Result<Vec<String>, ApiError> {
    match fresh.get(&c.image) {
        Some(r) if !no_resolve => {
            c.image_digest = None;
            c.image_platforms = Vec::new();
            super::services::pin_with(view, c, r.clone())
        }
        _ => super::services::pin_image(view, c, no_resolve).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_the_fields_and_one_level_in() {
        let a = json!({"image": "a", "replicas": 1, "update": {"parallelism": 1, "order": "stop-first"}});
        let b = json!({"image": "b", "replicas": 1, "update": {"parallelism": 2, "order": "stop-first"}, "env": ["A=1"]});
        assert_eq!(
            differences(&a, &b),
            vec!["env", "image", "update.parallelism"]
        );
        assert!(differences(&a, &a).is_empty());
    }

    #[test]
    fn a_cycle_is_named_from_its_first_service() {
        let deps: HashMap<&str, Vec<&str>> = [
            ("s_web", vec!["s_api"]),
            ("s_api", vec!["s_db"]),
            ("s_db", vec!["s_web"]),
            ("s_other", vec![]),
        ]
        .into_iter()
        .collect();
        let mut path = vec!["s_api"];
        assert_eq!(
            find_cycle(&deps, &mut path, &mut Vec::new()),
            Some(vec!["s_api", "s_db", "s_web", "s_api"])
        );
        let mut path = vec!["s_other"];
        assert_eq!(find_cycle(&deps, &mut path, &mut Vec::new()), None);
    }
}
