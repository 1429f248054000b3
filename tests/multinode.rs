//! Several nodes on loopback: each daemon has its own port, data dir and
//! containerd namespace, sharing the machine's containerd. Checks joining
//! by address, refusal of a bad or rotated token, spreading, and a node
//! that dies: it is marked down and its tasks move.
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::time::{Duration, Instant};

use common::harness::*;

fn join(worker: &Daemon, manager: &Daemon, token: &str) -> std::process::Output {
    let addr = format!("127.0.0.1:{}", manager.port);
    worker.cli(&["join", "--token", token, &addr])
}

/// A manager and a joined worker, both with the busybox image.
fn two_nodes() -> (Daemon, Daemon) {
    let manager = Daemon::cluster();
    let worker = Daemon::start();
    worker.load_image("busybox");
    let out = join(&worker, &manager, &manager.join_token());
    assert!(out.status.success(), "join failed: {}", stderr(&out));
    assert!(stdout(&out).contains("joined cluster"), "{}", stdout(&out));
    let waddr = format!("127.0.0.1:{}", worker.port);
    assert!(
        wait_until(WAIT, || manager.node_status(&waddr) == "ready"),
        "the worker never became ready: {:?}",
        manager.nodes()
    );
    (manager, worker)
}

#[test]
fn a_worker_joins_by_address_and_tasks_spread_over_both_nodes() {
    let (manager, worker) = two_nodes();
    let ns = manager.nodes();
    assert_eq!(ns.len(), 2, "{ns:?}");
    let roles: Vec<&str> = ns.iter().map(|n| s(n, "role")).collect();
    assert!(
        roles.contains(&"manager") && roles.contains(&"worker"),
        "{roles:?}"
    );
    // Both nodes run on this machine: same hostname. The table tells them
    // apart by their whole ids, one row each (issue 11: it cut them).
    let table = manager.cli_ok(&["node", "ls"]);
    for n in &ns {
        assert_eq!(s(n, "hostname"), hostname(), "{n}");
        let rows: Vec<&str> = table.lines().filter(|l| l.contains(s(n, "id"))).collect();
        assert_eq!(rows.len(), 1, "one row shows node {}:\n{table}", s(n, "id"));
    }

    manager.sleeper("web", &["--replicas", "4"]);
    assert!(
        wait_until(WAIT, || {
            manager.ctr_running().len() == 2 && worker.ctr_running().len() == 2
        }),
        "expected 2 containers on each node; manager runs {:?}, worker runs {:?}\n{}",
        manager.ctr_running(),
        worker.ctr_running(),
        manager.describe("web")
    );
    // What shoal reports running is what containerd runs, on both nodes.
    let both = || {
        let mut actual = manager.ctr_running();
        actual.extend(worker.ctr_running());
        actual
    };
    assert!(
        wait_until(WAIT, || manager.running("web") == both()),
        "shoal reports {:?}, containerd runs {:?}",
        manager.running("web"),
        both()
    );
}

