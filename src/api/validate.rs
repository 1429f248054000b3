//! Checks of user input that the server makes whatever client sent it.

use super::ApiError;
use crate::types::{ServiceMode, ServiceSpec};

/// The longest restart delay a service may ask for.
pub const MAX_RESTART_DELAY_MS: u64 = 24 * 3600 * 1000;
/// The longest a task may be given to stop before it is killed.
pub const MAX_STOP_GRACE_MS: u64 = 3600 * 1000;

/// The largest service spec, as stored. Every task carries its service's
/// spec, so this bounds a task too; Swarm caps a secret at 500 KB.
pub const MAX_SPEC_BYTES: usize = 128 * 1024;

pub fn service_spec(spec: &ServiceSpec) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    let bytes = crate::format::encode(spec).len();
    if bytes > MAX_SPEC_BYTES {
        return bad(format!(
            "the service spec is {bytes} bytes, over the limit of {} KiB (its environment, arguments and labels count)",
            MAX_SPEC_BYTES / 1024
        ));
    }
    let name = &spec.name;
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return bad(format!(
            "invalid service name {name:?}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit"
        ));
    }
    if let Some(replicas) = spec.mode.count() {
        if replicas > 10_000 {
            return bad(format!("{replicas} replicas are too many (at most 10000)"));
        }
    }
    if let ServiceMode::ReplicatedJob { max_concurrent, .. } = spec.mode {
        if max_concurrent == 0 {
            return bad("--max-concurrent must be at least 1".into());
        }
    }
    if spec.mode.is_job() {
        if spec.task.restart.condition == crate::types::RestartCondition::Any {
            return bad(
                "a job's restart condition cannot be any: a task that succeeded would run again, forever; use on-failure or none".into(),
            );
        }
        if !spec.update.is_default() || !spec.rollback.is_default() {
            return bad(
                "update and rollback policies do not apply to jobs: a change of a job's spec runs it again".into(),
            );
        }
    }
    if spec.task.network.is_host() && !spec.task.ports.is_empty() {
        return bad(
            "a task on the host network listens on the node's ports itself: --publish needs a network of its own".into(),
        );
    }
    if spec.endpoint_mode == crate::types::EndpointMode::Dnsrr
        && spec
            .task
            .ports
            .iter()
            .any(|p| p.mode == crate::types::PublishMode::Ingress)
    {
        return bad(
            "a port published in ingress mode needs a virtual IP: use --endpoint-mode vip, or publish with mode=host".into(),
        );
    }
    let c = &spec.task.container;
    if let Err(e) = crate::types::normalize_image(&c.image) {
        return bad(e.to_string());
    }
    super::options::check(c, !spec.task.network.is_host())?;
    for e in &c.env {
        if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return bad(format!("invalid env {e:?}: expected KEY=VALUE"));
        }
        // A NUL cannot be passed to a process: containerd would refuse
        // every task of the service, forever.
        if e.contains('\0') {
            return bad(format!("invalid env {e:?}: it contains a NUL byte"));
        }
    }
    for arg in &c.args {
        if arg.contains('\0') {
            return bad(format!("invalid argument {arg:?}: it contains a NUL byte"));
        }
    }
    let r = &spec.task.restart;
    if r.delay_ms > MAX_RESTART_DELAY_MS {
        return bad(format!(
            "restart delay {} is too long (at most 24h)",
            human_ms(r.delay_ms)
        ));
    }
    if c.stop_grace_period_ms > MAX_STOP_GRACE_MS {
        return bad(format!(
            "stop grace period {} is too long (at most 1h)",
            human_ms(c.stop_grace_period_ms)
        ));
    }
    if spec
        .labels
        .keys()
        .chain(c.labels.keys())
        .any(|k| k.is_empty())
    {
        return bad("a label needs a key: KEY=VALUE".into());
    }
    for expr in &spec.task.placement.constraints {
        crate::scheduler::Constraint::parse(expr)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    for label in &spec.task.placement.spread {
        crate::types::Placement::spread_key(label).map_err(ApiError::BadRequest)?;
    }
    if spec.task.placement.spread.len() > 8 {
        return bad("at most 8 placement preferences".into());
    }
    if let Some(sig) = &c.stop_signal {
        if crate::types::parse_signal(sig).is_none() {
            return bad(format!("invalid stop signal {sig:?}"));
        }
    }
    if let Some(h) = &spec.task.health {
        health(h)?;
    }
    resources(&spec.task.resources)
}

fn health(h: &crate::types::HealthCheck) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    match h.test.first().map(String::as_str) {
        Some("NONE") if h.test.len() == 1 => return Ok(()),
        Some("CMD-SHELL" | "CMD") if h.args().is_some() => {}
        // The image's test, on these timings (compose's `healthcheck:`
        // without `test:`).
        None => {}
        _ => {
            return bad(format!(
                "invalid health check test {:?}: expected [\"CMD-SHELL\", command], [\"CMD\", args...] or [\"NONE\"]",
                h.test
            ))
        }
    }
    if h.test.iter().any(|a| a.contains('\0')) {
        return bad("the health command contains a NUL byte".into());
    }
    for (what, ms, min, max) in [
        ("health interval", h.interval_ms, 100, MAX_RESTART_DELAY_MS),
        ("health timeout", h.timeout_ms, 100, MAX_STOP_GRACE_MS),
        (
            "health start period",
            h.start_period_ms,
            0,
            MAX_RESTART_DELAY_MS,
        ),
    ] {
        if ms < min || ms > max {
            return bad(format!(
                "{what} {} is out of bounds ({} to {})",
                human_ms(ms),
                human_ms(min),
                human_ms(max)
            ));
        }
    }
    if h.retries == 0 || h.retries > 100 {
        return bad(format!("health retries {}: expected 1 to 100", h.retries));
    }
    Ok(())
}

