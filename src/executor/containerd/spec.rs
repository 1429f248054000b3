//! The OCI runtime spec of a task's container, built as JSON from the task
//! and the image config, plus user resolution against the image's
//! /etc/passwd and /etc/group. Pure functions, no I/O: tested below.
//!
//! Defaults follow docker's: its capability set, masked and read-only
//! paths, /dev, /proc and /sys mounts, and `Entrypoint + (args or Cmd)`.
//! No network namespace: containers share the host's network for now.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::types::ContainerSpec;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The image config blob (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct ImageConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// What the image says about running it. Go writes `null` for empty
/// lists, hence the Options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RunConfig {
    pub user: Option<String>,
    pub env: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub healthcheck: Option<ImageHealth>,
}

/// The image's `HEALTHCHECK`, durations in nanoseconds (0: the default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ImageHealth {
    pub test: Option<Vec<String>>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub retries: Option<i64>,
}

impl ImageHealth {
    /// As a task's check, or None when it runs nothing.
    pub fn check(&self) -> Option<crate::types::HealthCheck> {
        let d = crate::types::HealthCheck::default();
        let ms = |ns: Option<i64>, default: u64| match ns {
            Some(n) if n > 0 => (n as u64 / 1_000_000).max(1),
            _ => default,
        };
        let check = crate::types::HealthCheck {
            test: self.test.clone().unwrap_or_default(),
            interval_ms: ms(self.interval, d.interval_ms),
            timeout_ms: ms(self.timeout, d.timeout_ms),
            start_period_ms: ms(self.start_period, d.start_period_ms),
            retries: match self.retries {
                Some(n) if n > 0 => n.min(100) as u32,
                _ => d.retries,
            },
        };
        check.args().map(|_| check)
    }
}

/// A user resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// From /etc/passwd, used for HOME.
    pub home: Option<String>,
}

/// The user the task runs as: the task's, else the image's, else root.
pub(super) fn user_of<'a>(c: &'a ContainerSpec, image: &'a RunConfig) -> &'a str {
    c.user
        .as_deref()
        .filter(|u| !u.is_empty())
        .or(image.user.as_deref())
        .unwrap_or("")
}

/// Whether `user` names a user or group that needs /etc/passwd or /etc/group.
pub(super) fn needs_lookup(user: &str) -> bool {
    !user.is_empty() && user.split(':').any(|p| p.parse::<u32>().is_err())
}

/// Resolves `name`, `uid`, `name:group`, `uid:gid` (any mix) as docker
/// does: a numeric uid is taken as is (its gid comes from /etc/passwd when
/// listed there, else 0); a name must be in /etc/passwd. Supplementary
/// groups are the /etc/group entries listing the user.
pub(super) fn resolve_user(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<User, String> {
    if user.is_empty() {
        return Ok(User {
            home: Some("/root".into()),
            ..User::default()
        });
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entries: Vec<Vec<&str>> = passwd
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let entry = match u.parse::<u32>() {
        Ok(uid) => entries.iter().find(|f| f[2].parse() == Ok(uid)),
        Err(_) => Some(entries.iter().find(|f| f[0] == u).ok_or_else(|| {
            format!("unable to find user {u}: no matching entries in passwd file")
        })?),
    };
    let uid = match u.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => parse_id(entry.map(|f| f[2]), u)?,
    };
    let groups: Vec<Vec<&str>> = group
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                parse_id(groups.iter().find(|f| f[0] == g).map(|f| f[2]), g).map_err(|_| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?
            }
        },
        None => match entry {
            Some(f) => parse_id(Some(f[3]), u)?,
            None => 0,
        },
    };
    let name = entry.map(|f| f[0]);
    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        for f in &groups {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m.trim() == name) {
                if let Ok(id) = f[2].parse::<u32>() {
                    if id != gid && !additional_gids.contains(&id) {
                        additional_gids.push(id);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
        home: entry.and_then(|f| f.get(5)).map(|h| h.to_string()),
    })
}

/// The ids of `--group-add` groups: numbers as they are, names from the
/// image's /etc/group.
pub(super) fn resolve_groups(names: &[String], group: Option<&str>) -> Result<Vec<u32>, String> {
    names
        .iter()
        .map(|g| match g.parse::<u32>() {
            Ok(id) => Ok(id),
            Err(_) => group
                .unwrap_or("")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                }),
        })
        .collect()
}

