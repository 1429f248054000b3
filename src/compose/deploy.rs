//! A service's `deploy:` section: mode and replicas, placement,
//! resources, restart policy, update and rollback policies, endpoint mode
//! and the service's own labels.

use crate::api::spec::{PolicyBody, ServiceSpecBody};

use super::convert::labels;
use super::locate::{Fail, KeyPath};
use super::model::{set_keys, Deploy, Policy, Resources};
use super::scalar::Num;
use super::Ctx;

const MODES: &[&str] = &["replicated", "global", "replicated-job", "global-job"];

/// The most CPUs a limit or reservation names: beyond any machine.
const MAX_CPUS: f64 = 100_000.0;

pub fn apply(
    d: Deploy,
    body: &mut ServiceSpecBody,
    name: &str,
    path: &KeyPath,
    cx: &mut Ctx,
) -> Result<(), Fail> {
    if let Some(m) = d.mode {
        if !MODES.contains(&m.as_str()) {
            return Err(Fail::at(
                &path.key("mode"),
                format!("invalid mode {m:?}: expected {}", MODES.join(", ")),
            ));
        }
        body.mode = m;
    }
    if let Some(n) = d.replicas {
        if body.mode.starts_with("global") {
            return Err(Fail::at(
                &path.key("replicas"),
                format!("a {} service has no replicas", body.mode),
            ));
        }
        body.replicas = Some(n.0);
    }
    if let Some(p) = d.placement {
        body.constraints = p.constraints.unwrap_or_default();
        body.placement_prefs = p
            .preferences
            .unwrap_or_default()
            .into_iter()
            .map(|p| format!("spread={}", p.spread))
            .collect();
        body.max_replicas_per_node = p.max_replicas_per_node.map_or(0, |n| n.0);
    }
    if let Some(r) = d.resources {
        resources(r, body, name, &path.key("resources"), cx)?;
    }
    if let Some(r) = d.restart_policy {
        let at = path.key("restart_policy");
        if let Some(c) = r.condition {
            if !matches!(c.as_str(), "any" | "on-failure" | "none") {
                return Err(Fail::at(
                    &at.key("condition"),
                    format!("invalid condition {c:?}: expected any, on-failure or none"),
                ));
            }
            body.restart_condition = c;
        }
        if let Some(ms) = r.delay {
            body.restart_delay_ms = ms.0;
        }
        body.restart_max_attempts = r.max_attempts.map(|n| n.0);
        if r.window.is_some() {
            cx.notes.ignore(
                "services",
                name,
                "deploy.restart_policy.window",
                "every failed start counts toward max_attempts",
            );
        }
    }
    if let Some(p) = d.update_config {
        body.update = policy(p, "update", &path.key("update_config"))?;
    }
    if let Some(p) = d.rollback_config {
        body.rollback = policy(p, "rollback", &path.key("rollback_config"))?;
    }
    if let Some(e) = d.endpoint_mode {
        if !matches!(e.as_str(), "vip" | "dnsrr") {
            return Err(Fail::at(
                &path.key("endpoint_mode"),
                format!("invalid endpoint_mode {e:?}: expected vip or dnsrr"),
            ));
        }
        body.endpoint_mode = e;
    }
    body.labels = labels(d.labels);
    Ok(())
}

fn nano_cpus(n: Num, at: &KeyPath) -> Result<u64, Fail> {
    if !(0.0..=MAX_CPUS).contains(&n.0) {
        return Err(Fail::at(
            at,
            format!("invalid cpus {}: expected 0 to {MAX_CPUS}", n.0),
        ));
    }
    Ok((n.0 * 1e9).round() as u64)
}

fn resources(
    r: Resources,
    body: &mut ServiceSpecBody,
    name: &str,
    path: &KeyPath,
    cx: &mut Ctx,
) -> Result<(), Fail> {
    let out = &mut body.resources;
    if let Some(l) = r.limits {
        let at = path.key("limits");
        if let Some(c) = l.cpus {
            out.limit_nano_cpus = nano_cpus(c, &at.key("cpus"))?;
        }
        out.limit_memory_bytes = l.memory.map_or(0, |b| b.0);
        out.limit_pids = l.pids.map_or(0, |n| n.0);
    }
    if let Some(r) = r.reservations {
        let at = path.key("reservations");
        if let Some(c) = r.cpus {
            out.reserve_nano_cpus = nano_cpus(c, &at.key("cpus"))?;
        }
        out.reserve_memory_bytes = r.memory.map_or(0, |b| b.0);
        for k in set_keys(&[
            ("devices", r.devices.is_some()),
            ("generic_resources", r.generic_resources.is_some()),
        ]) {
            cx.notes.ignore(
                "services",
                name,
                &format!("deploy.resources.reservations.{k}"),
                "shoal reserves CPU and memory only",
            );
        }
    }
    Ok(())
}

/// An update or rollback policy: the given fields over the defaults,
/// checked as the managers check it.
fn policy(p: Policy, what: &str, path: &KeyPath) -> Result<PolicyBody, Fail> {
    let mut out = PolicyBody::default();
    if let Some(n) = p.parallelism {
        out.parallelism = n.0;
    }
    if let Some(ms) = p.delay {
        out.delay_ms = ms.0;
    }
    if let Some(a) = p.failure_action {
        out.failure_action = a;
    }
    if let Some(ms) = p.monitor {
        out.monitor_ms = ms.0;
    }
    if let Some(r) = p.max_failure_ratio {
        out.max_failure_ratio = r.0;
    }
    if let Some(o) = p.order {
        out.order = o;
    }
    out.clone()
        .into_policy(what)
        .map_err(|e| Fail::at(path, e.to_string()))?;
    Ok(out)
}
