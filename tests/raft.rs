//! Several managers on loopback, sharing the replicated store (Raft): each
//! daemon has its own port, data dir and containerd namespace. Checks that
//! managers join with the manager token, that any manager serves the CLI
//! with current reads, that the death of the leader elects another that
//! takes writes, that a minority refuses writes and keeps its tasks, and
//! that a manager far behind catches up from a snapshot.
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::time::{Duration, Instant};

use common::harness::*;
use common::managers::*;

fn create(d: &Daemon, name: &str, replicas: &str) -> std::process::Output {
    d.create_sleeper(name, &["--replicas", replicas])
}

fn running_everywhere(ms: &[Daemon]) -> usize {
    ms.iter().map(|m| m.ctr_running().len()).sum()
}

#[test]
fn three_managers_share_one_store_and_any_of_them_serves_the_cli() {
    let ms = three_managers();
    let leader = leader_id(&ms[0]);
    for m in &ms {
        assert_eq!(leader_id(m), leader, "managers disagree on the leader");
    }
    // A write on one manager is seen at once on another (linearizable
    // reads), and both followers take writes.
    let followers: Vec<&Daemon> = ms
        .iter()
        .filter(|m| m.cli_json(&["node", "inspect", "self"])["id"] != leader.as_str())
        .collect();
    assert_eq!(followers.len(), 2);
    let out = create(followers[0], "web", "3");
    assert!(out.status.success(), "{}", stderr(&out));
    for m in &ms {
        let names: Vec<String> = m
            .services()
            .iter()
            .map(|s| s["name"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(names, vec!["web".to_string()], "service ls on a manager");
    }
    let out = followers[1].cli(&["service", "scale", "web=6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(WAIT, || running_everywhere(&ms) == 6),
        "expected 6 containers over the managers, got {}\n{}",
        running_everywhere(&ms),
        ms[0].describe("web")
    );
    // Spread: every manager runs tasks too.
    for m in &ms {
        assert_eq!(m.ctr_running().len(), 2, "{}", m.describe("web"));
    }

    // `node rm` of a manager takes it out of the membership: two remain,
    // which still make a quorum.
    let gone = followers[1].cli_json(&["node", "inspect", "self"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = followers[0].cli(&["node", "rm", &gone]);
    assert!(
        !out.status.success(),
        "a ready manager was removed without --force"
    );
    followers[0].cli_ok(&["node", "rm", "--force", &gone]);
    assert!(
        wait_until(WAIT, || manager_statuses(followers[0])
            == ["leader", "reachable"]),
        "{:?}",
        manager_statuses(followers[0])
    );
    let out = create(followers[0], "after-rm", "0");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn killing_the_leader_elects_another_that_takes_writes() {
    let mut ms = three_managers();
    let out = create(&ms[0], "before", "3");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(WAIT, || running_everywhere(&ms) == 3));

    let leader = leader_id(&ms[0]);
    let li = ms
        .iter()
        .position(|m| m.cli_json(&["node", "inspect", "self"])["id"] == leader.as_str())
        .expect("the leader is one of the managers");
    ms[li].kill9();
    let killed = Instant::now();
    let survivor = if li == 0 { 1 } else { 0 };
    // A new leader takes writes. The goal is about 2 s (measured in
    // bench/); this bound is only generous.
    assert!(
        wait_until(Duration::from_secs(20), || create(
            &ms[survivor],
            "after",
            "1"
        )
        .status
        .success()),
        "no write was accepted after the leader died\n{}",
        ms[survivor].log_tail()
    );
    eprintln!("leader killed → write accepted: {:?}", killed.elapsed());
    let new_leader = leader_id(&ms[survivor]);
    assert!(!new_leader.is_empty() && new_leader != leader);
    assert!(
        wait_until(WAIT, || manager_statuses(&ms[survivor])
            == ["leader", "reachable", "unreachable"]),
        "{:?}",
        manager_statuses(&ms[survivor])
    );
    // The orchestrator runs on the new leader: the dead manager's task is
    // replaced, and the new service runs.
    let alive: Vec<&Daemon> = ms
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != li)
        .map(|(_, m)| m)
        .collect();
    assert!(
        wait_until(WAIT, || {
            let ps = alive[0].ps("before");
            ps.iter()
                .filter(|t| s(t, "state") == "running" && s(t, "desired_state") == "running")
                .count()
                == 3
                && alive.iter().any(|m| !m.ctr_running().is_empty())
        }),
        "{}",
        alive[0].describe("before")
    );
}

#[test]
fn a_minority_refuses_writes_clearly_and_keeps_its_tasks() {
    let mut ms = three_managers();
    let out = create(&ms[0], "web", "3");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(WAIT, || running_everywhere(&ms) == 3));
    let before = ms[2].ctr_running();
    assert_eq!(before.len(), 1);

    ms[0].kill9();
    ms[1].kill9();
    let out = create(&ms[2], "nope", "1");
    assert!(!out.status.success(), "a minority accepted a write");
    let err = one_line_error(&out);
    assert!(
        err.contains("no quorum: 1 of 3 managers reachable"),
        "unclear error: {err}"
    );
    // Its container keeps running, untouched.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ms[2].ctr_running(), before);
}

#[test]
fn a_manager_far_behind_catches_up_from_a_snapshot() {
    let mut ms = three_managers();
    ms[0].cli_ok(&["cluster", "update", "--snapshot-interval", "10"]);
    let lagging = 2;
    // Stop one follower (not the leader) while the others write well past
    // a snapshot, so the log it misses is gone.
    let leader = leader_id(&ms[0]);
    let lagging = if ms[lagging].cli_json(&["node", "inspect", "self"])["id"] == leader.as_str() {
        1
    } else {
        lagging
    };
    ms[lagging].stop();
    let writer = (0..3).find(|i| *i != lagging).unwrap();
    for i in 0..30 {
        let name = format!("s{i}");
        let out = ms[writer].create_empty(&name, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // The two that run take a snapshot (checked every second) and purge
    // the log behind it, which the stopped one has not seen.
    assert!(
        wait_until(WAIT, || (0..3)
            .filter(|i| *i != lagging)
            .all(|i| ms[i].data_dir.join("raft-snapshot").exists())),
        "no snapshot was taken\n{}",
        ms[writer].log_tail()
    );
    ms[lagging].start_again();
    assert!(
        wait_until(WAIT, || ms[lagging].services().len() == 30),
        "the restarted manager sees {} services\n{}",
        ms[lagging].services().len(),
        ms[lagging].log_tail()
    );
    let log = std::fs::read_to_string(&ms[lagging].log).unwrap_or_default();
    assert!(
        log.contains("installed a snapshot"),
        "the manager caught up without a snapshot\n{}",
        ms[lagging].log_tail()
    );
}

#[test]
fn a_worker_is_promoted_to_manager_and_demoted_back() {
    let m1 = Daemon::cluster();
    let w = Daemon::start();
    w.load_image("busybox");
    let addr = format!("127.0.0.1:{}", m1.port);
    let out = w.cli(&["join", "--token", &m1.join_token(), &addr]);
    assert!(out.status.success(), "{}", stderr(&out));
    let waddr = format!("127.0.0.1:{}", w.port);
    assert!(wait_until(WAIT, || m1.node_status(&waddr) == "ready"));
    let wid = m1.node_id(&waddr);

    // The last manager cannot be demoted.
    let m1id = m1.cli_json(&["node", "inspect", "self"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = m1.cli(&["node", "demote", &m1id]);
    assert!(!out.status.success());
    assert!(
        one_line_error(&out).contains("last manager"),
        "{}",
        one_line_error(&out)
    );

    let out = m1.cli(&["node", "promote", &wid]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("is now a manager"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("even number"), "{}", stderr(&out));
    // The promoted node serves the CLI, with the same view of the cluster.
    assert!(
        wait_until(WAIT, || w.cli(&["node", "ls"]).status.success()),
        "the promoted node does not serve the CLI\n{}",
        w.log_tail()
    );
    assert!(
        wait_until(WAIT, || manager_statuses(&w) == ["leader", "reachable"]),
        "{:?}",
        manager_statuses(&w)
    );
    let out = create(&w, "from-new-manager", "2");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(WAIT, || m1.ctr_running().len() + w.ctr_running().len() == 2),
        "{}",
        m1.describe("from-new-manager")
    );

    let out = m1.cli(&["node", "demote", &wid]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(WAIT, || {
            let out = w.cli(&["node", "ls"]);
            !out.status.success() && one_line_error(&out).contains("worker")
        }),
        "the demoted node still serves cluster commands\n{}",
        w.log_tail()
    );
    assert!(
        wait_until(WAIT, || manager_statuses(&m1) == ["leader"]),
        "{:?}",
        manager_statuses(&m1)
    );
    // One manager again, and it takes writes alone.
    let out = create(&m1, "after-demote", "0");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(m1.node_status(&waddr), "ready");
}