fn parse_id(field: Option<&str>, what: &str) -> Result<u32, String> {
    field
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| format!("bad id for {what} in passwd file"))
}

/// Docker's rule: the task's entrypoint or else the image's, then the
/// task's args or else the image's Cmd (only with the image's own
/// entrypoint: a new entrypoint drops the Cmd written for the old one).
pub(super) fn process_args(
    entrypoint: Option<&[String]>,
    task_args: &[String],
    image: &RunConfig,
) -> Result<Vec<String>, String> {
    let mut args = match entrypoint {
        Some(ep) => ep.to_vec(),
        None => image.entrypoint.clone().unwrap_or_default(),
    };
    if task_args.is_empty() && entrypoint.is_none() {
        args.extend(image.cmd.clone().unwrap_or_default());
    } else {
        args.extend(task_args.iter().cloned());
    }
    if args.is_empty() {
        return Err("no command: the task has no args and the image no Entrypoint or Cmd".into());
    }
    Ok(args)
}

/// Image env, then task env (a task value replaces the image's for the
/// same key, in place), then PATH, HOSTNAME and HOME when still missing.
/// Task entries without `=` are dropped: there is no client env to fill
/// them from.
pub(super) fn merge_env(
    image: &[String],
    task: &[String],
    hostname: &str,
    home: Option<&str>,
) -> Vec<String> {
    fn key(e: &str) -> &str {
        e.split_once('=').map_or(e, |(k, _)| k)
    }
    let mut env: Vec<String> = Vec::new();
    for e in image.iter().chain(task.iter().filter(|e| e.contains('='))) {
        match env.iter_mut().find(|x| key(x) == key(e)) {
            Some(slot) => *slot = e.clone(),
            None => env.push(e.clone()),
        }
    }
    let defaults = [
        ("PATH", DEFAULT_PATH),
        ("HOSTNAME", hostname),
        ("HOME", home.unwrap_or("/")),
    ];
    for (k, v) in defaults {
        if !env.iter().any(|e| key(e) == k) {
            env.push(format!("{k}={v}"));
        }
    }
    env
}

pub(super) use crate::executor::task_hostname as hostname;

/// The complete OCI spec for the container of task `task_id`.
pub(super) fn build(
    task_id: &str,
    c: &ContainerSpec,
    image: &RunConfig,
    user: &User,
    namespace: &str,
    nofile_hard: u64,
    setup: &crate::executor::Setup,
) -> Result<Value, String> {
    let host = match setup.hostname.as_str() {
        "" => hostname(task_id),
        h => h,
    };
    let args = process_args(c.entrypoint.as_deref(), &c.args, image)?;
    let env = merge_env(
        image.env.as_deref().unwrap_or(&[]),
        &c.env,
        host,
        user.home.as_deref(),
    );
    let cwd = c
        .workdir
        .as_deref()
        .filter(|w| !w.is_empty())
        .or(image.working_dir.as_deref().filter(|w| !w.is_empty()))
        .unwrap_or("/");
    let cwd = if cwd.starts_with('/') {
        cwd.to_string()
    } else {
        format!("/{cwd}")
    };
    let caps = crate::types::task_caps(&c.cap_add, &c.cap_drop);
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "additionalGids": user.additional_gids,
            },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": [nofile(nofile_hard)],
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": c.read_only},
        "hostname": host,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            // runc appends its default device rules (null, zero, tty, …)
            // after this deny-all.
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            // A cgroupfs path: runc creates it under every v1 hierarchy, or
            // under the v2 unified tree, so it works on both.
            "cgroupsPath": cgroups_path(namespace, task_id),
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    });
    if let Some(net) = &setup.net {
        join_network(&mut spec, net)?;
    }
    bind_files(&mut spec, &setup.files)?;
    Ok(spec)
}

