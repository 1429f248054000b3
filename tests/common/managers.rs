//! Several managers sharing the replicated store (Raft), as the tests see
//! them through the CLI: joining one with the manager token, who leads and
//! who is reachable (`node ls`), which services a manager lists. Used by
//! the loopback tests (`raft.rs`, `raft_crash.rs`) and, through `Deref`,
//! by the LAN tests (`netns.rs`).

use std::collections::BTreeSet;

use super::harness::*;

/// `new` joins the cluster at `addr` as a manager, with `token` (the
/// manager token). Asserts it said so; returns the CLI's output.
pub fn join_manager_at(new: &Daemon, token: &str, addr: &str) -> std::process::Output {
    let out = new.cli(&["join", "--token", token, addr]);
    assert!(
        out.status.success(),
        "manager join failed: {}\n{}",
        stderr(&out),
        new.log_tail()
    );
    assert!(stdout(&out).contains("as manager"), "{}", stdout(&out));
    out
}

/// `new` joins the cluster of `via` (on loopback) with the manager token.
pub fn join_manager(new: &Daemon, via: &Daemon) -> std::process::Output {
    let addr = format!("127.0.0.1:{}", via.port);
    join_manager_at(new, &via.manager_token(), &addr)
}

/// The manager statuses in `node ls` on `d`, sorted; none while `d` does
/// not answer (a manager that has just joined may not have a quorum yet).
pub fn manager_statuses(d: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = try_nodes(d)
        .unwrap_or_default()
        .iter()
        .filter(|n| s(n, "role") == "manager")
        .map(|n| s(n, "manager_status").to_string())
        .collect();
    v.sort();
    v
}

/// The node id of the leader, as `node ls` on `d` shows it; empty if none.
pub fn leader_id(d: &Daemon) -> String {
    d.nodes()
        .iter()
        .find(|n| s(n, "manager_status") == "leader")
        .map(|n| s(n, "id").to_string())
        .unwrap_or_default()
}

/// `node ls --format json` on `d`, or None if `d` does not answer it
/// (down, or cut off from a quorum).
pub fn try_nodes(d: &Daemon) -> Option<Vec<serde_json::Value>> {
    let out = d.cli(&["node", "ls", "--format", "json"]);
    if !out.status.success() {
        return None;
    }
    match serde_json::from_slice(&out.stdout).ok()? {
        serde_json::Value::Array(nodes) => Some(nodes),
        _ => None,
    }
}

/// The leader's node id as `d` sees it, if `d` answers and knows one.
pub fn try_leader(d: &Daemon) -> Option<String> {
    try_nodes(d)?
        .iter()
        .find(|n| s(n, "manager_status") == "leader")
        .map(|n| s(n, "id").to_string())
}

/// The node id of `d` itself (`node inspect self`).
pub fn self_id(d: &Daemon) -> String {
    s(&d.cli_json(&["node", "inspect", "self"]), "id").to_string()
}

/// The names of the services `d` lists (`service ls`).
pub fn service_names(d: &Daemon) -> BTreeSet<String> {
    d.services()
        .iter()
        .map(|v| s(v, "name").to_string())
        .collect()
}

/// Like [`service_names`], or None if `d` does not answer.
pub fn try_service_names(d: &Daemon) -> Option<BTreeSet<String>> {
    let out = d.cli(&["service", "ls", "--format", "json"]);
    if !out.status.success() {
        return None;
    }
    let services: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        services
            .as_array()?
            .iter()
            .map(|v| s(v, "name").to_string())
            .collect(),
    )
}

/// Three managers on loopback, each with the busybox image, all reachable.
pub fn three_managers() -> Vec<Daemon> {
    let m1 = Daemon::cluster();
    let m2 = Daemon::start();
    m2.load_image("busybox");
    let out = join_manager(&m2, &m1);
    // Two managers: a majority is still two, so say so.
    assert!(
        stderr(&out).contains("even number"),
        "no warning for two managers: {}",
        stderr(&out)
    );
    let m3 = Daemon::start();
    m3.load_image("busybox");
    let out = join_manager(&m3, &m2);
    assert!(!stderr(&out).contains("even number"), "{}", stderr(&out));
    let want = ["leader", "reachable", "reachable"];
    for m in [&m1, &m2, &m3] {
        assert!(
            wait_until(WAIT, || manager_statuses(m) == want),
            "expected one leader and two reachable managers, got {:?}\n{}",
            manager_statuses(m),
            m.log_tail()
        );
    }
    vec![m1, m2, m3]
}