#[test]
fn a_wrong_or_rotated_token_is_refused_and_nothing_is_written() {
    let manager = Daemon::cluster();
    let worker = Daemon::start();
    let good = manager.join_token();

    // Same CA digest, another secret.
    let (head, _) = good.rsplit_once('-').unwrap();
    let wrong = format!("{head}-{}", "0".repeat(25));
    let out = join(&worker, &manager, &wrong);
    assert!(!out.status.success());
    let err = one_line_error(&out);
    assert!(err.contains("refused"), "{err}");

    // A rotated-away token.
    manager.cli_ok(&["join-token", "worker", "--rotate"]);
    let out = join(&worker, &manager, &good);
    assert!(!out.status.success());
    assert!(
        one_line_error(&out).contains("refused"),
        "{}",
        one_line_error(&out)
    );

    // Garbage.
    let out = join(&worker, &manager, "SHOAL-1-nonsense");
    assert!(!out.status.success());
    assert!(
        one_line_error(&out).contains("malformed join token"),
        "{}",
        one_line_error(&out)
    );

    // Nothing was written on either side.
    assert_eq!(manager.nodes().len(), 1);
    assert!(!worker.data_dir.join("identity.json").exists());
    assert!(!worker.data_dir.join("tls").join("node.pem").exists());

    // And the fresh token still works.
    let out = join(&worker, &manager, &manager.join_token());
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_dead_node_is_marked_down_and_its_tasks_move() {
    let (manager, mut worker) = two_nodes();
    manager.sleeper("web", &["--replicas", "2"]);
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 1
            && worker.ctr_running().len() == 1),
        "expected one container per node\n{}",
        manager.describe("web")
    );

    // The worker's daemon dies; its container keeps running, but the
    // manager can no longer reach it, so the work moves.
    worker.kill9();
    let died = Instant::now();
    let waddr = format!("127.0.0.1:{}", worker.port);
    assert!(
        wait_until(WAIT, || manager.node_status(&waddr) == "down"),
        "the dead node was never marked down: {:?}",
        manager.nodes()
    );
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 2),
        "the lost task was not replaced on the manager\n{}",
        manager.describe("web")
    );
    // Loose bound: the goal is 5 s; benchmarks measure it.
    assert!(
        died.elapsed() < Duration::from_secs(30),
        "took {:?}",
        died.elapsed()
    );

    // It comes back: ready again, and its stale task is stopped.
    worker.start_again();
    assert!(
        wait_until(WAIT, || manager.node_status(&waddr) == "ready"),
        "the node did not come back: {:?}",
        manager.nodes()
    );
    assert!(
        wait_until(WAIT, || worker.ctr_running().is_empty()),
        "the returning node kept running a task that was replaced: {:?}",
        worker.ctr_running()
    );
}

#[test]
fn draining_a_node_moves_its_tasks_away() {
    let (manager, worker) = two_nodes();
    manager.sleeper("web", &["--replicas", "2", "--stop-grace-period", "1s"]);
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 1
            && worker.ctr_running().len() == 1),
        "expected one container per node\n{}",
        manager.describe("web")
    );
    let wid = manager.node_id(&format!("127.0.0.1:{}", worker.port));
    manager.cli_ok(&["node", "update", "--availability", "drain", &wid]);
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 2
            && worker.ctr_running().is_empty()),
        "drain did not move the task: manager runs {:?}, worker runs {:?}\n{}",
        manager.ctr_running(),
        worker.ctr_running(),
        manager.describe("web")
    );
    let n = manager.cli_json(&["node", "inspect", &wid]);
    assert_eq!(s(&n, "availability"), "drain");
}