/// The task's binds and tmpfs (`--mount`). A bind's source must exist on
/// the node (as docker's services say: the task is rejected, not given an
/// empty directory made on the spot).
pub(super) fn mounts(
    spec: &mut Value,
    list: &[crate::types::Mount],
    volumes: &[(String, std::path::PathBuf)],
) -> Result<(), String> {
    use crate::types::MountKind;
    let Some(mounts) = spec["mounts"].as_array_mut() else {
        return Ok(());
    };
    for m in list {
        let rw = if m.readonly { "ro" } else { "rw" };
        mounts.push(match m.kind {
            MountKind::Bind => {
                if !std::path::Path::new(&m.source).exists() {
                    return Err(format!(
                        "invalid mount: bind source path does not exist on this node: {}",
                        m.source
                    ));
                }
                json!({
                    "destination": m.target, "type": "bind", "source": m.source,
                    "options": ["rbind", "rprivate", rw],
                })
            }
            MountKind::Volume => {
                let source = volumes
                    .iter()
                    .find(|(n, _)| *n == m.source)
                    .and_then(|(_, p)| p.to_str())
                    .ok_or_else(|| format!("volume {} was not made on this node", m.source))?;
                json!({
                    "destination": m.target, "type": "bind", "source": source,
                    "options": ["rbind", "rprivate", rw],
                })
            }
            MountKind::Tmpfs => {
                let mut options = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "noexec".to_string(),
                    rw.to_string(),
                    format!("mode={:o}", m.tmpfs_mode.unwrap_or(0o1777)),
                ];
                if m.tmpfs_size > 0 {
                    options.push(format!("size={}", m.tmpfs_size));
                }
                json!({
                    "destination": m.target, "type": "tmpfs", "source": "tmpfs",
                    "options": options,
                })
            }
        });
    }
    Ok(())
}

/// The task's secrets and configs: each a file of its tmpfs on the node,
/// bound read-only over its target (runc makes the target, an empty file
/// in the container's rootfs; the data never reaches the rootfs).
fn bind_files(spec: &mut Value, files: &[crate::executor::FileMount]) -> Result<(), String> {
    let Some(mounts) = spec["mounts"].as_array_mut() else {
        return Ok(());
    };
    for f in files {
        let source = f
            .source
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", f.source.display()))?;
        mounts.push(json!({
            "destination": f.target, "type": "bind", "source": source,
            "options": ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"],
        }));
    }
    Ok(())
}

/// The task's cgroup limits (`--limit-*`) in the runtime spec: runc
/// writes them to the cgroup v1 controllers or the v2 unified tree alike.
/// CPU as a quota of the default 100 ms period. No swap setting: a node
/// without swap accounting (Raspberry Pi OS's default) would refuse it.
pub(super) fn limit(spec: &mut Value, r: &crate::types::Resources) {
    const PERIOD_US: u64 = 100_000;
    let res = &mut spec["linux"]["resources"];
    if r.limit_memory_bytes > 0 {
        res["memory"] = json!({"limit": r.limit_memory_bytes});
    }
    if r.limit_nano_cpus > 0 {
        // At least 1 ms per period: the kernel's floor.
        let quota = (u128::from(r.limit_nano_cpus) * u128::from(PERIOD_US) / 1_000_000_000)
            .max(1_000) as u64;
        res["cpu"] = json!({"quota": quota, "period": PERIOD_US});
    }
    if r.limit_pids > 0 {
        res["pids"] = json!({"limit": r.limit_pids});
    }
}

/// The task's own network: its namespace, and its hosts, resolv.conf and
/// hostname files bound over the image's (as docker does, so that they
/// hold the task's address and resolvers whatever the image has).
fn join_network(spec: &mut Value, net: &crate::executor::NetFiles) -> Result<(), String> {
    let path = |p: &std::path::Path| {
        p.to_str()
            .map(String::from)
            .ok_or_else(|| format!("{} is not UTF-8", p.display()))
    };
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.push(json!({"type": "network", "path": path(&net.netns)?}));
    }
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for (dest, src) in [
            ("/etc/hosts", &net.hosts),
            ("/etc/resolv.conf", &net.resolv_conf),
            ("/etc/hostname", &net.hostname),
        ] {
            mounts.push(json!({
                "destination": dest, "type": "bind", "source": path(src)?,
                "options": ["rbind", "rprivate", "ro"],
            }));
        }
    }
    Ok(())
}

