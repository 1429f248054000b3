//! The model of a whole stack to a `StackDeploy`: every service (see
//! `service`), then the networks, secrets and configs they use (only
//! those, as docker does), each named `STACK_NAME` unless the file names
//! it, all in name order.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::networks::NetworkCreate;
use crate::api::stack_types::{StackDeploy, StackNetwork, NAMESPACE_LABEL};

use super::locate::{Fail, KeyPath};
use super::model::{Assigns, Compose, FileDecl, Network, Volume};
use super::scalar::External;
use super::{files, service, Ctx};

/// The most services one stack has (as the managers take it).
const MAX_SERVICES: usize = 1000;

/// The network a service without `networks:` joins, as docker's.
pub const DEFAULT_NETWORK: &str = "default";

/// What services may refer to: the top-level declarations.
pub struct Declared {
    pub stack: String,
    pub services: BTreeSet<String>,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, Volume>,
    pub secrets: BTreeMap<String, FileDecl>,
    pub configs: BTreeMap<String, FileDecl>,
}

/// The top-level objects the services use (by their keys).
#[derive(Default)]
pub struct Used {
    pub networks: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    pub configs: BTreeSet<String>,
}

/// The name an object is created (or, external, found) by.
pub fn real_name(stack: &str, key: &str, external: bool, name: Option<&str>) -> String {
    match (name, external) {
        (Some(n), _) => n.to_string(),
        (None, true) => key.to_string(),
        (None, false) => format!("{stack}_{key}"),
    }
}

impl Declared {
    pub fn network(&self, key: &str) -> String {
        let n = self.networks.get(key);
        let external = n.and_then(|n| n.external.as_ref()).is_some_and(|e| e.on);
        real_name(
            &self.stack,
            key,
            external,
            n.and_then(|n| n.name.as_deref()),
        )
    }

    pub fn volume(&self, key: &str) -> String {
        let v = self.volumes.get(key);
        let external = v.and_then(|v| v.external.as_ref()).is_some_and(|e| e.on);
        real_name(
            &self.stack,
            key,
            external,
            v.and_then(|v| v.name.as_deref()),
        )
    }
}

/// Labels as given (`KEY` alone: an empty value).
pub fn labels(a: Option<Assigns>) -> BTreeMap<String, String> {
    a.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.map(|t| t.0).unwrap_or_default()))
        .collect()
}

