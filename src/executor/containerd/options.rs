//! A task's options in its runtime spec: devices (and their cgroup rule),
//! privileged mode, sysctls, ulimits, an init, the seccomp filter. Apart
//! from `spec.rs`, which builds what every task has; the node's device
//! files are looked at here (`crate::devices`), nothing else.

use serde_json::{json, Value};

use crate::devices::DevNode;
use crate::types::ContainerSpec;

/// Where the init is in the container, as docker puts its own.
const INIT_TARGET: &str = "/sbin/docker-init";

/// Static builds of tini on the node: the init of `--init` (the first
/// found). A static binary runs in any image, whatever its C library.
const INIT_BINARIES: &[&str] = &[
    "/usr/bin/tini-static",
    "/usr/bin/docker-init",
    "/usr/sbin/docker-init",
    "/usr/libexec/docker/docker-init",
];

/// The node's init for `--init`, if it has one.
pub(super) fn init_binary() -> Option<&'static str> {
    INIT_BINARIES
        .iter()
        .copied()
        .find(|p| std::path::Path::new(p).is_file())
}

/// Adds the task's options to `spec` (built by `spec::build`).
/// `nofile_hard`: the open-files limit the container can have at most;
/// `init`: the node's init binary. Errors are the task's rejection.
pub(super) fn apply(
    spec: &mut Value,
    c: &ContainerSpec,
    nofile_hard: u64,
    init: Option<&str>,
) -> Result<(), String> {
    if c.privileged {
        privileged(spec)?;
    } else {
        let held = held_caps();
        let mut caps: Vec<String> = crate::types::task_caps(&c.cap_add, &c.cap_drop)
            .into_iter()
            .map(String::from)
            .collect();
        if c.cap_add.iter().any(|a| a == "ALL") {
            // All that the node can give.
            caps.retain(|c| held.contains(&c.as_str()));
        } else if let Some(missing) = caps.iter().find(|c| !held.contains(&c.as_str())) {
            return Err(format!(
                "this node cannot give {missing}: its container runtime does not hold it"
            ));
        }
        spec["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps,
        });
        spec["linux"]["seccomp"] = super::seccomp::profile(&caps);
    }
    for d in &c.devices {
        for node in crate::devices::lookup(&d.host)? {
            let suffix = node.path.strip_prefix(&d.host).unwrap_or("");
            add_device(spec, &node, &format!("{}{suffix}", d.container), &d.perms);
        }
    }
    if !c.sysctls.is_empty() {
        spec["linux"]["sysctl"] = json!(c.sysctls);
    }
    for u in &c.ulimits {
        if u.name == "nofile" && u.hard > nofile_hard {
            return Err(format!(
                "ulimit nofile hard {} is above what this node's container runtime allows ({nofile_hard})",
                u.hard
            ));
        }
        let rlimit = json!({"type": u.rlimit(), "hard": u.hard, "soft": u.soft});
        if let Some(list) = spec["process"]["rlimits"].as_array_mut() {
            list.retain(|r| r["type"] != u.rlimit().as_str());
            list.push(rlimit);
        }
    }
    if c.init {
        let init = init.ok_or(
            "--init: this node has no static tini for it (Debian: apt-get install tini, which has /usr/bin/tini-static)",
        )?;
        let mut args = vec![json!(INIT_TARGET), json!("--")];
        if let Some(a) = spec["process"]["args"].as_array() {
            args.extend(a.iter().cloned());
        }
        spec["process"]["args"] = Value::Array(args);
        if let Some(mounts) = spec["mounts"].as_array_mut() {
            mounts.push(json!({
                "destination": INIT_TARGET, "type": "bind", "source": init,
                "options": ["rbind", "rprivate", "ro"],
            }));
        }
    }
    Ok(())
}

/// The device node in the container and the cgroup rule that lets the
/// task use it.
fn add_device(spec: &mut Value, d: &DevNode, target: &str, perms: &str) {
    let kind = d.kind.to_string();
    let dev = json!({
        "path": target, "type": kind, "major": d.major, "minor": d.minor,
        "fileMode": d.mode, "uid": d.uid, "gid": d.gid,
    });
    let rule = json!({
        "allow": true, "type": kind, "major": d.major, "minor": d.minor, "access": perms,
    });
    let linux = &mut spec["linux"];
    match linux["devices"].as_array_mut() {
        Some(list) => {
            list.retain(|x| x["path"] != target);
            list.push(dev);
        }
        None => linux["devices"] = json!([dev]),
    }
    if let Some(rules) = linux["resources"]["devices"].as_array_mut() {
        rules.push(rule);
    }
}