#[test]
fn a_node_that_comes_back_gets_its_share_when_the_service_is_rebalanced() {
    let (manager, worker) = two_nodes();
    manager.sleeper("web", &["--replicas", "4", "--stop-grace-period", "1s"]);
    let split = |m: usize, w: usize| {
        wait_until(WAIT, || {
            manager.ctr_running().len() == m && worker.ctr_running().len() == w
        })
    };
    assert!(
        split(2, 2),
        "expected 2 tasks per node\n{}",
        manager.describe("web")
    );
    let wid = manager.node_id(&format!("127.0.0.1:{}", worker.port));
    manager.cli_ok(&["node", "update", "--availability", "drain", &wid]);
    assert!(
        split(4, 0),
        "drain did not move the tasks\n{}",
        manager.describe("web")
    );
    // Back in service, the node stays empty: running tasks are not moved
    // on their own (Swarm's rule).
    manager.cli_ok(&["node", "update", "--availability", "active", &wid]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(worker.ctr_running().len(), 0, "{}", manager.describe("web"));

    // Asked, two move back, and the CLI waits for it.
    let out = manager.cli_ok(&["service", "rebalance", "--detach=false", "web"]);
    assert!(out.contains("web: 2 tasks move"), "{out}");
    assert!(out.trim_end().ends_with("web: update completed"), "{out}");
    assert!(
        split(2, 2),
        "rebalance did not spread the tasks\n{}",
        manager.describe("web")
    );
    let out = manager.cli_ok(&["service", "rebalance", "web"]);
    assert!(
        out.contains("balanced already: 4 tasks over 2 nodes"),
        "{out}"
    );
    let out = manager.cli(&["service", "rebalance", "nope"]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn a_removed_node_is_refused_and_its_session_closed() {
    let (manager, worker) = two_nodes();
    let waddr = format!("127.0.0.1:{}", worker.port);
    let wid = manager.node_id(&waddr);
    // A ready node is not removed without --force.
    let out = manager.cli(&["node", "rm", &wid]);
    assert!(!out.status.success());
    assert!(
        one_line_error(&out).contains("--force"),
        "{}",
        one_line_error(&out)
    );
    manager.cli_ok(&["node", "rm", "--force", &wid]);
    assert_eq!(manager.nodes().len(), 1);
    // The worker's session is closed and it cannot open a new one.
    assert!(
        wait_until(WAIT, || {
            std::fs::read_to_string(&worker.log)
                .unwrap_or_default()
                .contains("not part of this cluster")
        }),
        "the removed worker was not refused:\n{}",
        worker.log_tail()
    );
    assert_eq!(
        manager.nodes().len(),
        1,
        "a removed node must not come back"
    );
}

#[test]
fn service_logs_gather_every_node_and_name_the_unreachable_ones() {
    let (manager, mut worker) = two_nodes();
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "talk",
        "--replicas",
        "2",
        "busybox",
        "sh",
        "-c",
        "echo hello from $(hostname); sleep 3600",
    ]);
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 1
            && worker.ctr_running().len() == 1),
        "expected one container per node\n{}",
        manager.describe("talk")
    );
    assert!(
        wait_until(WAIT, || manager.running("talk").len() == 2),
        "{}",
        manager.describe("talk")
    );
    let ids: Vec<String> = manager.running("talk").into_iter().collect();
    let all_lines = || {
        let out = manager.cli(&["service", "logs", "talk"]);
        stdout(&out)
    };
    assert!(
        wait_until(WAIT, || {
            let text = all_lines();
            ids.iter()
                .all(|id| text.contains(&format!("hello from {}", &id[..12])))
        }),
        "logs of both nodes expected:\n{}",
        all_lines()
    );

    // With the worker's daemon gone, logs still print what they can, name
    // the node they could not reach, and return.
    worker.kill9();
    let started = Instant::now();
    let out = manager.cli(&["service", "logs", "talk"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "logs hung: {:?}",
        started.elapsed()
    );
    let text = stdout(&out);
    assert!(
        ids.iter()
            .any(|id| text.contains(&format!("hello from {}", &id[..12]))),
        "{text}"
    );
    assert!(
        stderr(&out).contains("cannot read the logs"),
        "{}",
        stderr(&out)
    );
    // …and a script learns that lines are missing (issue 11: it exited 0).
    assert_eq!(
        out.status.code(),
        Some(1),
        "service logs with a node unreachable must exit 1: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("the logs of 1 task(s) could not be read"),
        "{}",
        stderr(&out)
    );
}

/// Slow (about 100 s): certificates that last one minute are renewed at
/// 50–80% of their life, so each node renews at least twice.
#[test]
fn nodes_keep_working_across_certificate_renewals() {
    let manager = Daemon::start();
    manager.cli_ok(&["init", "--cert-expiry", "1m"]);
    manager.load_image("busybox");
    let worker = Daemon::start();
    worker.load_image("busybox");
    let out = join(&worker, &manager, &manager.join_token());
    assert!(out.status.success(), "join failed: {}", stderr(&out));
    let pem = |d: &Daemon| std::fs::read_to_string(d.data_dir.join("tls/node.pem")).unwrap();
    let (m0, w0) = (pem(&manager), pem(&worker));
    let waddr = format!("127.0.0.1:{}", worker.port);

    let deadline = Instant::now() + Duration::from_secs(100);
    let (mut m_renewals, mut w_renewals) = (0, 0);
    let (mut m_last, mut w_last) = (m0.clone(), w0.clone());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        let (m, w) = (pem(&manager), pem(&worker));
        if m != m_last {
            m_renewals += 1;
            m_last = m;
        }
        if w != w_last {
            w_renewals += 1;
            w_last = w;
        }
        assert_eq!(
            manager.node_status(&waddr),
            "ready",
            "the worker dropped out"
        );
    }
    assert!(m_renewals >= 2, "the manager renewed {m_renewals} times");
    assert!(
        w_renewals >= 2,
        "the worker renewed {w_renewals} times:\n{}",
        worker.log_tail()
    );

    // New connections with the renewed certificates work: new work lands
    // on the worker.
    manager.sleeper("late", &["--replicas", "2"]);
    assert!(
        wait_until(WAIT, || worker.ctr_running().len() == 1
            && manager.ctr_running().len() == 1),
        "expected one task per node after renewals\n{}",
        manager.describe("late")
    );
}

