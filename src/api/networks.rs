//! Network handlers: create, list, inspect, remove; and the check that
//! every manager can apply a network before one is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::types::Created;
use super::{ApiError, Ctx};
use crate::store::{Change, Kind, Object, ReadView};
use crate::types::*;

/// What `network create` sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkCreate {
    pub name: String,
    /// `overlay` (the default) or `bridge`.
    #[serde(default = "overlay")]
    pub driver: String,
    /// CIDR; allocated from the cluster's pool when absent.
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options: `encrypted=true|false`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn overlay() -> String {
    "overlay".into()
}

/// A network as `network ls` and `inspect` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkBody {
    pub id: String,
    pub name: String,
    pub driver: String,
    /// `swarm` for the cluster's networks, `local` for the predefined
    /// ones of each node, as docker says.
    pub scope: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    pub encrypted: bool,
    pub attachable: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub created_ms: i64,
    /// The services that use it (names).
    #[serde(default)]
    pub services: Vec<String>,
}

/// The networks every node has without a create, as docker lists them:
/// `bridge` (a task's own namespace on the node's bridge, the default) and
/// `host` (the node's own network).
fn predefined() -> Vec<NetworkBody> {
    ["bridge", "host"]
        .into_iter()
        .map(|n| NetworkBody {
            id: n.into(),
            name: n.into(),
            driver: n.into(),
            scope: "local".into(),
            subnet: String::new(),
            gateway: String::new(),
            encrypted: false,
            attachable: false,
            labels: BTreeMap::new(),
            created_ms: 0,
            services: Vec::new(),
        })
        .collect()
}

fn body(n: &Network, services: &[Service]) -> NetworkBody {
    NetworkBody {
        id: n.id.clone(),
        name: n.spec.name.clone(),
        driver: n.spec.driver.as_str().into(),
        scope: "swarm".into(),
        subnet: n.spec.subnet.clone(),
        gateway: n.spec.gateway.clone(),
        encrypted: n.spec.encrypted,
        attachable: n.spec.attachable,
        labels: n.spec.labels.clone(),
        created_ms: n.meta.created_ms,
        services: users(services, &n.id),
    }
}

/// The services whose tasks join network `id`.
fn users(services: &[Service], id: &str) -> Vec<String> {
    services
        .iter()
        .filter(|s| s.spec.task.network.network_ids().any(|n| n == id))
        .map(|s| s.spec.name.clone())
        .collect()
}

/// Networks are a kind of object that a manager of 254a909 cannot apply:
/// none is written until every manager reports a build that can.
pub fn managers_support_networks(view: &ReadView) -> Result<(), ApiError> {
    managers_support(view, crate::LEVEL_NETWORKS, "networks")
}

/// Whether every manager reports at least `level`: a kind of object (or
/// a field) that an older manager cannot apply is not written before.
/// `what` names it for the refusal.
pub fn managers_support(view: &ReadView, level: u32, what: &str) -> Result<(), ApiError> {
    let old: Vec<String> = view
        .nodes()?
        .into_iter()
        .filter(|n| n.is_manager() && n.description.level < level)
        .map(|n| n.description.hostname)
        .collect();
    if old.is_empty() {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "{what} need every manager to run this shoal or later: {} runs an older one (upgrade it first)",
        old.join(", ")
    )))
}

fn valid_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(ApiError::BadRequest(format!(
            "invalid network name {name:?}: use 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )));
    }
    if predefined().iter().any(|p| p.name == name) || name == "none" || name == "ingress" {
        return Err(ApiError::Conflict(format!(
            "network name {name} is reserved"
        )));
    }
    Ok(())
}

/// The spec a create asks for, with its subnet still to be allocated
/// (None) unless given.
pub(super) fn spec(req: NetworkCreate) -> Result<(NetworkSpec, Option<ipnet::Ipv4Net>), ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    valid_name(&req.name)?;
    let driver = NetworkDriver::parse(&req.driver).ok_or_else(|| {
        bad(format!(
            "unknown driver {:?}: expected overlay or bridge",
            req.driver
        ))
    })?;
    let mut encrypted = driver == NetworkDriver::Overlay;
    for (k, v) in &req.options {
        match (k.as_str(), v.as_str()) {
            ("encrypted", "true" | "") => encrypted = true,
            ("encrypted", "false") => encrypted = false,
            ("encrypted", _) => {
                return Err(bad(format!("--opt encrypted={v}: expected true or false")))
            }
            _ => {
                return Err(bad(format!(
                    "unknown option {k:?}: the only option is encrypted"
                )))
            }
        }
    }
    if encrypted && driver == NetworkDriver::Bridge {
        return Err(bad(
            "a bridge network stays on its node: encrypted applies to overlay networks".into(),
        ));
    }
    let subnet = req
        .subnet
        .as_deref()
        .map(crate::ipam::parse_subnet)
        .transpose()
        .map_err(bad)?;
    if req.gateway.is_some() && subnet.is_none() {
        return Err(bad("--gateway needs --subnet".into()));
    }
    let gateway = match (&req.gateway, subnet) {
        (Some(g), Some(s)) => {
            let g: std::net::Ipv4Addr = g
                .parse()
                .map_err(|_| bad(format!("invalid gateway {g:?}: expected an IPv4 address")))?;
            if !s.contains(&g) || g == s.network() || g == s.broadcast() {
                return Err(bad(format!("gateway {g} is not a host address of {s}")));
            }
            g.to_string()
        }
        (_, Some(s)) => crate::ipam::gateway(&s).to_string(),
        _ => String::new(),
    };
    Ok((
        NetworkSpec {
            name: req.name,
            driver,
            subnet: subnet.map(|s| s.to_string()).unwrap_or_default(),
            gateway,
            encrypted,
            attachable: req.attachable,
            labels: req.labels,
        },
        subnet,
    ))
}