/// Every capability this node's runtime can give: those in this
/// process's bounding set (containerd's and runc's is the same, or
/// wider), which may lack some (a machine whose root has no
/// CAP_SYS_RESOURCE); asking runc for more fails the container.
fn held_caps() -> Vec<&'static str> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .unwrap_or(u64::MAX);
    crate::types::ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| *bit < 64 && bounding & (1u64 << bit) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// `--privileged`: every capability, every device of the node, /sys and
/// the cgroup tree writable, nothing masked, no seccomp filter (as docker
/// does; the cluster allows it only when an admin said so).
fn privileged(spec: &mut Value) -> Result<(), String> {
    let all = held_caps();
    spec["process"]["capabilities"] = json!({
        "bounding": all, "effective": all, "permitted": all,
    });
    let linux = &mut spec["linux"];
    linux["maskedPaths"] = json!([]);
    linux["readonlyPaths"] = json!([]);
    linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for m in mounts.iter_mut() {
            if m["type"] == "sysfs" || m["type"] == "cgroup" {
                if let Some(opts) = m["options"].as_array_mut() {
                    opts.retain(|o| o != "ro");
                    opts.push(json!("rw"));
                }
            }
        }
    }
    for path in crate::devices::scan(std::path::Path::new("/dev")) {
        // Links (/dev/serial/by-id/…) name devices found under their own
        // path too; the container gets each device once, where it is.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        if let Ok(nodes) = crate::devices::lookup(&path) {
            for d in nodes {
                let dev = json!({
                    "path": d.path, "type": d.kind.to_string(), "major": d.major,
                    "minor": d.minor, "fileMode": d.mode, "uid": d.uid, "gid": d.gid,
                });
                match spec["linux"]["devices"].as_array_mut() {
                    Some(list) => list.push(dev),
                    None => spec["linux"]["devices"] = json!([dev]),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({
            "process": {
                "args": ["sleep", "1"],
                "capabilities": {"bounding": ["CAP_CHOWN"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}],
            },
            "mounts": [{"destination": "/sys", "type": "sysfs", "options": ["ro"]}],
            "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]}},
        })
    }

    #[test]
    fn options_land_in_the_runtime_spec() {
        let c = ContainerSpec {
            devices: vec!["/dev/null:/dev/sensor:r".parse().unwrap()],
            sysctls: [("kernel.shmmax".to_string(), "4096".to_string())].into(),
            ulimits: vec![
                "nofile=100:200".parse().unwrap(),
                "nproc=50".parse().unwrap(),
            ],
            init: true,
            ..Default::default()
        };
        let mut spec = base();
        apply(&mut spec, &c, 4096, Some("/usr/bin/tini-static")).unwrap();
        let dev = &spec["linux"]["devices"][0];
        assert_eq!(
            (dev["path"].as_str(), dev["major"].as_u64()),
            (Some("/dev/sensor"), Some(1))
        );
        let rule = &spec["linux"]["resources"]["devices"][1];
        assert_eq!(
            (rule["allow"].as_bool(), rule["access"].as_str()),
            (Some(true), Some("r"))
        );
        assert_eq!(spec["linux"]["sysctl"]["kernel.shmmax"], "4096");
        let rl = spec["process"]["rlimits"].as_array().unwrap();
        assert_eq!(rl.len(), 2);
        assert!(rl.contains(&json!({"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100})));
        assert_eq!(
            spec["process"]["args"],
            json!([INIT_TARGET, "--", "sleep", "1"])
        );
        assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");

        // What the node cannot give is the task's rejection, with why.
        let mut spec = base();
        let e = apply(&mut spec, &c, 150, Some("/x")).unwrap_err();
        assert!(e.contains("above what this node"), "{e}");
        let e = apply(&mut base(), &c, 4096, None).unwrap_err();
        assert!(e.contains("tini"), "{e}");
        let missing = ContainerSpec {
            devices: vec!["/dev/shoal-none".parse().unwrap()],
            ..Default::default()
        };
        assert!(apply(&mut base(), &missing, 4096, None).is_err());
    }

    #[test]
    fn privileged_has_every_capability_and_no_filter() {
        let c = ContainerSpec {
            privileged: true,
            ..Default::default()
        };
        let mut spec = base();
        apply(&mut spec, &c, 4096, None).unwrap();
        assert!(spec["linux"]["seccomp"].is_null());
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            held_caps().len()
        );
        assert!(held_caps().contains(&"CAP_SYS_ADMIN"));
        assert_eq!(
            spec["linux"]["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
        assert!(spec["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["path"] == "/dev/null"));
        assert!(spec["mounts"][0]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("rw")));
    }
}
