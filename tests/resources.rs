//! Resources and placement on one node, on real containerd: `--limit-*`
//! reach the
//! task's cgroup (v1 or v2, whichever the node has), a task past its
//! memory limit is killed and recorded as out of memory, and
//! `--reserve-memory` places no more tasks than the node's memory holds,
//! the others waiting with the reason; `--replicas-max-per-node` likewise.
//! The scheduler's arithmetic (and spread preferences, which need several
//! nodes) is unit-tested in `src/scheduler/tests.rs`.
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::harness::*;

/// A file of the task's cgroup: under the v2 unified tree, else under the
/// v1 hierarchy of `controller`.
fn cgroup_file(d: &Daemon, id: &str, controller: &str, v2: &str, v1: &str) -> String {
    let rel = format!("shoal/{}/{id}", d.namespace);
    let unified = PathBuf::from("/sys/fs/cgroup").join(&rel).join(v2);
    let legacy = PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join(&rel)
        .join(v1);
    std::fs::read_to_string(&unified)
        .or_else(|_| std::fs::read_to_string(&legacy))
        .unwrap_or_else(|e| {
            panic!(
                "neither {} nor {}: {e}",
                unified.display(),
                legacy.display()
            )
        })
        .trim()
        .to_string()
}

#[test]
fn limits_reach_the_cgroup_and_an_oom_kill_is_recorded() {
    let d = Daemon::cluster();
    d.sleeper(
        "capped",
        &[
            "--limit-memory",
            "32M",
            "--limit-cpu",
            "0.5",
            "--limit-pids",
            "64",
        ],
    );
    let ids = d.wait_running("capped", 1);
    let id = ids.iter().next().unwrap();
    let spec = d.ctr_spec(id);
    let r = &spec["linux"]["resources"];
    assert_eq!(r["memory"]["limit"], 32 << 20, "{r}");
    assert_eq!(r["cpu"]["quota"], 50_000, "{r}");
    assert_eq!(r["pids"]["limit"], 64, "{r}");
    // What the kernel enforces.
    assert_eq!(
        cgroup_file(&d, id, "memory", "memory.max", "memory.limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(cgroup_file(&d, id, "pids", "pids.max", "pids.max"), "64");
    let inspect = d.cli_json(&["service", "inspect", "capped"]);
    assert_eq!(
        inspect["spec"]["resources"]["limit_memory_bytes"],
        32 << 20,
        "{inspect}"
    );

    // A task that takes more than its limit: killed, and said so.
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "hog",
        "--limit-memory",
        "16M",
        "--restart-condition",
        "none",
        "busybox",
        "sh",
        "-c",
        "a=$(head -c 100000000 /dev/zero | tr '\\0' x); echo ${#a}",
    ]);
    let mut task = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            task = d.ps("hog").into_iter().next().unwrap_or_default();
            s(&task, "state") == "failed"
        }),
        "the hog never failed\n{}",
        d.describe("hog")
    );
    assert!(
        s(&task, "error").contains("out of memory"),
        "an OOM kill must be recorded: {task}"
    );

    // Bad values are refused with the reason.
    d.update_refused(
        "capped",
        &[
            (&["--limit-memory", "1M"][..], "too small"),
            (&["--limit-memory", "12Q"][..], "invalid size"),
            (
                &["--limit-memory", "64M", "--reserve-memory", "128M"][..],
                "reservation is more than the memory limit",
            ),
        ],
    );
}

#[test]
fn reservations_place_no_more_than_the_node_holds() {
    let d = Daemon::cluster();
    let node = &d.nodes()[0];
    let memory = node["memory_bytes"].as_u64().unwrap_or(0);
    assert!(memory > 0, "node ls must say the node's memory: {node}");
    // Each task reserves 40% of the node's memory: two fit, not three.
    let share = (memory * 2 / 5).to_string();
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "big",
        "--replicas",
        "3",
        "--reserve-memory",
        &share,
        "busybox",
        "sleep",
        "3600",
    ]);
    d.wait_running("big", 2);
    let mut pending = serde_json::Value::Null;
    assert!(
        wait_until(WAIT, || {
            pending = d
                .ps("big")
                .into_iter()
                .find(|t| s(t, "state") == "pending")
                .unwrap_or_default();
            s(&pending, "message").contains("less than")
        }),
        "the third task must wait, saying why\n{}",
        d.describe("big")
    );
    assert!(
        s(&pending, "message").starts_with("no suitable node (1 node has less than"),
        "{pending}"
    );
    assert!(
        s(&pending, "message").ends_with("of memory free)"),
        "{pending}"
    );
    // Still two after a while: nothing over-commits.
    d.settle();
    assert_eq!(d.running("big").len(), 2, "{}", d.describe("big"));
    // Scaled down to 2, all run; the reservation goes with the task.
    d.cli_ok(&["service", "scale", "big=2"]);
    d.cli_ok(&[
        "service",
        "update",
        "--reserve-memory",
        "0",
        "--replicas",
        "3",
        "big",
    ]);
    d.wait_running("big", 3);
}

#[test]
fn replicas_max_per_node_leaves_the_rest_pending_with_the_reason() {
    let d = Daemon::cluster();
    d.sleeper("one", &["--replicas", "2", "--replicas-max-per-node", "1"]);
    d.wait_running("one", 1);
    let mut pending = serde_json::Value::Null;
    assert!(
        wait_until(WAIT, || {
            pending = d
                .ps("one")
                .into_iter()
                .find(|t| s(t, "state") == "pending")
                .unwrap_or_default();
            s(&pending, "message").contains("the most per node")
        }),
        "the second task must wait\n{}",
        d.describe("one")
    );
    assert_eq!(
        s(&pending, "message"),
        "no suitable node (1 node already has 1 of its tasks, the most per node)"
    );
    let inspect = d.cli_json(&["service", "inspect", "one"]);
    assert_eq!(inspect["spec"]["max_replicas_per_node"], 1, "{inspect}");
    // Lifted: both run.
    d.cli_ok(&["service", "update", "--replicas-max-per-node", "0", "one"]);
    d.wait_running("one", 2);
    // A preference that is not a spread over a label is refused.
    let out = d.cli(&[
        "service",
        "update",
        "--placement-pref-add",
        "spread=node.id",
        "one",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("expected spread=node.labels.<key>"),
        "{}",
        stderr(&out)
    );
}
