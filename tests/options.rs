//! A task's options on real containerd: a device of the node (made by
//! the test with mknod) works in the task, within the permissions of its
//! cgroup rule, and a node without it is skipped with the reason; groups,
//! sysctls, ulimits, an init as PID 1, a hostname from a template and
//! docker's seccomp filter, as the task sees them; `--privileged` refused
//! until the cluster allows it, then every capability and no filter.
//!
//! Needs root, a running containerd (`bash .ci/start-containerd`), util-
//! linux's unshare and Debian's tini (`tests/run` installs them).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::harness::*;

/// A directory of /dev made for the test, removed when dropped.
struct DevDir(PathBuf);

impl Drop for DevDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The service's logs once they hold `until`.
fn logs_with(d: &Daemon, service: &str, until: &str) -> String {
    let mut logs = String::new();
    assert!(
        wait_until(WAIT, || {
            logs = stdout(&d.cli(&["service", "logs", service]));
            logs.contains(until)
        }),
        "{service} never printed {until:?}: {logs}\n{}\n{:?}",
        d.describe(service),
        d.ps(service).first().map(|t| t["error"].clone())
    );
    logs
}

const KEEP_RUNNING: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

#[test]
fn a_device_works_in_the_task_and_a_node_without_it_is_skipped() {
    let manager = Daemon::cluster();
    // A character device of the test's own: a copy of /dev/null (1, 3).
    let dir = DevDir(PathBuf::from(format!(
        "/dev/shoal-test-{}-{}",
        std::process::id(),
        manager.port
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let sensor = dir.0.join("sensor");
    let out = run(Command::new("mknod")
        .args(["-m", "666"])
        .arg(&sensor)
        .args(["c", "1", "3"]));
    assert!(out.status.success(), "mknod: {}", stderr(&out));
    let sensor = sensor.to_str().unwrap().to_string();
    let devdir = dir.0.to_str().unwrap().to_string();

    // The worker sees /dev without it: its daemon runs in a mount
    // namespace of its own where an empty tmpfs covers the test's dir.
    let mut worker = Daemon::new(CONTAINERD_SOCKET);
    let wrapper = worker.dir().join("no-device");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec unshare --mount --propagation private -- /bin/sh -c 'mount -t tmpfs none \"$1\" && shift && exec \"$@\"' wrapper {devdir} {SHOAL} \"$@\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    worker.binary = wrapper;
    worker.spawn();
    worker.wait_ready().unwrap_or_else(|e| panic!("{e}"));
    let (mid, wid) = worker.join_as_worker(&manager);
    // Each node reports what it has (the manager its new device within
    // its next look at /dev).
    let devices = |id: &str| manager.cli_json(&["node", "inspect", id])["devices"].clone();
    assert!(
        wait_until(Duration::from_secs(30), || devices(&mid)
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == sensor.as_str()))),
        "the manager does not report {sensor}: {}",
        devices(&mid)
    );
    assert!(
        devices(&wid).as_array().is_some_and(
            |d| d.iter().any(|x| x == "/dev/null") && !d.iter().any(|x| x == sensor.as_str())
        ),
        "the worker's devices: {}",
        devices(&wid)
    );

    // Two replicas: both on the manager, the only node with the device,
    // written to and read from in the task. A device without a rule (made
    // in the task: CAP_MKNOD is in the default set) is refused by the
    // cgroup; each --device has its rule, with its permissions.
    let rw = format!("{sensor}:/dev/sensor:rw");
    let ro = format!("{sensor}:/dev/ro:r");
    let script = format!(
        "ls -l /dev/sensor; echo x > /dev/sensor && echo write-ok; cat /dev/ro && echo read-ok; \
         mknod /tmp/mem c 1 1 && head -c1 /tmp/mem >/dev/null || echo no-rule-refused; {KEEP_RUNNING}"
    );
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "sensor",
        "--replicas",
        "2",
        "--device",
        &rw,
        "--device",
        &ro,
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    let ids = manager.wait_running("sensor", 2);
    for t in manager.ps("sensor") {
        assert_eq!(
            s(&t, "node_id"),
            mid,
            "a task went to a node without the device"
        );
    }
    let logs = logs_with(&manager, "sensor", "no-rule-refused");
    assert!(
        logs.contains("write-ok") && logs.contains("read-ok"),
        "{logs}"
    );
    assert!(
        logs.contains("crw-rw-rw-") && logs.contains("1,   3"),
        "{logs}"
    );
    let spec = manager.ctr_spec(ids.iter().next().unwrap());
    let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
    for access in ["rw", "r"] {
        let rule = serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": access});
        assert!(rules.contains(&rule), "no rule {rule} in {rules:?}");
    }

    // Only the worker may run it: it does not have the device, and says so.
    let only_worker = format!("node.id=={wid}");
    let out = manager.cli(&[
        "service",
        "create",
        "--detach",
        "--name",
        "stuck",
        "--device",
        &sensor,
        "--constraint",
        &only_worker,
        "busybox",
        "sleep",
        "60",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut message = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            message = manager
                .ps("stuck")
                .first()
                .map(|t| s(t, "message").to_string())
                .unwrap_or_default();
            message.contains(&format!("1 node does not have device {sensor}"))
        }),
        "{message}\n{}",
        manager.describe("stuck")
    );
    // A bad device is refused before anything is written.
    let out = manager.cli(&[
        "service",
        "create",
        "--name",
        "bad",
        "--device",
        "/dev/x:/y:rwx",
        "busybox",
    ]);
    assert!(
        stderr(&out).contains("invalid device permissions"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn groups_sysctls_ulimits_init_hostname_and_seccomp_reach_the_task() {
    let d = Daemon::cluster();
    let script = format!(
        "id; echo shm=$(cat /proc/sys/kernel/shmmax); echo nofile=$(ulimit -Sn)/$(ulimit -Hn); \
         echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); echo host=$(hostname); \
         grep -E '^(Seccomp|CapEff):' /proc/self/status; echo done; {KEEP_RUNNING}"
    );
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "opts",
        "--group-add",
        "4321",
        "--sysctl",
        "kernel.shmmax=1234567",
        "--ulimit",
        "nofile=512:1024",
        "--init",
        "--hostname",
        "{{.Service.Name}}-{{.Task.Slot}}",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    let logs = logs_with(&d, "opts", "done");
    assert!(logs.contains("groups=") && logs.contains("4321"), "{logs}");
    assert!(logs.contains("shm=1234567"), "{logs}");
    assert!(logs.contains("nofile=512/1024"), "{logs}");
    assert!(logs.contains("pid1=/sbin/docker-init -- sh -c"), "{logs}");
    assert!(logs.contains("host=opts-1"), "{logs}");
    // docker's filter, in filter mode.
    assert!(logs.contains("Seccomp:\t2"), "{logs}");

    // What the node cannot take is refused up front, saying why.
    for (flags, want) in [
        (
            &["--sysctl", "vm.swappiness=1"][..],
            "not kept per container",
        ),
        (
            &["--network", "host", "--sysctl", "net.core.somaxconn=1"][..],
            "node's own network",
        ),
        (&["--ulimit", "nofile=2:1"][..], "soft limit is above"),
        (
            &["--hostname", "{{.Node.Labels}}"][..],
            "unknown placeholder",
        ),
        (&["--privileged"][..], "privileged services are not allowed"),
    ] {
        let mut args = vec!["service", "create", "--name", "no"];
        args.extend_from_slice(flags);
        args.push("busybox");
        let out = d.cli(&args);
        assert!(!out.status.success(), "{flags:?} was taken");
        assert!(stderr(&out).contains(want), "{flags:?}: {}", stderr(&out));
    }

    // Update: the hostname and a sysctl change, and the task shows them.
    d.cli_ok(&[
        "service",
        "update",
        "--hostname",
        "{{.Node.Hostname}}-{{.Task.Slot}}",
        "--sysctl-rm",
        "kernel.shmmax",
        "--ulimit-rm",
        "nofile",
        "opts",
    ]);
    let spec = d.cli_json(&["service", "inspect", "opts"])["spec"].clone();
    assert!(
        spec["sysctls"].is_null() && spec["ulimits"].is_null(),
        "{spec}"
    );
    d.update_refused(
        "opts",
        &[
            (&["--ulimit-rm", "core"][..], "has no ulimit core"),
            (&["--device-rm", "/dev/nope"][..], "has no device /dev/nope"),
        ],
    );
    let host = hostname();
    assert!(
        wait_until(WAIT, || stdout(&d.cli(&["service", "logs", "opts"]))
            .contains(&format!("host={host}-1"))),
        "{}",
        stdout(&d.cli(&["service", "logs", "opts"]))
    );

    // Privileged, once the cluster allows it: every capability (SYS_ADMIN
    // among them), no seccomp filter.
    let out = d.cli_ok(&["cluster", "update", "--allow-privileged", "true"]);
    assert!(out.contains("privileged services allowed"), "{out}");
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "priv",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        &format!("grep -E '^(Seccomp|CapEff):' /proc/self/status; echo done; {KEEP_RUNNING}"),
    ]);
    let logs = logs_with(&d, "priv", "done");
    assert!(logs.contains("Seccomp:\t0"), "{logs}");
    let capeff = logs
        .lines()
        .find_map(|l| l.split("CapEff:\t").nth(1))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in {logs}"));
    assert!(capeff & (1 << 21) != 0, "no CAP_SYS_ADMIN: {capeff:x}");
}
