//! One compose service to a `ServiceSpecBody` named `STACK_NAME`: the
//! container's keys here, `deploy:` in `deploy`, ports, mounts, secrets
//! and configs in their own modules. The body starts from serde's
//! defaults, so keys left out take what `service create` gives them, and
//! ends checked as the managers would check it (`into_spec`), the error
//! placed at the service.

use std::collections::BTreeMap;

use crate::api::spec::{DependsOnBody, ServiceSpecBody, HOST_NETWORK};
use crate::api::stack_types::NAMESPACE_LABEL;
use crate::types::HealthCheck;

use super::convert::{labels, Declared, Used, DEFAULT_NETWORK};
use super::locate::{Fail, KeyPath};
use super::model::{set_keys, Healthcheck, Service, ServiceNetwork};
use super::scalar::{StrOr, StrOrList};
use super::{deploy, envfile, files, mounts, ports, Ctx};

/// The label docker's tools read a stack service's image from.
const IMAGE_LABEL: &str = "com.docker.stack.image";

/// The longest name of a service (`STACK_NAME`), as a DNS label.
const MAX_NAME: usize = 63;

const CONDITIONS: &[&str] = &[
    "service_started",
    "service_healthy",
    "service_completed_successfully",
];

pub fn convert(
    name: &str,
    svc: Service,
    decl: &Declared,
    used: &mut Used,
    cx: &mut Ctx,
) -> Result<ServiceSpecBody, Fail> {
    let path = KeyPath::of(&["services", name]);
    let full = format!("{}_{name}", cx.stack);
    check_name(name, &full, &path)?;
    let Some(image) = svc.image.clone().filter(|i| !i.is_empty()) else {
        let why = match cx.notes.ignored("services", name, "build") {
            true => " (shoal does not build images)",
            false => "",
        };
        return Err(Fail::at(&path, format!("service {name} has no image{why}")));
    };
    let mut body: ServiceSpecBody =
        serde_json::from_value(serde_json::json!({ "name": full, "image": image }))
            .map_err(|e| Fail::at(&path, e.to_string()))?;
    if let Some(d) = svc.deploy {
        deploy::apply(d, &mut body, name, &path.key("deploy"), cx)?;
    }
    let ns = || (NAMESPACE_LABEL.to_string(), cx.stack.to_string());
    body.labels.extend([ns(), (IMAGE_LABEL.to_string(), image)]);
    body.container_labels = labels(svc.labels);
    body.container_labels.extend([ns()]);
    if let Some(c) = svc.command {
        body.args = words(c, &path.key("command"))?;
    }
    if let Some(e) = svc.entrypoint {
        body.entrypoint = Some(words(e, &path.key("entrypoint"))?);
    }
    body.env = envfile::service_env(name, svc.environment, svc.env_file, &path, cx)?;
    if let Some(h) = svc.healthcheck {
        body.healthcheck = Some(healthcheck(h, name, &path.key("healthcheck"), cx)?);
    }
    body.user = svc.user.map(|u| u.0);
    body.workdir = svc.working_dir;
    body.stop_signal = svc.stop_signal;
    if let Some(ms) = svc.stop_grace_period {
        body.stop_grace_period_ms = ms.0;
    }
    if let Some(p) = svc.pull_policy {
        body.pull = pull(&p, &path.key("pull_policy"))?;
    }
    body.cap_add = svc.cap_add.unwrap_or_default();
    body.cap_drop = svc.cap_drop.unwrap_or_default();
    body.read_only = svc.read_only.is_some_and(|f| f.0);
    let o = &mut body.options;
    o.hostname = svc.hostname;
    o.init = svc.init.is_some_and(|f| f.0);
    o.privileged = svc.privileged.is_some_and(|f| f.0);
    o.devices = svc.devices.unwrap_or_default();
    o.group_add = svc
        .group_add
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.0)
        .collect();
    for (k, v) in svc.sysctls.unwrap_or_default() {
        let Some(v) = v else {
            return Err(Fail::at(
                &path.key("sysctls").key(&k),
                "a sysctl needs a value",
            ));
        };
        o.sysctls.insert(k, v.0);
    }
    for (k, v) in svc.ulimits.unwrap_or_default() {
        let at = path.key("ulimits").key(&k);
        let (soft, hard) = match v {
            StrOr::Long(l) => (l.soft.0, l.hard.0),
            StrOr::Str(s) => {
                let n: u64 = s.trim().parse().map_err(|_| {
                    Fail::at(
                        &at,
                        format!("invalid ulimit {s:?}: expected a number, or soft: and hard:"),
                    )
                })?;
                (n, n)
            }
        };
        o.ulimits.push(format!("{k}={soft}:{hard}"));
    }
    body.ports = ports::ports(svc.ports.unwrap_or_default(), name, &path.key("ports"), cx)?;
    body.mounts = mounts::mounts(svc.volumes, svc.tmpfs, name, &path, decl, cx)?;
    body.secrets = files::refs(files::Kind::Secret, svc.secrets, &path, decl, used, cx)?;
    body.configs = files::refs(files::Kind::Config, svc.configs, &path, decl, used, cx)?;
    networks(
        name,
        svc.network_mode,
        svc.networks,
        &path,
        &mut body,
        decl,
        used,
        cx,
    )?;
    for (dep, opts) in svc.depends_on.unwrap_or_default() {
        let at = path.key("depends_on").key(&dep);
        body.depends_on.push(depends_on(
            name,
            &dep,
            opts.unwrap_or_default(),
            &at,
            decl,
            cx,
        )?);
    }
    body.clone()
        .into_spec()
        .map_err(|e| Fail::at(&path, e.to_string()))?;
    Ok(body)
}

