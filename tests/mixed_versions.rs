//! Mixed versions, as in a rolling upgrade: nodes of 254a909 (which speak
//! only format 1, on the `shoal.v1` services) keep working in a cluster
//! whose other nodes run this build (docs/formats.md).
//!
//! Needs root, a running containerd, and the 254a909 binary that
//! `bash tests/old-release.sh` builds (`bash tests/run` does both).

mod common;

use std::collections::BTreeSet;

use common::harness::*;
use common::managers::*;
use common::old_release::*;

#[test]
fn a_worker_one_release_behind_runs_tasks_for_a_new_manager() {
    let manager = Daemon::cluster();
    let worker = old_daemon();
    worker.load_image("busybox");
    let addr = format!("127.0.0.1:{}", manager.port);
    worker.cli_ok(&["join", "--token", &manager.join_token(), &addr]);
    let waddr = format!("127.0.0.1:{}", worker.port);
    assert!(
        wait_until(WAIT, || manager.node_status(&waddr) == "ready"),
        "the old worker never became ready: {:?}\n{}",
        manager.nodes(),
        worker.log_tail()
    );

    // Assignments go down to the old worker, and its status comes back.
    // On the host's network: the only one a 254a909 node can give a task.
    manager.cli_ok(&[
        "service",
        "create",
        "--network",
        "host",
        "--name",
        "hello",
        "--replicas",
        "4",
        "busybox",
        "sh",
        "-c",
        "echo hello from $(hostname); exec sleep 3600",
    ]);
    assert!(
        wait_until(WAIT, || {
            worker.ctr_running().len() == 2 && manager.ctr_running().len() == 2
        }),
        "expected 2 containers on each node; the old worker runs {:?}\n{}\n{}",
        worker.ctr_running(),
        manager.describe("hello"),
        worker.log_tail()
    );
    let both = || {
        let mut all = manager.ctr_running();
        all.extend(worker.ctr_running());
        all
    };
    assert!(
        wait_until(WAIT, || manager.running("hello") == both()),
        "the manager reports {:?}, containerd runs {:?}",
        manager.running("hello"),
        both()
    );

    // The manager reads the old worker's logs (the manager calls it).
    let on_worker: BTreeSet<String> = worker.ctr_running();
    assert!(
        wait_until(WAIT, || {
            let out = manager.cli(&["service", "logs", "hello"]);
            out.status.success() && stdout(&out).matches("hello from").count() == 4
        }),
        "service logs must show all 4 tasks, 2 of them on the old worker {on_worker:?}: {}",
        stdout(&manager.cli(&["service", "logs", "hello"]))
    );

    // A container that dies on the old worker is reported and replaced.
    let victim = on_worker.iter().next().unwrap().clone();
    worker.ctr_kill(&victim);
    assert!(
        wait_until(WAIT, || {
            let running = manager.running("hello");
            running.len() == 4 && !running.contains(&victim)
        }),
        "the task whose container died on the old worker was not replaced\n{}",
        manager.describe("hello")
    );
}

#[test]
fn a_manager_one_release_behind_replicates_with_new_managers() {
    let mut first = Daemon::cluster();
    let old = old_daemon();
    join_manager(&old, &first);
    let third = Daemon::start();
    join_manager(&third, &first);
    assert!(
        wait_until(WAIT, || manager_statuses(&first)
            == ["leader", "reachable", "reachable"]),
        "three managers, one of them old: {:?}\n{}",
        first.nodes(),
        old.log_tail()
    );

    // New leader → old follower, and a write forwarded by the old one.
    first.sleeper("one", &[]);
    assert!(
        wait_until(WAIT, || try_service_names(&old)
            .is_some_and(|n| n.contains("one"))),
        "the old manager never saw the service\n{}",
        old.log_tail()
    );
    old.sleeper("two", &[]);
    assert!(
        wait_until(WAIT, || try_service_names(&third)
            .is_some_and(|n| n.contains("two"))),
        "a write on the old manager never reached the others\n{}",
        old.log_tail()
    );

    // Without the first leader, either the old manager or the new one
    // leads, and the two of them still commit writes made on either.
    let status = first.stop();
    assert!(status.success());
    assert!(
        wait_until(WAIT, || !try_leader(&third).unwrap_or_default().is_empty()),
        "no new leader among the old and the new manager\n{}\n{}",
        old.log_tail(),
        third.log_tail()
    );
    // Retried while the new leader settles; a create that went through
    // but was reported failed is found on the retry.
    let made = |d: &Daemon, name: &str| {
        wait_until(WAIT, || {
            let out = d.create_sleeper(name, &[]);
            out.status.success() || stderr(&out).contains("already exists")
        })
    };
    assert!(made(&third, "three"), "{}", third.log_tail());
    assert!(made(&old, "four"), "{}", old.log_tail());
    let all: BTreeSet<String> = ["one", "two", "three", "four"].map(String::from).into();
    for d in [&old, &third] {
        assert!(
            wait_until(WAIT, || try_service_names(d).is_some_and(|n| n == all)),
            "every manager lists the 4 services: {:?}",
            try_service_names(d)
        );
    }
}