#[test]
fn a_worker_leaves_cleanly_and_can_join_again() {
    let (manager, worker) = two_nodes();
    manager.sleeper("web", &["--replicas", "2"]);
    assert!(
        wait_until(WAIT, || worker.ctr_running().len() == 1),
        "expected a task on the worker\n{}",
        manager.describe("web")
    );
    // The only manager cannot leave.
    let out = manager.cli(&["leave"]);
    assert!(!out.status.success());
    assert!(
        one_line_error(&out).contains("cannot leave"),
        "{}",
        one_line_error(&out)
    );

    // Its bridge, named from its subnet (shl + the network in hex).
    let subnet = std::fs::read_to_string(worker.data_dir.join("bridge-subnet"))
        .expect("the worker saved its bridge subnet");
    let net: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
    let bridge = format!("shl{:08x}", u32::from(net));
    let table = format!("shoal_{:08x}", u32::from(net));
    assert!(std::path::Path::new("/sys/class/net")
        .join(&bridge)
        .exists());
    let out = worker.cli(&["leave", "--force"]);
    assert!(out.status.success(), "leave failed: {}", stderr(&out));
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists(),
        "bridge {bridge} left behind"
    );
    let nft = std::process::Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .expect("run nft");
    assert!(!nft.status.success(), "table {table} left behind");
    assert!(!worker.data_dir.join("bridge-subnet").exists());
    assert!(!worker.data_dir.join("overlay.key").exists());
    assert!(
        worker.ctr_containers().is_empty(),
        "containers left behind: {:?}",
        worker.ctr_containers()
    );
    assert!(!worker.data_dir.join("identity.json").exists());
    assert!(!worker.data_dir.join("tls").exists());
    let waddr = format!("127.0.0.1:{}", worker.port);
    assert!(
        wait_until(WAIT, || manager.node_status(&waddr) == "down"),
        "the manager did not see the worker go: {:?}",
        manager.nodes()
    );
    // Its task came back on the manager.
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 2),
        "{}",
        manager.describe("web")
    );
    // And it can join again.
    let out = join(&worker, &manager, &manager.join_token());
    assert!(out.status.success(), "rejoin failed: {}", stderr(&out));
}

#[test]
fn a_global_service_runs_on_every_node_including_ones_that_join_later() {
    let manager = Daemon::cluster();
    manager.sleeper("agent", &["--mode", "global"]);
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 1),
        "{}",
        manager.describe("agent")
    );
    let worker = Daemon::start();
    worker.load_image("busybox");
    let out = join(&worker, &manager, &manager.join_token());
    assert!(out.status.success(), "join failed: {}", stderr(&out));
    assert!(
        wait_until(WAIT, || worker.ctr_running().len() == 1
            && manager.ctr_running().len() == 1),
        "the node that joined later got no task of the global service\n{}",
        manager.describe("agent")
    );
    let ls = manager.cli_json(&["service", "ls"]);
    let row = &ls.as_array().unwrap()[0];
    assert_eq!(s(row, "mode"), "global");
    assert_eq!(row["replicas"], 2, "{row}");
}
