//! The merged value made ready for the typed read: extension keys (`x-…`)
//! and the top-level `version` and `name` dropped silently, and the
//! service keys shoal does not use dropped with a warning each. What is
//! left is either read or refused as unknown: nothing is dropped unsaid.

use yaml_serde::{Mapping, Value};

use super::locate::{Fail, KeyPath};
use super::notes::Notes;

const NOT_SUPPORTED: &str = "shoal does not support it";
const RESOURCES: &str = "use deploy.resources";
const DNS: &str = "tasks use the DNS server shoal gives them";

/// Service keys that are read but have no effect, and why.
const IGNORED: &[(&str, &str)] = &[
    ("annotations", NOT_SUPPORTED),
    ("attach", NOT_SUPPORTED),
    ("blkio_config", NOT_SUPPORTED),
    ("build", "shoal runs images, it does not build them"),
    ("cgroup", NOT_SUPPORTED),
    ("cgroup_parent", NOT_SUPPORTED),
    ("container_name", "shoal names a service's containers"),
    ("cpu_count", RESOURCES),
    ("cpu_percent", RESOURCES),
    ("cpu_period", RESOURCES),
    ("cpu_quota", RESOURCES),
    ("cpu_rt_period", RESOURCES),
    ("cpu_rt_runtime", RESOURCES),
    ("cpu_shares", RESOURCES),
    ("cpus", RESOURCES),
    ("cpuset", NOT_SUPPORTED),
    ("credential_spec", NOT_SUPPORTED),
    ("develop", NOT_SUPPORTED),
    ("device_cgroup_rules", NOT_SUPPORTED),
    ("dns", DNS),
    ("dns_opt", DNS),
    ("dns_search", DNS),
    ("domainname", NOT_SUPPORTED),
    (
        "expose",
        "tasks reach each other's ports on their networks without it",
    ),
    (
        "external_links",
        "services reach each other by name on their networks",
    ),
    ("extra_hosts", NOT_SUPPORTED),
    ("gpus", NOT_SUPPORTED),
    ("ipc", NOT_SUPPORTED),
    ("isolation", NOT_SUPPORTED),
    ("label_file", NOT_SUPPORTED),
    (
        "links",
        "services reach each other by name on their networks",
    ),
    (
        "logging",
        "shoal keeps the tasks' logs (shoal service logs)",
    ),
    ("mac_address", NOT_SUPPORTED),
    ("mem_limit", RESOURCES),
    ("mem_reservation", RESOURCES),
    ("mem_swappiness", NOT_SUPPORTED),
    ("memswap_limit", NOT_SUPPORTED),
    ("oom_kill_disable", NOT_SUPPORTED),
    ("oom_score_adj", NOT_SUPPORTED),
    ("pid", NOT_SUPPORTED),
    ("pids_limit", "use deploy.resources.limits.pids"),
    ("platform", "each node pulls the image for its own platform"),
    ("post_start", NOT_SUPPORTED),
    ("pre_stop", NOT_SUPPORTED),
    ("profiles", "every service of the files is deployed"),
    ("restart", "use deploy.restart_policy"),
    ("runtime", NOT_SUPPORTED),
    ("scale", "use deploy.replicas"),
    ("security_opt", NOT_SUPPORTED),
    ("shm_size", NOT_SUPPORTED),
    ("stdin_open", "tasks run without a terminal"),
    ("storage_opt", NOT_SUPPORTED),
    ("tty", "tasks run without a terminal"),
    ("userns_mode", NOT_SUPPORTED),
    ("uts", NOT_SUPPORTED),
    ("volumes_from", NOT_SUPPORTED),
];

/// Service keys refused outright: ignoring them would deploy something
/// else than the file describes.
const REFUSED: &[(&str, &str)] = &[(
    "extends",
    "extends is not supported: write the service in full, or merge files with several -c",
)];

/// Tidies the merged top mapping `top`.
pub fn tidy(top: &mut Value, notes: &mut Notes) -> Result<(), Fail> {
    let Value::Mapping(top) = top else {
        return Ok(());
    };
    drop_extensions(top);
    for key in ["version", "name"] {
        top.shift_remove(key);
    }
    for section in ["services", "networks", "volumes", "secrets", "configs"] {
        let Some(Value::Mapping(objects)) = top.get_mut(section) else {
            continue;
        };
        for (name, object) in objects.iter_mut() {
            let Value::Mapping(object) = object else {
                continue;
            };
            drop_extensions(object);
            if section != "services" {
                continue;
            }
            let name = super::yaml::key_text(name);
            if let Some((key, why)) = REFUSED.iter().find(|(k, _)| object.contains_key(*k)) {
                return Err(Fail::at(&KeyPath::of(&["services", &name, key]), *why));
            }
            for (key, why) in IGNORED {
                if object.shift_remove(*key).is_some() {
                    notes.ignore("services", &name, key, why);
                }
            }
            if let Some(Value::Mapping(deploy)) = object.get_mut("deploy") {
                drop_extensions(deploy);
            }
        }
    }
    Ok(())
}

fn drop_extensions(m: &mut Mapping) {
    m.retain(|k, _| !matches!(k, Value::String(s) if s.starts_with("x-")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_dropped_ignored_keys_noted() {
        let mut v: Value = yaml_serde::from_str(
            "version: '3.8'\nname: p\nx-a: 1\nservices:\n  web: {image: a, x-b: 1, build: ., restart: always, deploy: {x-c: 1, replicas: 2}}\n  api: {build: ., image: b}\nnetworks: {n: {x-d: 1}}\n",
        )
        .unwrap();
        let mut notes = Notes::default();
        tidy(&mut v, &mut notes).unwrap();
        let want: Value = yaml_serde::from_str(
            "services:\n  web: {image: a, deploy: {replicas: 2}}\n  api: {image: b}\nnetworks: {n: {}}\n",
        )
        .unwrap();
        assert_eq!(v, want);
        assert_eq!(
            notes.into_warnings(),
            vec![
                "ignoring build (services api, web): shoal runs images, it does not build them",
                "ignoring restart (services web): use deploy.restart_policy",
            ]
        );
    }

    #[test]
    fn extends_is_refused() {
        let mut v: Value =
            yaml_serde::from_str("services:\n  web: {extends: {service: base}}\n").unwrap();
        let err = tidy(&mut v, &mut Notes::default()).unwrap_err();
        assert_eq!(err.path.to_string(), "services.web.extends");
    }
}
