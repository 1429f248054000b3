//! Named volumes on real containerd: a volume made on first use keeps its
//! data across a task's replacement and a daemon restart; it cannot be
//! removed while a task uses it, and can once none does. A volume made on
//! a worker (`volume create --node`) draws the tasks that use it there,
//! and a node without it is skipped with the reason. Bad names and
//! mounts are refused with the reason.
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::time::Duration;

use common::harness::*;

const COUNT_RUNS: &str = "echo run >> /data/runs; echo runs=$(wc -l < /data/runs); \
                          trap 'exit 0' TERM; while true; do sleep 1; done";

/// Waits until the service's logs hold `want`.
fn logs_hold(d: &Daemon, service: &str, want: &str) {
    let mut logs = String::new();
    assert!(
        wait_until(WAIT, || {
            logs = stdout(&d.cli(&["service", "logs", service]));
            logs.contains(want)
        }),
        "{service}: no {want:?} in {logs}\n{}",
        d.describe(service)
    );
}

#[test]
fn a_volume_keeps_its_data_across_replacement_and_restart() {
    let mut d = Daemon::cluster();
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "db",
        "--mount",
        "type=volume,source=pgdata,target=/data",
        "busybox",
        "sh",
        "-c",
        COUNT_RUNS,
    ]);
    d.wait_running("db", 1);
    logs_hold(&d, "db", "runs=1");
    // Made on first use, on this node, in its data dir.
    let data = d.data_dir.join("volumes/pgdata/_data/runs");
    assert!(data.exists(), "no {}", data.display());
    let ls = d.cli_json(&["volume", "ls"]);
    let row = ls
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == "pgdata"))
        .unwrap_or_else(|| panic!("no pgdata in {ls}"));
    assert_eq!(row["driver"], "local");
    assert_eq!(row["used_by"][0], "db.1", "{row}");

    // A new task: the same data.
    d.cli_ok(&["service", "update", "--detach=false", "--force", "db"]);
    logs_hold(&d, "db", "runs=2");
    // The daemon restarts; the volume is still there for the next task.
    d.restart();
    d.cli_ok(&["service", "update", "--detach=false", "--force", "db"]);
    logs_hold(&d, "db", "runs=3");

    // In use: kept, saying by what.
    let out = d.cli(&["volume", "rm", "pgdata"]);
    assert!(!out.status.success(), "a volume in use was removed");
    assert!(
        stderr(&out).contains("is in use on") && stderr(&out).contains("db.1"),
        "{}",
        stderr(&out)
    );
    assert!(data.exists());
    // Once no task uses it: removed, its data with it.
    d.cli_ok(&["service", "rm", "db"]);
    assert!(
        wait_until(WAIT, || d.ctr_running().is_empty()),
        "the task never went"
    );
    let mut out = d.cli(&["volume", "rm", "pgdata"]);
    // The task's record may still say it runs for a moment after its
    // container went.
    for _ in 0..20 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        out = d.cli(&["volume", "rm", "pgdata"]);
    }
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!d.data_dir.join("volumes/pgdata").exists());

    // Bad input, with the reason.
    for (args, want) in [
        (&["volume", "create", "../x"][..], "invalid volume name"),
        (&["volume", "rm", "nope"][..], "not found"),
        (
            &[
                "service",
                "create",
                "--name",
                "x",
                "--mount",
                "type=volume,target=/d",
                "busybox",
            ][..],
            "a volume mount needs a name",
        ),
        (
            &[
                "service",
                "create",
                "--name",
                "x",
                "--mount",
                "type=volume,source=v,target=/d,volume-driver=nfs",
                "busybox",
            ][..],
            "only local",
        ),
    ] {
        let out = d.cli(args);
        assert!(!out.status.success(), "{args:?} was taken");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn tasks_go_to_the_node_that_has_their_volume() {
    let manager = Daemon::cluster();
    let worker = Daemon::start();
    worker.load_image("busybox");
    let (mid, wid) = worker.join_as_worker(&manager);
    manager.cli_ok(&[
        "volume",
        "create",
        "--node",
        &wid,
        "--label",
        "app=sensor",
        "readings",
    ]);
    let info = manager.cli_json(&["volume", "inspect", "readings"]);
    assert_eq!(info[0]["node_id"], wid.as_str(), "{info}");
    assert_eq!(info[0]["labels"]["app"], "sensor", "{info}");
    assert!(worker.data_dir.join("volumes/readings/_data").is_dir());
    // The managers learn where it is.
    assert!(
        wait_until(WAIT, || manager.cli_json(&["node", "inspect", &wid])
            ["volumes"][0]
            == "readings"),
        "the worker never reported its volume"
    );

    // Two replicas: both on the worker, writing into its volume.
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "logger",
        "--replicas",
        "2",
        "--mount",
        "readings:/data",
        "busybox",
        "sh",
        "-c",
        COUNT_RUNS,
    ]);
    // On the worker: its containerd namespace runs them.
    assert!(
        wait_until(WAIT, || manager.running("logger").len() == 2
            && worker.ctr_running().len() == 2),
        "{}",
        manager.describe("logger")
    );
    for t in manager.ps("logger") {
        assert_eq!(
            s(&t, "node_id"),
            wid,
            "a task went to a node without the volume"
        );
    }
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(
            worker.data_dir.join("volumes/readings/_data/runs")
        )
        .is_ok_and(|r| r.lines().count() == 2)),
        "the tasks never wrote into the worker's volume"
    );

    // Only the manager may run it: it lacks the volume, and says so.
    let only_manager = format!("node.id=={mid}");
    manager.cli_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "stuck",
        "--constraint",
        &only_manager,
        "--mount",
        "type=volume,source=readings,target=/data",
        "busybox",
        "sleep",
        "60",
    ]);
    let mut message = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            message = manager
                .ps("stuck")
                .first()
                .map(|t| s(t, "message").to_string())
                .unwrap_or_default();
            message.contains("1 node does not have volume readings")
        }),
        "{message}\n{}",
        manager.describe("stuck")
    );
    // A worker's volume in use cannot be removed from a manager either.
    let out = manager.cli(&["volume", "rm", "--node", &wid, "readings"]);
    assert!(stderr(&out).contains("is in use"), "{}", stderr(&out));
}