/// Every subnet that is taken: the networks' and the node bridges'.
fn taken(view: &ReadView) -> Result<Vec<ipnet::Ipv4Net>, ApiError> {
    let mut out = Vec::new();
    for n in view.networks()? {
        out.extend(crate::ipam::parse_subnet(&n.spec.subnet).ok());
    }
    for n in view.nodes()? {
        if let Some(s) = &n.bridge_subnet {
            out.extend(crate::ipam::parse_subnet(s).ok());
        }
    }
    Ok(out)
}

pub async fn create(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<NetworkCreate>,
) -> Result<Json<Created>, ApiError> {
    let view = ctx.read_current().await?;
    let network = new_network(&view, req, &[])?;
    let id = network.id.clone();
    ctx.proposer
        .propose(vec![Change::Create(Object::Network(network))])
        .await?;
    Ok(Json(Created {
        id,
        warnings: Vec::new(),
    }))
}

/// The network `req` asks for, its subnet allocated from the pool when it
/// names none (not one of `also_taken`, given to networks of the same
/// change set); refused if the name is taken. The store refuses a subnet a
/// concurrent allocation took first, and the user tries again.
pub(super) fn new_network(
    view: &ReadView,
    req: NetworkCreate,
    also_taken: &[ipnet::Ipv4Net],
) -> Result<Network, ApiError> {
    managers_support_networks(view)?;
    let (mut spec, subnet) = spec(req)?;
    if view
        .find_network(&spec.name)?
        .is_some_and(|n| n.spec.name == spec.name)
    {
        return Err(ApiError::Conflict(format!(
            "network {} already exists",
            spec.name
        )));
    }
    if subnet.is_none() {
        let cluster = view
            .cluster()?
            .ok_or_else(|| ApiError::Unavailable("the cluster object is missing".into()))?;
        let pool = crate::ipam::parse_pool(&cluster.addr_pool).map_err(ApiError::Internal)?;
        let mut taken = taken(view)?;
        taken.extend_from_slice(also_taken);
        let s = crate::ipam::next_subnet(&pool, crate::ipam::SUBNET_PREFIX, &taken).ok_or_else(
            || {
                ApiError::Conflict(format!(
                    "the address pool {pool} is full: remove a network, or give --subnet outside it"
                ))
            },
        )?;
        spec.subnet = s.to_string();
        spec.gateway = crate::ipam::gateway(&s).to_string();
    }
    Ok(Network {
        id: new_id(),
        meta: Meta::default(),
        spec,
    })
}

pub async fn list(State(ctx): State<Arc<Ctx>>) -> Result<Json<Vec<NetworkBody>>, ApiError> {
    let view = ctx.read_current().await?;
    let services = view.services()?;
    let mut out = predefined();
    let mut nets = view.networks()?;
    nets.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    out.extend(nets.iter().map(|n| body(n, &services)));
    Ok(Json(out))
}

pub(super) fn find(view: &ReadView, name: &str) -> Result<Network, ApiError> {
    view.find_network(name)?
        .ok_or_else(|| ApiError::NotFound(format!("network {name} not found")))
}

