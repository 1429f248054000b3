//! Crash safety of the replicated store: three managers on loopback, a
//! client that writes all the time (a new service per write, against each
//! manager in turn), and managers killed with SIGKILL one at a time, then
//! started again, round after round; at the end all three at once. An
//! acknowledged write must survive all of it: afterwards every manager
//! lists every service whose creation was acknowledged, and all managers
//! list exactly the same services. A write that failed may or may not have
//! happened; only names the client tried may show up.
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::harness::*;
use common::managers::*;

/// Managers killed one at a time (half of them the leader).
const KILLS: usize = 8;
/// How long a manager stays dead (a leader: after another is elected),
/// and how long all three run between kills, so that writes land in each
/// situation.
const DEAD_FOR: Duration = Duration::from_millis(1500);
const UP_FOR: Duration = Duration::from_millis(1000);

/// What the writer tried: names whose creation was acknowledged (exit 0)
/// and names whose creation failed.
#[derive(Default)]
struct Writes {
    acked: BTreeSet<String>,
    failed: BTreeSet<String>,
    /// Failures that said "already exists": every name is tried once, so
    /// each of these called a write that succeeded a failure (a follower
    /// sent the create again through a new leader).
    exists: Vec<String>,
}

/// Creates services `w0`, `w1`, … (no replicas: only the store is
/// exercised) until `stop`, each through the next manager's socket, a dead
/// one included. Only the CLI is used, so the managers can be killed and
/// restarted under it.
fn writer(sockets: Vec<PathBuf>, stop: Arc<AtomicBool>) -> Writes {
    let mut w = Writes::default();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let name = format!("w{i}");
        let socket = &sockets[i % sockets.len()];
        i += 1;
        let out = try_run(
            Command::new(SHOAL)
                .env_remove("SHOAL_SOCKET")
                .arg("--socket")
                .arg(socket)
                .args(["service", "create", "--name", &name])
                .args(["--replicas", "0", "busybox"]),
            Duration::from_secs(60),
        );
        if matches!(&out, Ok(o) if o.status.success()) {
            w.acked.insert(name);
        } else {
            if let Ok(o) = &out {
                let err = stderr(o);
                if err.contains("already exists") {
                    w.exists.push(format!("{name}: {}", err.trim()));
                }
            }
            w.failed.insert(name);
            // A dead manager fails at once: do not spin on it.
            thread::sleep(Duration::from_millis(100));
        }
    }
    w
}

/// Whether `d` serves a current read (`service ls`): it is up and in
/// touch with a leader that has a quorum.
fn serves_reads(d: &Daemon) -> bool {
    d.cli(&["service", "ls"]).status.success()
}