/// Compose's rule for service names, and the managers' length.
fn check_name(name: &str, full: &str, path: &KeyPath) -> Result<(), Fail> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(Fail::at(
            path,
            format!("invalid service name {name:?}: use letters, digits, '_', '.' or '-', starting with a letter or digit"),
        ));
    }
    if full.len() > MAX_NAME {
        return Err(Fail::at(
            path,
            format!("the service's name {full} is longer than {MAX_NAME} characters"),
        ));
    }
    Ok(())
}

/// A command: a string is split as a shell would, a list is as is.
fn words(c: StrOrList, path: &KeyPath) -> Result<Vec<String>, Fail> {
    match c {
        StrOrList::List(l) => Ok(l),
        StrOrList::Str(s) => shell_words::split(&s)
            .map_err(|e| Fail::at(path, format!("cannot split {s:?} into words: {e}"))),
    }
}

fn healthcheck(
    h: Healthcheck,
    name: &str,
    path: &KeyPath,
    cx: &mut Ctx,
) -> Result<HealthCheck, Fail> {
    let mut out = HealthCheck::default();
    let disable = h.disable.is_some_and(|d| d.0);
    out.test = match (h.test, disable) {
        (Some(_), true) => {
            return Err(Fail::at(
                &path.key("disable"),
                "a health check with a test cannot be disabled: give one or the other",
            ))
        }
        (None, true) => vec!["NONE".into()],
        (None, false) => Vec::new(),
        (Some(StrOrList::Str(s)), false) => vec!["CMD-SHELL".into(), s],
        (Some(StrOrList::List(l)), false) => {
            if !matches!(
                l.first().map(String::as_str),
                Some("CMD" | "CMD-SHELL" | "NONE")
            ) {
                return Err(Fail::at(
                    &path.key("test"),
                    "a test list starts with CMD, CMD-SHELL or NONE",
                ));
            }
            l
        }
    };
    if let Some(ms) = h.interval {
        out.interval_ms = ms.0;
    }
    if let Some(ms) = h.timeout {
        out.timeout_ms = ms.0;
    }
    if let Some(ms) = h.start_period {
        out.start_period_ms = ms.0;
    }
    if let Some(r) = h.retries {
        out.retries =
            u32::try_from(r.0).map_err(|_| Fail::at(&path.key("retries"), "too many retries"))?;
    }
    if h.start_interval.is_some() {
        cx.notes.ignore(
            "services",
            name,
            "healthcheck.start_interval",
            "checks in the start period run at the interval",
        );
    }
    Ok(out)
}

fn pull(p: &str, path: &KeyPath) -> Result<String, Fail> {
    match p {
        "always" | "missing" | "never" => Ok(p.to_string()),
        "if_not_present" => Ok("missing".into()),
        "build" => Err(Fail::at(
            path,
            "pull_policy build: shoal does not build images",
        )),
        _ => Err(Fail::at(
            path,
            format!("invalid pull_policy {p:?}: expected always, missing or never"),
        )),
    }
}