pub async fn inspect(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> Result<Json<NetworkBody>, ApiError> {
    let view = ctx.read_current().await?;
    if let Some(p) = predefined().into_iter().find(|p| p.name == name) {
        return Ok(Json(p));
    }
    Ok(Json(body(&find(&view, &name)?, &view.services()?)))
}

pub async fn remove(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
) -> Result<Json<Created>, ApiError> {
    let view = ctx.read_current().await?;
    if predefined().iter().any(|p| p.name == name) {
        return Err(ApiError::Conflict(format!(
            "{name} is a predefined network and cannot be removed"
        )));
    }
    let network = find(&view, &name)?;
    let used = users(&view.services()?, &network.id);
    if !used.is_empty() {
        return Err(ApiError::Conflict(format!(
            "network {} is in use by service {}: remove the service or its --network first",
            network.spec.name,
            used.join(", ")
        )));
    }
    // The store checks again when it applies the delete, so a service
    // created meanwhile cannot be left on a removed network.
    ctx.proposer
        .propose(vec![Change::Delete {
            kind: Kind::Network,
            id: network.id.clone(),
            expected_version: None,
        }])
        .await?;
    Ok(Json(Created {
        id: network.id,
        warnings: Vec::new(),
    }))
}

/// Resolves the networks a spec names (names or ids) to ids, so the store
/// holds ids that a rename never breaks.
pub fn resolve_networks(view: &ReadView, spec: &mut ServiceSpec) -> Result<(), ApiError> {
    let NetworkMode::Own(list) = &mut spec.task.network else {
        return Ok(());
    };
    if list.is_empty() {
        return Ok(());
    }
    managers_support_networks(view)?;
    for a in list.iter_mut() {
        if a.network == "bridge" {
            return Err(ApiError::BadRequest(
                "bridge is the default: leave --network out to use it".into(),
            ));
        }
        let n = find(view, &a.network)?;
        a.network = n.id;
    }
    let mut ids: Vec<&str> = list.iter().map(|a| a.network.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(ApiError::BadRequest("a network is given twice".into()));
    }
    Ok(())
}

/// How many times a create or update gives VIPs anew after a concurrent
/// write took one of them first.
const VIP_ATTEMPTS: usize = 5;

/// Writes `service` (`create`, or an update), with its virtual IPs. If the
/// store refuses it because a concurrent write gave one of those VIPs to
/// another service first, the service gets other ones and is written
/// again: two `service create`s at once both succeed.
pub async fn write_service(ctx: &Ctx, service: &mut Service, create: bool) -> Result<(), ApiError> {
    let mut attempt = 1;
    let mut view = ctx.store.read()?;
    loop {
        assign_vips(&view, service)?;
        let change = match create {
            true => Change::Create(Object::Service(service.clone())),
            false => Change::Update(Object::Service(service.clone())),
        };
        let refused = match ctx.proposer.propose(vec![change]).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_rejection() && attempt < VIP_ATTEMPTS => e,
            Err(e) => return Err(e.into()),
        };
        // Everything committed so far, the other service's write included.
        view = ctx.read_current().await?;
        let taken: Vec<Vip> = view
            .services()?
            .iter()
            .filter(|s| s.id != service.id)
            .flat_map(|s| s.vips.iter().cloned())
            .collect();
        if !service.vips.iter().any(|v| taken.contains(v)) {
            // Refused for another reason: that is the answer.
            return Err(refused.into());
        }
        service.vips.retain(|v| !taken.contains(v));
        attempt += 1;
    }
}

/// Gives `service` a virtual IP on each of its networks: the one it has on
/// a network it stays on, else the first free address of the network's
/// subnet (not its gateway, nor another service's VIP); none for a service
/// in `dnsrr` mode. VIPs of networks
/// it left are dropped. The store refuses a VIP that a concurrent write
/// gave to another service first.
fn assign_vips(view: &ReadView, service: &mut Service) -> Result<(), ApiError> {
    assign_vips_among(view, service, &[])
}

/// `assign_vips`, the VIPs of `batch` (services written in the same change
/// set, new or changed) taken too.
pub(super) fn assign_vips_among(
    view: &ReadView,
    service: &mut Service,
    batch: &[Service],
) -> Result<(), ApiError> {
    if !service.spec.endpoint_mode.is_vip() {
        // Reached by its tasks' addresses: its VIPs, if it had some, go.
        service.vips.clear();
        return Ok(());
    }
    let wanted: Vec<String> = service
        .spec
        .task
        .network
        .network_ids()
        .map(String::from)
        .collect();
    let mut vips: Vec<Vip> = Vec::new();
    let mut others: Option<Vec<Service>> = None;
    for id in wanted {
        if let Some(v) = service.vips.iter().find(|v| v.network == id) {
            vips.push(v.clone());
            continue;
        }
        let network = view
            .find_network(&id)?
            .ok_or_else(|| ApiError::NotFound(format!("network {id} not found")))?;
        let subnet = crate::ipam::parse_subnet(&network.spec.subnet)
            .map_err(|e| ApiError::Internal(format!("network {}: {e}", network.spec.name)))?;
        let gateway = network
            .spec
            .gateway
            .parse()
            .unwrap_or_else(|_| crate::ipam::gateway(&subnet));
        let services = match &mut others {
            Some(s) => s,
            None => {
                let mut all = view.services()?;
                all.extend(batch.iter().cloned());
                others.insert(all)
            }
        };
        let taken: std::collections::HashSet<std::net::Ipv4Addr> = services
            .iter()
            .filter(|s| s.id != service.id)
            .flat_map(|s| &s.vips)
            .filter(|v| v.network == id)
            .filter_map(|v| v.addr.parse().ok())
            .collect();
        let addr = crate::ipam::next_address(&subnet, gateway, &taken).ok_or_else(|| {
            ApiError::Conflict(format!(
                "network {} has no free address for a virtual IP",
                network.spec.name
            ))
        })?;
        vips.push(Vip {
            network: id,
            addr: addr.to_string(),
        });
    }
    service.vips = vips;
    Ok(())
}