/// The fewest bytes a memory limit may be: below, a container cannot
/// even start (docker's floor is 6 MB).
pub const MIN_MEMORY_LIMIT: u64 = 6 << 20;
/// Bounds on what a task may ask for: no node has more.
const MAX_NANO_CPUS: u64 = 1024 * 1_000_000_000;
const MAX_MEMORY: u64 = 1 << 40;
const MAX_PIDS: u64 = 4 << 20;

fn resources(r: &crate::types::Resources) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    if r.limit_memory_bytes > 0 && r.limit_memory_bytes < MIN_MEMORY_LIMIT {
        return bad(format!(
            "memory limit {} is too small (at least 6 MiB)",
            crate::types::human_bytes(r.limit_memory_bytes)
        ));
    }
    for (what, v, max) in [
        ("memory limit", r.limit_memory_bytes, MAX_MEMORY),
        ("memory reservation", r.reserve_memory_bytes, MAX_MEMORY),
    ] {
        if v > max {
            return bad(format!(
                "{what} {} is too large (at most 1 TiB)",
                crate::types::human_bytes(v)
            ));
        }
    }
    for (what, v) in [
        ("CPU limit", r.limit_nano_cpus),
        ("CPU reservation", r.reserve_nano_cpus),
    ] {
        if v > MAX_NANO_CPUS {
            return bad(format!(
                "{what} of {} CPUs is too large (at most 1024)",
                v / 1_000_000_000
            ));
        }
    }
    if r.limit_pids > MAX_PIDS {
        return bad(format!(
            "pids limit {} is too large (at most {MAX_PIDS})",
            r.limit_pids
        ));
    }
    if r.limit_memory_bytes > 0 && r.reserve_memory_bytes > r.limit_memory_bytes {
        return bad("the memory reservation is more than the memory limit".into());
    }
    if r.limit_nano_cpus > 0 && r.reserve_nano_cpus > r.limit_nano_cpus {
        return bad("the CPU reservation is more than the CPU limit".into());
    }
    Ok(())
}

fn human_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas: 1 },
            endpoint_mode: Default::default(),
            update: Default::default(),
            rollback: Default::default(),
            depends_on: Vec::new(),
            task: TaskSpec {
                container: ContainerSpec {
                    image: "busybox".into(),
                    stop_grace_period_ms: 10_000,
                    ..Default::default()
                },
                ..Default::default()
            },
        }
    }

    fn refused(change: impl FnOnce(&mut ServiceSpec), word: &str) {
        let mut s = spec();
        change(&mut s);
        let err = service_spec(&s).unwrap_err().to_string();
        assert!(err.contains(word), "{err}");
        assert!(!err.contains("--"), "API errors name no CLI flag: {err}");
    }

    #[test]
    fn durations_are_bounded() {
        assert!(service_spec(&spec()).is_ok());
        refused(|s| s.task.restart.delay_ms = u64::MAX, "restart delay");
        refused(
            |s| s.task.restart.delay_ms = MAX_RESTART_DELAY_MS + 1,
            "at most 24h",
        );
        refused(
            |s| s.task.container.stop_grace_period_ms = MAX_STOP_GRACE_MS + 1,
            "at most 1h",
        );
    }

    #[test]
    fn nul_bytes_and_bad_digests_are_refused() {
        refused(|s| s.task.container.env = vec!["A=b\0c".into()], "NUL");
        refused(|s| s.task.container.env = vec!["A\0=b".into()], "NUL");
        refused(|s| s.task.container.args = vec!["a\0".into()], "NUL");
        refused(
            |s| s.task.container.image = "busybox@sha256:zz".into(),
            "digest",
        );
    }

    #[test]
    fn health_checks_resources_and_placement_are_bounded() {
        let check = |test: &[&str]| HealthCheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            ..HealthCheck::default()
        };
        let with = |h: HealthCheck| move |s: &mut ServiceSpec| s.task.health = Some(h);
        refused(with(check(&["CMD-SHELL"])), "invalid health check test");
        refused(with(check(&["SHELL", "x"])), "invalid health check test");
        let mut fast = check(&["CMD-SHELL", "true"]);
        fast.interval_ms = 10;
        refused(with(fast), "health interval");
        let mut never = check(&["CMD", "true"]);
        never.retries = 0;
        refused(with(never), "health retries");
        // No test: the image's, on these timings; they are bounded all
        // the same.
        let mut inherited = spec();
        inherited.task.health = Some(check(&[]));
        assert!(service_spec(&inherited).is_ok());
        let mut fast = check(&[]);
        fast.interval_ms = 10;
        refused(with(fast), "health interval");
        let mut ok = spec();
        ok.task.health = Some(check(&["NONE"]));
        assert!(service_spec(&ok).is_ok());
        assert_eq!(check(&["NONE"]).args(), None);
        assert_eq!(
            check(&["CMD-SHELL", "curl", "-f", "x"]).args().unwrap(),
            ["/bin/sh", "-c", "curl -f x"]
        );
        refused(
            |s| s.task.resources.limit_memory_bytes = 1 << 20,
            "too small",
        );
        refused(
            |s| {
                s.task.resources.limit_nano_cpus = 1_000_000_000;
                s.task.resources.reserve_nano_cpus = 2_000_000_000;
            },
            "CPU reservation is more than the CPU limit",
        );
        refused(
            |s| s.task.placement.spread = vec!["node.id".into()],
            "expected spread=node.labels.<key>",
        );
    }
}
