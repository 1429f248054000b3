//! Daemon restarts: SIGTERM stops the daemon cleanly and leaves containers
//! running; the restarted daemon re-adopts them (same container ids, same
//! processes, no duplicate, none lost), keeps managing them, and replaces a
//! container that died while it was down.

mod common;

use std::collections::BTreeSet;

use common::harness::*;

#[test]
fn restart_adopts_running_containers() {
    let mut d = Daemon::cluster();
    d.sleeper(
        "web",
        &[
            "--replicas",
            "3",
            "--restart-delay",
            "1s",
            "--stop-grace-period",
            "2s",
        ],
    );
    let ids = d.wait_running("web", 3);
    let pids = d.running_pids();
    assert_eq!(pids.keys().cloned().collect::<BTreeSet<_>>(), ids);
    let node = s(&d.cli_json(&["node", "ls"])[0], "id").to_string();
    let service = s(&d.services()[0], "id").to_string();

    let status = d.stop();
    assert!(
        status.success(),
        "SIGTERM must stop the daemon cleanly: {status}"
    );
    assert_eq!(
        d.running_pids(),
        pids,
        "the containers must keep running while the daemon is stopped"
    );
    // The CLI says the daemon is gone.
    let err = one_line_error(&d.cli(&["service", "ls"]));
    assert!(
        err.contains(d.socket.to_str().unwrap()),
        "the error must name the socket: {err}"
    );

    d.start_again();
    assert!(
        wait_until(WAIT, || d.running("web") == ids),
        "after a restart the same 3 tasks must be running\n{}",
        d.describe("web")
    );
    // Once the loops have acted on the restart, nothing was started or lost.
    d.settle();
    let ps = d.ps("web");
    assert_eq!(ps.len(), 3, "no new task may appear: {ps:?}");
    assert_eq!(d.running("web"), ids);
    assert_eq!(
        d.running_pids(),
        pids,
        "the same processes, not restarted ones"
    );
    assert_eq!(d.ctr_containers(), ids, "no duplicate container");
    assert_eq!(
        s(&d.cli_json(&["node", "ls"])[0], "id"),
        node,
        "same node id"
    );
    assert_eq!(s(&d.services()[0], "id"), service, "same service id");
    assert_eq!(d.services()[0]["running"].as_u64(), Some(3));

    // The adopted containers are still managed: a killed one is replaced…
    let victim = ids.iter().next().unwrap().clone();
    d.ctr_kill(&victim);
    let mut now = BTreeSet::new();
    assert!(
        wait_until(WAIT, || {
            now = d.running("web");
            now.len() == 3 && !now.contains(&victim)
        }),
        "an adopted container that dies must be replaced\n{}",
        d.describe("web")
    );
    assert_eq!(
        now.difference(&ids).count(),
        1,
        "only the dead one is replaced"
    );
    // …and scaling works on them.
    d.cli_ok(&["service", "scale", "web=4"]);
    let four = d.wait_running("web", 4);
    assert!(now.is_subset(&four));

    // A second restart, right away, changes nothing either.
    d.restart();
    d.settle();
    assert_eq!(d.running("web"), four, "\n{}", d.describe("web"));
    assert_eq!(d.ctr_running(), four);
}

#[test]
fn container_that_died_while_the_daemon_was_down_is_replaced() {
    let mut d = Daemon::cluster();
    d.sleeper("web", &["--replicas", "2", "--restart-delay", "1s"]);
    let ids = d.wait_running("web", 2);
    let mut it = ids.iter();
    let (victim, survivor) = (it.next().unwrap().clone(), it.next().unwrap().clone());

    assert!(d.stop().success());
    d.ctr_kill(&victim);
    assert!(
        wait_until(WAIT, || !d.ctr_running().contains(&victim)),
        "ctr could not kill {victim}"
    );
    d.start_again();

    let mut now = BTreeSet::new();
    assert!(
        wait_until(WAIT, || {
            now = d.running("web");
            now.len() == 2 && now.contains(&survivor) && !now.contains(&victim)
        }),
        "the survivor must be adopted and the dead one replaced\n{}",
        d.describe("web")
    );
    assert!(wait_until(WAIT, || d.ctr_running() == now));
    let ps = d.ps("web");
    let dead = ps
        .iter()
        .find(|t| s(t, "id") == victim)
        .expect("the dead task stays in the history");
    assert_eq!(s(dead, "state"), "failed", "{dead}");
    assert_eq!(dead["exit_code"].as_i64(), Some(137), "{dead}");
    assert_eq!(
        ps.len(),
        3,
        "survivor, dead one and its replacement: {ps:?}"
    );
}
