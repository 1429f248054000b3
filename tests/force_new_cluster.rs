//! Recovery from the permanent loss of a quorum: `shoal init
//! --force-new-cluster` on the surviving manager makes it the only manager,
//! keeping the nodes, services and tasks, and the worker reconnects to it
//! without joining again.
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use common::harness::*;
use common::managers::*;

#[test]
fn a_survivor_forces_a_new_cluster_and_keeps_its_services_and_workers() {
    let mut managers = three_managers();
    let m1 = managers.remove(0);
    let worker = Daemon::start();
    worker.load_image("busybox");
    let out = worker.cli(&[
        "join",
        "--token",
        &m1.join_token(),
        &format!("127.0.0.1:{}", m1.port),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let worker_id = m1.node_id(&format!("127.0.0.1:{}", worker.port));
    // On the worker, which survives: its tasks must run on untouched.
    m1.sleeper(
        "kept",
        &["--replicas", "2", "--constraint", "node.role==worker"],
    );
    assert!(
        wait_until(WAIT, || m1.running("kept").len() == 2
            && worker.ctr_running() == m1.running("kept")),
        "kept does not run on the worker: {}",
        m1.describe("kept")
    );
    let kept_before = m1.running("kept");

    // Two of three managers are gone for good.
    for mut m in managers {
        m.kill9();
    }
    let out = m1.create_sleeper("refused", &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no quorum"), "{}", stderr(&out));

    let out = m1.cli(&["init", "--force-new-cluster"]);
    assert!(
        out.status.success(),
        "force-new-cluster failed: {}\n{}",
        stderr(&out),
        m1.log_tail()
    );
    assert!(stdout(&out).contains("only manager"), "{}", stdout(&out));

    // The survivor leads alone, with everything it had.
    assert!(
        wait_until(WAIT, || try_leader(&m1) == Some(self_id(&m1))),
        "the survivor does not lead: {}",
        m1.log_tail()
    );
    assert!(service_names(&m1).contains("kept"));
    assert_eq!(m1.running("kept"), kept_before, "the kept tasks changed");
    let ids: Vec<String> = m1.nodes().iter().map(|n| s(n, "id").to_string()).collect();
    assert_eq!(ids.len(), 4, "nodes were lost: {ids:?}");

    // It takes writes, and the worker, never re-joined, runs new tasks.
    assert!(
        wait_until(WAIT, || m1
            .node_status(&format!("127.0.0.1:{}", worker.port))
            == "ready"),
        "the worker did not come back"
    );
    m1.sleeper("after", &["--constraint", "node.role==worker"]);
    assert!(
        wait_until(WAIT, || m1.running("after").len() == 1
            && worker.ctr_running().is_superset(&m1.running("after"))),
        "the new task never ran on the worker: {}\n{}",
        m1.describe("after"),
        worker.log_tail()
    );
    assert_eq!(s(&m1.ps("after")[0], "node_id"), worker_id);
    assert!(worker.ctr_running().is_superset(&kept_before));

    // The lost managers can be removed; forcing again is refused now that
    // the cluster has its quorum (of one).
    for n in m1.nodes() {
        if s(&n, "manager_status") == "unreachable" {
            m1.cli_ok(&["node", "rm", "--force", s(&n, "id")]);
        }
    }
    assert_eq!(manager_statuses(&m1), ["leader"]);
    let out = m1.cli(&["init", "--force-new-cluster"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has a quorum"), "{}", stderr(&out));

    // And it all survives a restart.
    let mut m1 = m1;
    m1.restart();
    assert!(wait_until(WAIT, || try_leader(&m1) == Some(self_id(&m1))));
    assert!(service_names(&m1).contains("after"));
}