/// The service's networks (real names) and its names on them: its own
/// short name, as docker gives it, and its `aliases`.
#[allow(clippy::too_many_arguments)]
fn networks(
    name: &str,
    mode: Option<String>,
    list: Option<BTreeMap<String, Option<ServiceNetwork>>>,
    path: &KeyPath,
    body: &mut ServiceSpecBody,
    decl: &Declared,
    used: &mut Used,
    cx: &mut Ctx,
) -> Result<(), Fail> {
    match mode.as_deref() {
        None => {}
        Some("host") if list.is_some() => {
            return Err(Fail::at(
                &path.key("network_mode"),
                "network_mode: host cannot be combined with networks",
            ))
        }
        Some("host") => {
            body.networks = vec![HOST_NETWORK.to_string()];
            return Ok(());
        }
        Some(other) => {
            return Err(Fail::at(
                &path.key("network_mode"),
                format!("network_mode {other}: shoal supports only host; put the service on the stack's networks with networks:"),
            ))
        }
    }
    let list = list.unwrap_or_else(|| BTreeMap::from([(DEFAULT_NETWORK.to_string(), None)]));
    // A dot is not allowed in an alias: such a service is reached by its
    // full name only.
    let short_alias = !name.contains('.');
    if !short_alias {
        cx.notes.say(format!(
            "service {name}: a name with a dot is no network alias: other services reach it as {}",
            body.name
        ));
    }
    for (key, opts) in list {
        let at = path.key("networks").key(&key);
        if key != DEFAULT_NETWORK && !decl.networks.contains_key(&key) {
            return Err(Fail::at(
                &at,
                format!("network {key} is not declared in the top-level networks"),
            ));
        }
        used.networks.insert(key.clone());
        let real = decl.network(&key);
        let opts = opts.unwrap_or_default();
        let mut aliases: Vec<String> = Vec::new();
        if short_alias {
            aliases.push(name.to_string());
        }
        for a in opts.aliases.unwrap_or_default() {
            if !aliases.contains(&a) {
                aliases.push(a);
            }
        }
        for k in set_keys(&[
            ("ipv4_address", opts.ipv4_address.is_some()),
            ("ipv6_address", opts.ipv6_address.is_some()),
            ("link_local_ips", opts.link_local_ips.is_some()),
            ("mac_address", opts.mac_address.is_some()),
            ("driver_opts", opts.driver_opts.is_some()),
            ("priority", opts.priority.is_some()),
            ("gw_priority", opts.gw_priority.is_some()),
            ("interface_name", opts.interface_name.is_some()),
        ]) {
            cx.notes.ignore(
                "services",
                name,
                &format!("networks.{key}.{k}"),
                "shoal gives each task its addresses",
            );
        }
        if real != HOST_NETWORK && !aliases.is_empty() {
            body.network_aliases.insert(real.clone(), aliases);
        }
        body.networks.push(real);
    }
    Ok(())
}

fn depends_on(
    name: &str,
    dep: &str,
    opts: super::model::DependsOn,
    at: &KeyPath,
    decl: &Declared,
    cx: &mut Ctx,
) -> Result<DependsOnBody, Fail> {
    if !decl.services.contains(dep) {
        return Err(Fail::at(
            at,
            format!("service {name} depends on service {dep}, which the files do not define"),
        ));
    }
    if dep == name {
        return Err(Fail::at(at, "a service cannot depend on itself"));
    }
    let condition = opts.condition.unwrap_or_else(|| CONDITIONS[0].to_string());
    if !CONDITIONS.contains(&condition.as_str()) {
        return Err(Fail::at(
            &at.key("condition"),
            format!(
                "invalid condition {condition:?}: expected {}",
                CONDITIONS.join(", ")
            ),
        ));
    }
    for k in set_keys(&[
        ("restart", opts.restart.is_some()),
        ("required", opts.required.is_some()),
    ]) {
        cx.notes.ignore(
            "services",
            name,
            &format!("depends_on.{k}"),
            "a dependency is waited for when the service starts",
        );
    }
    Ok(DependsOnBody {
        service: format!("{}_{dep}", cx.stack),
        condition,
    })
}