/// Docker's open-files limit (soft 1024, hard 524288), lowered to the hard
/// limit the container can have: the container's init lacks
/// CAP_SYS_RESOURCE, so runc cannot raise it past what the shim inherited.
fn nofile(inherited_hard: u64) -> Value {
    let hard = inherited_hard.min(524_288);
    json!({"type": "RLIMIT_NOFILE", "hard": hard, "soft": hard.min(1024)})
}

/// Where the container's cgroup lives, relative to each hierarchy root.
pub(super) fn cgroups_path(namespace: &str, task_id: &str) -> String {
    format!("/shoal/{namespace}/{task_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_the_runtime_spec_s_resources() {
        let mut spec = json!({"linux": {"resources": {"devices": []}}});
        limit(
            &mut spec,
            &crate::types::Resources {
                limit_nano_cpus: 500_000_000,
                limit_memory_bytes: 64 << 20,
                limit_pids: 100,
                ..Default::default()
            },
        );
        let r = &spec["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["pids"]["limit"], 100);
        assert!(r["devices"].is_array(), "the device rules stay");
        // None set: nothing added.
        let mut plain = json!({"linux": {"resources": {}}});
        limit(&mut plain, &Default::default());
        assert_eq!(plain["linux"]["resources"], json!({}));
    }

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\n# c\napp:x:1000:1001:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\nappgrp:x:1001:\nops:x:20:app\n";

    #[test]
    fn resolves_users_like_docker() {
        let r = |u| resolve_user(u, Some(PASSWD), Some(GROUP));
        let app = r("app").unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1001));
        assert_eq!(app.additional_gids, vec![10, 20]);
        assert_eq!(app.home.as_deref(), Some("/home/app"));
        assert_eq!(r("1000").unwrap().gid, 1001);
        assert_eq!(r("1234").unwrap().gid, 0);
        assert_eq!((r("55:66").unwrap().uid, r("55:66").unwrap().gid), (55, 66));
        assert_eq!(r("app:ops").unwrap().gid, 20);
        assert_eq!(r("").unwrap().uid, 0);
        assert!(r("nobody")
            .unwrap_err()
            .contains("unable to find user nobody"));
        assert!(r("app:nogroup")
            .unwrap_err()
            .contains("unable to find group"));
        assert!(resolve_user("app", None, None).is_err());
        assert!(needs_lookup("app") && needs_lookup("1:grp") && !needs_lookup("1:2"));
        let groups = |g: &[&str]| {
            let g: Vec<String> = g.iter().map(|s| s.to_string()).collect();
            resolve_groups(&g, Some(GROUP))
        };
        assert_eq!(groups(&["wheel", "77"]).unwrap(), vec![10, 77]);
        assert!(groups(&["dialout"])
            .unwrap_err()
            .contains("unable to find group dialout"));
    }

    #[test]
    fn args_follow_docker_entrypoint_rules() {
        let img = |ep: Option<&[&str]>, cmd: Option<&[&str]>| RunConfig {
            entrypoint: ep.map(|v| v.iter().map(|s| s.to_string()).collect()),
            cmd: cmd.map(|v| v.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            process_args(None, &[], &img(None, Some(&["sh"]))).unwrap(),
            s(&["sh"])
        );
        assert_eq!(
            process_args(None, &s(&["ls"]), &img(None, Some(&["sh"]))).unwrap(),
            s(&["ls"])
        );
        assert_eq!(
            process_args(None, &s(&["-x"]), &img(Some(&["/ep"]), Some(&["d"]))).unwrap(),
            s(&["/ep", "-x"])
        );
        assert_eq!(
            process_args(None, &[], &img(Some(&["/ep"]), Some(&["d"]))).unwrap(),
            s(&["/ep", "d"])
        );
        assert!(process_args(None, &[], &img(None, None)).is_err());
    }

    #[test]
    fn task_env_wins_and_defaults_fill_in() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let env = merge_env(
            &s(&["A=1", "B=2"]),
            &s(&["B=3", "C=4", "NOVALUE"]),
            "h",
            None,
        );
        assert_eq!(&env[..3], &s(&["A=1", "B=3", "C=4"]));
        assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
        assert!(env.contains(&"HOSTNAME=h".to_string()));
        let env = merge_env(&s(&["PATH=/bin"]), &[], "h", Some("/home/x"));
        assert!(
            env.contains(&"PATH=/bin".to_string()) && env.contains(&"HOME=/home/x".to_string())
        );
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    }

    #[test]
    fn binds_and_tmpfs_become_oci_mounts() {
        use crate::types::{Mount, MountKind};
        let mut spec = json!({"mounts": []});
        let tmp = std::env::temp_dir();
        let list = [
            Mount {
                kind: MountKind::Bind,
                source: tmp.to_str().unwrap().into(),
                target: "/data".into(),
                readonly: true,
                tmpfs_size: 0,
                tmpfs_mode: None,
            },
            Mount {
                kind: MountKind::Tmpfs,
                source: String::new(),
                target: "/scratch".into(),
                readonly: false,
                tmpfs_size: 1 << 20,
                tmpfs_mode: None,
            },
        ];
        mounts(&mut spec, &list, &[]).unwrap();
        let m = spec["mounts"].as_array().unwrap();
        assert_eq!(m[0]["type"], "bind");
        assert!(m[0]["options"].as_array().unwrap().contains(&json!("ro")));
        assert_eq!(m[1]["type"], "tmpfs");
        let opts = m[1]["options"].as_array().unwrap();
        assert!(opts.contains(&json!("size=1048576")) && opts.contains(&json!("mode=1777")));
        // A bind of what the node lacks is refused.
        let mut missing = list[0].clone();
        missing.source = "/nonexistent/shoal".into();
        let err = mounts(&mut spec, &[missing], &[]).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn spec_has_the_essentials() {
        let c = ContainerSpec {
            args: vec!["sleep".into(), "1".into()],
            workdir: Some("work".into()),
            ..Default::default()
        };
        let id = "abcdefghijklmnopqrstuvwxy";
        let with = |setup: &crate::executor::Setup| {
            let (run, user) = (RunConfig::default(), User::default());
            build(id, &c, &run, &user, "ns", 20_000, setup).unwrap()
        };
        let spec = with(&Default::default());
        assert_eq!(spec["process"]["rlimits"][0]["hard"], 20_000);
        assert_eq!(spec["process"]["rlimits"][0]["soft"], 1024);
        assert_eq!(spec["hostname"], "abcdefghijkl");
        assert_eq!(spec["root"]["path"], "rootfs");
        assert_eq!(spec["process"]["cwd"], "/work");
        assert_eq!(
            spec["linux"]["cgroupsPath"],
            "/shoal/ns/abcdefghijklmnopqrstuvwxy"
        );
        let ns: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!ns.contains(&"network"));

        // With a network of its own: its namespace and its files.
        let net = crate::executor::NetFiles {
            netns: "/run/shoal/net/x/ns/t".into(),
            hosts: "/run/shoal/net/x/t/hosts".into(),
            resolv_conf: "/run/shoal/net/x/t/resolv.conf".into(),
            hostname: "/run/shoal/net/x/t/hostname".into(),
        };
        let secret = crate::executor::FileMount {
            source: "/run/shoal/files/ns/t/s0".into(),
            target: "/run/secrets/pw".into(),
        };
        let spec = with(&crate::executor::Setup {
            hostname: "pi3-1".into(),
            net: Some(net),
            files: vec![secret],
            volumes: Vec::new(),
        });
        assert_eq!(spec["hostname"], "pi3-1");
        let ns = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network", "path": "/run/shoal/net/x/ns/t"})));
        let mounts = spec["mounts"].as_array().unwrap();
        let hosts = mounts
            .iter()
            .find(|m| m["destination"] == "/etc/hosts")
            .unwrap();
        assert_eq!(hosts["source"], "/run/shoal/net/x/t/hosts");
        assert!(mounts
            .iter()
            .any(|m| m["destination"] == "/etc/resolv.conf"));
        // Its secret: bound read-only from the node's tmpfs.
        let pw = mounts
            .iter()
            .find(|m| m["destination"] == "/run/secrets/pw")
            .unwrap();
        assert_eq!(pw["source"], "/run/shoal/files/ns/t/s0");
        assert!(pw["options"].as_array().unwrap().contains(&json!("ro")));
    }
}