#[test]
fn acknowledged_writes_survive_managers_killed_one_at_a_time() {
    let t0 = Instant::now();
    let mut ms = three_managers();
    // Snapshots often, so that restarts also load one and followers are
    // sent some.
    ms[0].cli_ok(&["cluster", "update", "--snapshot-interval", "40"]);
    let ids: Vec<String> = ms.iter().map(self_id).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let sockets = ms.iter().map(|m| m.socket.clone()).collect();
    let writes = {
        let stop = stop.clone();
        thread::spawn(move || writer(sockets, stop))
    };

    let mut victims = Vec::new();
    for round in 0..KILLS {
        let mut leader = None;
        assert!(
            wait_until(WAIT, || {
                leader = ms.iter().find_map(try_leader);
                leader.is_some()
            }),
            "round {round}: no manager knows a leader\n{}",
            ms[0].log_tail()
        );
        let leader = ids
            .iter()
            .position(|id| Some(id) == leader.as_ref())
            .expect("the leader is one of the managers");
        // The leader on even rounds; on odd ones the follower killed least
        // so far, so that every manager gets its turn.
        let victim = if round % 2 == 0 {
            leader
        } else {
            (0..ms.len())
                .filter(|i| *i != leader)
                .min_by_key(|i| victims.iter().filter(|v| *v == i).count())
                .expect("two followers")
        };
        victims.push(victim);
        ms[victim].kill9();
        if victim == leader {
            // The other two elect a new leader (after the old one's lease
            // runs out), before the old one comes back.
            let killed = Instant::now();
            let old = &ids[victim];
            let survivors: Vec<&Daemon> = (0..ms.len())
                .filter(|i| *i != victim)
                .map(|i| &ms[i])
                .collect();
            assert!(
                wait_until(WAIT, || survivors
                    .iter()
                    .any(|m| try_leader(m).is_some_and(|l| l != *old))),
                "round {round}: no new leader after the leader was killed\n{}",
                survivors[0].log_tail()
            );
            eprintln!(
                "round {round}: leader {victim} killed, new leader after {:?}",
                killed.elapsed()
            );
        }
        thread::sleep(DEAD_FOR);
        ms[victim].start_again();
        // Back in the cluster before the next kill, so a quorum remains.
        assert!(
            wait_until(WAIT, || serves_reads(&ms[victim])),
            "round {round}: manager {victim} does not serve reads after its restart\n{}",
            ms[victim].log_tail()
        );
        thread::sleep(UP_FOR);
    }
    // A power cut: all three at once, writes still coming.
    for m in ms.iter_mut() {
        m.kill9();
    }
    for m in ms.iter_mut() {
        m.start_again();
    }
    for m in &ms {
        assert!(
            wait_until(WAIT, || serves_reads(m)),
            "a manager does not serve reads after all three restarted\n{}",
            m.log_tail()
        );
    }
    thread::sleep(UP_FOR);
    stop.store(true, Ordering::SeqCst);
    let w = writes.join().expect("the writer thread panicked");
    eprintln!(
        "killed managers {victims:?}, then all three; {} writes acknowledged, {} failed",
        w.acked.len(),
        w.failed.len()
    );
    // Enough writes went through for the test to mean something.
    assert!(
        w.acked.len() >= 30,
        "only {} writes were acknowledged ({} failed)",
        w.acked.len(),
        w.failed.len()
    );

    let lists: Vec<BTreeSet<String>> = ms.iter().map(service_names).collect();
    assert!(
        w.exists.is_empty(),
        "a create of a new name was answered \"already exists\": {:?}",
        w.exists
    );
    let tried: BTreeSet<String> = w.acked.union(&w.failed).cloned().collect();
    for (i, list) in lists.iter().enumerate() {
        let lost: Vec<&String> = w.acked.difference(list).collect();
        assert!(
            lost.is_empty(),
            "manager {i} lost {} acknowledged write(s): {lost:?}\n{}",
            lost.len(),
            ms[i].log_tail()
        );
        let unknown: Vec<&String> = list.difference(&tried).collect();
        assert!(
            unknown.is_empty(),
            "manager {i} lists services nobody created: {unknown:?}"
        );
    }
    for (i, list) in lists.iter().enumerate().skip(1) {
        assert!(
            *list == lists[0],
            "managers 0 and {i} disagree: only on 0: {:?}, only on {i}: {:?}",
            lists[0].difference(list).collect::<Vec<_>>(),
            list.difference(&lists[0]).collect::<Vec<_>>()
        );
    }
    let maybe = lists[0].intersection(&w.failed).count();
    eprintln!(
        "all managers list the same {} services ({maybe} of them from failed writes); took {:?}",
        lists[0].len(),
        t0.elapsed()
    );
}

/// A manager applies each write to its store without an fsync of its own
/// (the Raft log already holds it durably) and makes the store durable
/// before a snapshot lets the log behind it go. A power cut right after
/// acknowledged writes, on a lone manager whose log has been purged behind
/// a snapshot, must lose none of them.
#[test]
fn a_manager_killed_right_after_acknowledged_writes_keeps_them_past_a_snapshot() {
    let mut d = Daemon::cluster();
    d.cli_ok(&["cluster", "update", "--snapshot-interval", "10"]);
    let snapshot = d.data_dir.join("raft-snapshot");
    let mut acked = BTreeSet::new();
    let create = |d: &Daemon, acked: &mut BTreeSet<String>| {
        let name = format!("c{}", acked.len());
        let out = d.create_empty(&name, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        acked.insert(name);
    };
    // Writes until a snapshot (taken at most a second after 10 entries)
    // has purged the log behind it …
    assert!(
        wait_until(WAIT, || {
            create(&d, &mut acked);
            snapshot.exists()
        }),
        "no snapshot was taken\n{}",
        d.log_tail()
    );
    // … then more, the kill coming right after the last acknowledgement.
    for _ in 0..15 {
        create(&d, &mut acked);
    }
    d.kill9();
    d.start_again();
    assert!(
        wait_until(WAIT, || serves_reads(&d)),
        "the manager does not serve reads after the kill\n{}",
        d.log_tail()
    );
    let names = service_names(&d);
    let lost: Vec<&String> = acked.difference(&names).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes were lost: {lost:?}\n{}",
        lost.len(),
        acked.len(),
        d.log_tail()
    );
}
