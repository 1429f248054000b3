//! Mounts on real containerd: a bind of a node path (only under a prefix
//! the cluster allows) that the task writes through, a read-only bind it
//! cannot write, a tmpfs of the size asked (checked in the task's
//! mountinfo); a bind whose source is missing on the node rejects the
//! task with the reason; `--mount-add/-rm`; what is not allowed or not
//! valid is refused with the reason. And the task's capabilities
//! (`--cap-add/--cap-drop`) and a read-only root (`--read-only`).
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::time::Duration;

use common::harness::*;

#[test]
fn binds_under_an_allowed_prefix_and_tmpfs_reach_the_task() {
    let d = Daemon::cluster();
    let host = d.dir().join("srv");
    std::fs::create_dir_all(host.join("data")).unwrap();
    std::fs::create_dir_all(host.join("conf")).unwrap();
    std::fs::write(host.join("conf/app.conf"), "port 80\n").unwrap();
    let srv = host.to_str().unwrap().to_string();
    let data = format!("type=bind,source={srv}/data,target=/data");
    let conf = format!("type=bind,source={srv}/conf,target=/conf,readonly");
    let script = "echo written > /data/out; cat /conf/app.conf; \
                  touch /conf/x 2>/dev/null && echo conf-writable || echo conf-readonly; \
                  trap 'exit 0' TERM; while true; do sleep 1; done";
    let create = |name: &str| {
        d.cli(&[
            "service",
            "create",
            "--name",
            name,
            "--mount",
            &data,
            "--mount",
            &conf,
            "--mount",
            "type=tmpfs,target=/scratch,tmpfs-size=16M",
            "busybox",
            "sh",
            "-c",
            script,
        ])
    };
    // Not allowed until an admin says so.
    let out = create("app");
    assert!(!out.status.success(), "a bind was taken unallowed");
    assert!(
        stderr(&out).contains("are not allowed: the cluster allows none"),
        "{}",
        stderr(&out)
    );
    let out = d.cli_ok(&["cluster", "update", "--bind-allow", &srv]);
    assert!(
        out.contains(&format!("bind mounts allowed under {srv}")),
        "{out}"
    );
    let out = create("app");
    assert!(out.status.success(), "{}", stderr(&out));
    let ids = d.wait_running("app", 1);
    let id = ids.iter().next().unwrap();

    // The task wrote through the bind; read the read-only one, could not
    // write it.
    assert!(
        wait_until(WAIT, || host.join("data/out").exists()),
        "the task never wrote through its bind\n{}",
        d.describe("app")
    );
    assert_eq!(
        std::fs::read_to_string(host.join("data/out")).unwrap(),
        "written\n"
    );
    let mut logs = String::new();
    assert!(
        wait_until(WAIT, || {
            logs = stdout(&d.cli(&["service", "logs", "app"]));
            logs.contains("conf-")
        }),
        "{logs}"
    );
    assert!(logs.contains("port 80"), "{logs}");
    assert!(logs.contains("conf-readonly"), "{logs}");
    assert!(!host.join("conf/x").exists());
    // The tmpfs, of 16 MiB.
    let pid = d.ctr_tasks()[id].0;
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/scratch"))
        .unwrap_or_else(|| panic!("no /scratch in\n{info}"));
    assert!(line.contains(" - tmpfs "), "{line}");
    assert!(line.contains("size=16384k"), "{line}");

    // Update: one mount out, one in; what is not there is said so.
    d.update_refused(
        "app",
        &[
            (&["--mount-rm", "/nope"][..], "has no mount at /nope"),
            (
                &["--mount-add", "type=volume,target=/pg"][..],
                "a volume mount needs a name",
            ),
            (
                &["--mount-add", "/etc:/etc2"][..],
                "bind mounts of /etc are not allowed",
            ),
            (
                &["--mount-add", "type=tmpfs,target=rel"][..],
                "not an absolute path",
            ),
            (
                &["--mount-add", "type=bind,source=/srv/../etc,target=/x"][..],
                "'..'",
            ),
        ],
    );
    d.cli_ok(&["service", "update", "--mount-rm", "/scratch", "app"]);
    let spec = d.cli_json(&["service", "inspect", "app"])["spec"].clone();
    assert_eq!(spec["mounts"].as_array().map(Vec::len), Some(2), "{spec}");

    // A bind whose source this node lacks: the task is rejected, saying so.
    let missing = format!("type=bind,source={srv}/missing,target=/m");
    d.cli_ok(&[
        "service", "create", "--name", "lost", "--mount", &missing, "busybox", "true",
    ]);
    let mut error = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            error = d
                .ps("lost")
                .first()
                .map(|t| t["error"].as_str().unwrap_or("").to_string())
                .unwrap_or_default();
            error.contains("bind source path does not exist")
        }),
        "{error}\n{}",
        d.describe("lost")
    );
    // Removing the prefix again: new binds under it are refused.
    d.cli_ok(&["cluster", "update", "--bind-allow-rm", &srv]);
    let out = create("again");
    assert!(stderr(&out).contains("not allowed"), "{}", stderr(&out));
}

/// `--cap-drop ALL` leaves the task no capability, `--cap-add` gives one
/// back (as `/proc/self/status` shows them), and `--read-only` makes its
/// root filesystem so.
#[test]
fn capabilities_and_a_read_only_root_reach_the_task() {
    let d = Daemon::cluster();
    let script = "grep CapEff /proc/self/status; \
                  touch /x 2>/dev/null && echo root-writable || echo root-readonly; \
                  trap 'exit 0' TERM; while true; do sleep 1; done";
    let logs_of = |name: &str| {
        let mut logs = String::new();
        assert!(
            wait_until(WAIT, || {
                logs = stdout(&d.cli(&["service", "logs", name]));
                logs.contains("root-")
            }),
            "{name} never wrote its checks: {logs}\n{}",
            d.describe(name)
        );
        logs
    };
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "none",
        "--cap-drop",
        "ALL",
        "--read-only",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    let logs = logs_of("none");
    assert!(logs.contains("CapEff:\t0000000000000000"), "{logs}");
    assert!(logs.contains("root-readonly"), "{logs}");
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "rawio",
        "--cap-drop",
        "all",
        "--cap-add",
        "sys_rawio",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    let logs = logs_of("rawio");
    // CAP_SYS_RAWIO is capability 17.
    assert!(logs.contains("CapEff:\t0000000000020000"), "{logs}");
    assert!(logs.contains("root-writable"), "{logs}");
    let inspect = d.cli_json(&["service", "inspect", "rawio"]);
    assert_eq!(
        inspect["spec"]["cap_add"],
        serde_json::json!(["CAP_SYS_RAWIO"]),
        "{inspect}"
    );
    let out = d.cli(&[
        "service",
        "create",
        "--name",
        "x",
        "--cap-add",
        "flying",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&out).contains("unknown capability \"flying\""),
        "{}",
        stderr(&out)
    );
}
