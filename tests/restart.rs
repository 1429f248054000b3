//! The restart policy, with containers killed behind shoal's back through
//! containerd: replaced under `any` and `on-failure`, not under `none`; a
//! clean exit is not a failure; max attempts is honoured; and the task
//! history keeps at most 5 tasks per slot, the current one included.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::harness::*;
use serde_json::Value;

fn create(d: &Daemon, name: &str, condition: &str, extra: &[&str], cmd: &[&str]) {
    let mut args = vec![
        "service",
        "create",
        "--name",
        name,
        "--restart-condition",
        condition,
        "--restart-delay",
        "1s",
        "--stop-grace-period",
        "2s",
    ];
    args.extend(extra);
    args.push("busybox");
    args.extend(cmd);
    d.cli_ok(&args);
}

fn task<'a>(ps: &'a [Value], id: &str) -> Option<&'a Value> {
    ps.iter().find(|t| s(t, "id") == id)
}

/// Kills the service's one container and checks a new task takes its slot,
/// while the old one stays in the history as failed with exit code 137.
fn killed_task_is_replaced(condition: &str) {
    let d = Daemon::cluster();
    create(&d, "web", condition, &[], &["sleep", "3600"]);
    let first = d.wait_running("web", 1).into_iter().next().unwrap();
    d.ctr_kill(&first);

    let mut now = BTreeSet::new();
    assert!(
        wait_until(WAIT, || {
            now = d.running("web");
            now.len() == 1 && !now.contains(&first)
        }),
        "under --restart-condition {condition}, a killed task must be replaced\n{}",
        d.describe("web")
    );
    let second = now.into_iter().next().unwrap();
    assert!(
        wait_until(WAIT, || d.ctr_running() == BTreeSet::from([second.clone()])),
        "containerd must run the new task only\n{}",
        d.describe("web")
    );

    let ps = d.ps("web");
    let old = task(&ps, &first).expect("the killed task stays in the history");
    let new = task(&ps, &second).unwrap();
    assert_eq!(s(old, "state"), "failed", "{old}");
    assert_eq!(
        old["exit_code"].as_i64(),
        Some(137),
        "killed by SIGKILL: {old}"
    );
    assert_eq!(s(old, "desired_state"), "shutdown", "{old}");
    assert_eq!(old["slot"], new["slot"], "the new task takes the same slot");
    assert_eq!(s(new, "name"), "web.1");
    assert_eq!(d.services()[0]["replicas"].as_u64(), Some(1));
}

#[test]
fn killed_container_is_replaced_under_any() {
    killed_task_is_replaced("any");
}

#[test]
fn killed_container_is_replaced_under_on_failure() {
    killed_task_is_replaced("on-failure");
}

#[test]
fn on_failure_does_not_restart_a_clean_exit() {
    let d = Daemon::cluster();
    create(
        &d,
        "job",
        "on-failure",
        &[],
        &["sh", "-c", "sleep 1; exit 0"],
    );
    assert!(
        wait_until(WAIT, || d
            .ps("job")
            .iter()
            .any(|t| s(t, "state") == "complete")),
        "the task must end complete\n{}",
        d.describe("job")
    );
    // Once the loops have acted on its end, there is still that one task.
    d.settle();
    let ps = d.ps("job");
    assert_eq!(
        ps.len(),
        1,
        "a clean exit is not restarted under on-failure: {ps:?}"
    );
    assert_eq!(ps[0]["exit_code"].as_i64(), Some(0), "{}", ps[0]);
    assert!(d.ctr_running().is_empty());
}

#[test]
fn killed_container_is_not_replaced_under_none() {
    let d = Daemon::cluster();
    create(&d, "web", "none", &[], &["sleep", "3600"]);
    let first = d.wait_running("web", 1).into_iter().next().unwrap();
    d.ctr_kill(&first);
    assert!(
        wait_until(WAIT, || task(&d.ps("web"), &first)
            .is_some_and(|t| s(t, "state") == "failed")),
        "the killed task must be marked failed\n{}",
        d.describe("web")
    );
    // Once the loops have acted on its death: still no replacement.
    d.settle();
    let ps = d.ps("web");
    assert_eq!(ps.len(), 1, "nothing may replace it under none: {ps:?}");
    assert_eq!(ps[0]["exit_code"].as_i64(), Some(137), "{}", ps[0]);
    assert!(d.ctr_running().is_empty(), "{:?}", d.ctr_tasks());
    assert_eq!(d.services()[0]["running"].as_u64(), Some(0));
}

#[test]
fn max_attempts_bounds_the_restarts() {
    let d = Daemon::cluster();
    create(
        &d,
        "flaky",
        "any",
        &["--restart-max-attempts", "2"],
        &["sh", "-c", "exit 3"],
    );
    // The first run and 2 restarts: 3 tasks, all failed with exit code 3.
    let all_failed = |ps: &[Value]| {
        ps.len() == 3
            && ps
                .iter()
                .all(|t| s(t, "state") == "failed" && t["exit_code"].as_i64() == Some(3))
    };
    assert!(
        wait_until(WAIT, || all_failed(&d.ps("flaky"))),
        "expected 3 failed tasks (1 run + 2 restarts)\n{}",
        d.describe("flaky")
    );
    // Once the loops have acted on the last failure: no fourth task.
    d.settle();
    let ps = d.ps("flaky");
    assert!(all_failed(&ps), "no restart after max attempts: {ps:?}");
}

#[test]
fn history_keeps_at_most_five_tasks_per_slot() {
    let d = Daemon::cluster();
    create(&d, "crash", "any", &[], &["sh", "-c", "sleep 1; exit 3"]);
    let mut seen: Vec<String> = Vec::new();
    let mut most = 0;
    let mut worst = Vec::new();
    let ok = wait_until(Duration::from_secs(120), || {
        let ps = d.ps("crash");
        if ps.len() > most {
            most = ps.len();
            worst = ps.clone();
        }
        for t in &ps {
            assert_eq!(t["slot"].as_u64(), Some(1), "one slot only: {t}");
            let id = s(t, "id").to_string();
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
        seen.len() >= 8
    });
    assert!(
        ok,
        "the task must keep being restarted (saw {} tasks)\n{}",
        seen.len(),
        d.describe("crash")
    );
    assert!(
        most <= 5,
        "service ps showed {most} tasks in one slot; at most 5 are kept, the current one \
         included: {worst:#?}"
    );
    let ps = d.ps("crash");
    let ids: BTreeSet<String> = ps.iter().map(|t| s(t, "id").to_string()).collect();
    assert!(
        ps.len() <= 5 && ps.len() >= 4,
        "the history is full: {ps:?}"
    );
    for oldest in &seen[..3] {
        assert!(
            !ids.contains(oldest),
            "oldest task {oldest} must be gone: {ps:?}"
        );
    }
    for t in ps.iter().filter(|t| s(t, "state") == "failed") {
        assert_eq!(t["exit_code"].as_i64(), Some(3), "{t}");
    }
    // A task that left the history takes its container with it.
    assert!(
        wait_until(WAIT, || {
            let ids: BTreeSet<String> = d
                .ps("crash")
                .iter()
                .map(|t| s(t, "id").to_string())
                .collect();
            d.ctr_containers().is_subset(&ids)
        }),
        "containers of removed tasks must be removed: containers {:?}",
        d.ctr_containers()
    );
}