pub fn stack(c: Compose, cx: &mut Ctx) -> Result<StackDeploy, Fail> {
    check_stack_name(cx.stack)?;
    let services = c.services.unwrap_or_default();
    if services.is_empty() {
        return Err(Fail::at(
            &KeyPath::root(),
            "no services: a stack needs at least one",
        ));
    }
    if services.len() > MAX_SERVICES {
        return Err(Fail::at(
            &KeyPath::of(&["services"]),
            format!(
                "{} services: a stack has at most {MAX_SERVICES}",
                services.len()
            ),
        ));
    }
    let mut decl = Declared {
        stack: cx.stack.to_string(),
        services: services.keys().cloned().collect(),
        networks: flat(c.networks),
        volumes: flat(c.volumes),
        secrets: flat(c.secrets),
        configs: flat(c.configs),
    };
    for (key, n) in &mut decl.networks {
        legacy_external("networks", key, &mut n.external, &mut n.name, cx)?;
    }
    for (key, v) in &mut decl.volumes {
        legacy_external("volumes", key, &mut v.external, &mut v.name, cx)?;
    }
    for (section, list) in [
        ("secrets", &mut decl.secrets),
        ("configs", &mut decl.configs),
    ] {
        for (key, d) in list {
            legacy_external(section, key, &mut d.external, &mut d.name, cx)?;
        }
    }
    for (key, v) in &decl.volumes {
        check_volume(key, v, cx)?;
    }
    let mut used = Used::default();
    let mut out = StackDeploy::default();
    for (name, svc) in services {
        let body = service::convert(&name, svc.unwrap_or_default(), &decl, &mut used, cx)?;
        out.services.push(body);
    }
    check_cycles(&out, cx.stack)?;
    for key in &used.networks {
        out.networks.push(network(key, &decl, cx)?);
    }
    for (kind, keys, list) in [
        (files::Kind::Secret, &used.secrets, &decl.secrets),
        (files::Kind::Config, &used.configs, &decl.configs),
    ] {
        for key in keys {
            let Some(d) = list.get(key) else { continue };
            let f = files::stack_file(kind, key, d, cx)?;
            match kind {
                files::Kind::Secret => out.secrets.push(f),
                files::Kind::Config => out.configs.push(f),
            }
        }
    }
    out.services.sort_by(|a, b| a.name.cmp(&b.name));
    out.networks.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    out.secrets.sort_by(|a, b| a.name.cmp(&b.name));
    out.configs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `external: {name: N}` (compose file format 3) as `external: true` and
/// `name: N`, with docker's warning; both names given must agree.
fn legacy_external(
    section: &str,
    key: &str,
    external: &mut Option<External>,
    name: &mut Option<String>,
    cx: &mut Ctx,
) -> Result<(), Fail> {
    let Some(legacy) = external.as_mut().and_then(|e| e.name.take()) else {
        return Ok(());
    };
    if name.as_ref().is_some_and(|n| *n != legacy) {
        return Err(Fail::at(
            &KeyPath::of(&[section, key, "external", "name"]),
            format!(
                "conflicts with name: {}: give the name once, as name:",
                name.as_deref().unwrap_or_default()
            ),
        ));
    }
    cx.notes.say(format!(
        "{section}.{key}: external.name is deprecated: write name: {legacy} and external: true"
    ));
    *name = Some(legacy);
    Ok(())
}

/// A declaration section with `key:` alone taken as the defaults.
fn flat<T: Default>(m: Option<BTreeMap<String, Option<T>>>) -> BTreeMap<String, T> {
    m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect()
}

/// The managers' rule for stack names, said before anything is read.
fn check_stack_name(stack: &str) -> Result<(), Fail> {
    let ok = !stack.is_empty()
        && stack.len() <= 40
        && stack.starts_with(|c: char| c.is_ascii_alphanumeric())
        && stack
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    match ok {
        true => Ok(()),
        false => Err(Fail::at(
            &KeyPath::root(),
            format!("invalid stack name {stack:?}: use 1-40 letters, digits, '-', '_' or '.', starting with a letter or digit"),
        )),
    }
}

/// Top-level volumes: made on a node on first use, by the local driver.
fn check_volume(key: &str, v: &Volume, cx: &mut Ctx) -> Result<(), Fail> {
    let path = KeyPath::of(&["volumes", key]);
    if let Some(d) = v.driver.as_deref().filter(|d| *d != "local") {
        return Err(Fail::at(
            &path.key("driver"),
            format!("volume driver {d}: shoal has only the local driver"),
        ));
    }
    for (k, set) in [
        ("driver_opts", v.driver_opts.is_some()),
        ("labels", v.labels.is_some()),
    ] {
        if set {
            cx.notes.ignore(
                "volumes",
                key,
                k,
                "a node makes a volume on first use, without options or labels",
            );
        }
    }
    Ok(())
}

/// Top-level network `key` (or the default one) as the stack sends it.
fn network(key: &str, decl: &Declared, cx: &mut Ctx) -> Result<StackNetwork, Fail> {
    let path = KeyPath::of(&["networks", key]);
    let n = decl.networks.get(key);
    let name = decl.network(key);
    let external = n.and_then(|n| n.external.as_ref()).is_some_and(|e| e.on);
    let mut spec = NetworkCreate {
        name,
        driver: "overlay".into(),
        subnet: None,
        gateway: None,
        attachable: false,
        labels: BTreeMap::new(),
        options: BTreeMap::new(),
    };
    let Some(n) = n else {
        // The default network, not declared: docker's defaults.
        spec.labels
            .insert(NAMESPACE_LABEL.into(), cx.stack.to_string());
        return Ok(StackNetwork {
            external: false,
            spec,
        });
    };
    if external {
        let given = [
            ("driver", n.driver.is_some()),
            ("driver_opts", n.driver_opts.is_some()),
            ("ipam", n.ipam.is_some()),
            ("labels", n.labels.is_some()),
            ("attachable", n.attachable.is_some()),
        ];
        if let Some((k, _)) = given.iter().find(|(_, set)| *set) {
            return Err(Fail::at(
                &path.key(k),
                "an external network is only named: shoal does not create it",
            ));
        }
        return Ok(StackNetwork {
            external: true,
            spec,
        });
    }
    if let Some(d) = &n.driver {
        if !matches!(d.as_str(), "overlay" | "bridge") {
            return Err(Fail::at(
                &path.key("driver"),
                format!("network driver {d}: expected overlay or bridge"),
            ));
        }
        spec.driver = d.clone();
    }
    spec.options = n
        .driver_opts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    spec.attachable = n.attachable.is_some_and(|a| a.0);
    spec.labels = labels(n.labels.clone());
    spec.labels
        .insert(NAMESPACE_LABEL.into(), cx.stack.to_string());
    let mut ignored: Vec<&str> = super::model::set_keys(&[
        ("internal", n.internal.is_some()),
        ("enable_ipv6", n.enable_ipv6.is_some()),
        ("enable_ipv4", n.enable_ipv4.is_some()),
    ]);
    if let Some(ipam) = &n.ipam {
        if ipam.driver.as_deref().is_some_and(|d| d != "default") {
            ignored.push("ipam.driver");
        }
        if ipam.options.is_some() {
            ignored.push("ipam.options");
        }
        let configs = ipam.config.as_deref().unwrap_or_default();
        if let Some(first) = configs.first() {
            spec.subnet = first.subnet.clone();
            spec.gateway = first.gateway.clone();
            if first.ip_range.is_some() {
                ignored.push("ipam.config.ip_range");
            }
            if first.aux_addresses.is_some() {
                ignored.push("ipam.config.aux_addresses");
            }
        }
        if configs.len() > 1 {
            ignored.push("ipam.config (all but the first)");
        }
    }
    for k in ignored {
        cx.notes
            .ignore("networks", key, k, "shoal's networks do not have it");
    }
    Ok(StackNetwork {
        external: false,
        spec,
    })
}

/// `dependency cycle: a -> b -> a`, if the services' `depends_on` make one.
fn check_cycles(d: &StackDeploy, stack: &str) -> Result<(), Fail> {
    let prefix = format!("{stack}_");
    let short = |n: &str| n.strip_prefix(&prefix).unwrap_or(n).to_string();
    let deps: BTreeMap<String, Vec<String>> = d
        .services
        .iter()
        .map(|s| {
            let to = s.depends_on.iter().map(|x| short(&x.service)).collect();
            (short(&s.name), to)
        })
        .collect();
    // Depth first, iteratively (no recursion on input): 1 on the path, 2 done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    for start in deps.keys() {
        if state.contains_key(start.as_str()) {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        state.insert(start, 1);
        while let Some(&(node, next)) = path.last() {
            let edges = deps.get(node).map(Vec::as_slice).unwrap_or_default();
            let Some(to) = edges.get(next) else {
                state.insert(node, 2);
                path.pop();
                continue;
            };
            if let Some(last) = path.last_mut() {
                last.1 += 1;
            }
            match state.get(to.as_str()) {
                Some(1) => {
                    let from = path.iter().position(|(n, _)| *n == to).unwrap_or(0);
                    let mut names: Vec<&str> = path[from..].iter().map(|(n, _)| *n).collect();
                    names.push(to);
                    return Err(Fail::at(
                        &KeyPath::of(&["services", names[0], "depends_on"]),
                        format!("dependency cycle: {}", names.join(" -> ")),
                    ));
                }
                Some(_) => {}
                None => {
                    state.insert(to, 1);
                    path.push((to, 0));
                }
            }
        }
    }
    Ok(())
}
