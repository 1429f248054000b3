//! Jobs on one node, on real containerd: a replicated job completes its
//! runs with at most `--max-concurrent` at once, its successes are not run
//! again, and `service update --force` runs it again; a job whose task
//! fails for good makes the waiting CLI exit 1; a global job runs once per
//! node; what a job cannot have is refused. The decisions (slots, restarts,
//! runs) are unit-tested in `src/orchestrator/job.rs`.
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::harness::*;
use serde_json::Value;

/// The service's tasks of the current run (desired `running`) that
/// completed with exit code 0.
fn completed(d: &Daemon, name: &str) -> Vec<Value> {
    d.ps(name)
        .into_iter()
        .filter(|t| s(t, "desired_state") == "running" && s(t, "state") == "complete")
        .filter(|t| t["exit_code"].as_i64().unwrap_or(0) == 0)
        .collect()
}

/// `service create --detach=false --name NAME FLAGS… busybox sh -c SCRIPT`:
/// the CLI waits for the job.
fn job(d: &Daemon, name: &str, flags: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["service", "create", "--detach=false", "--name", name];
    args.extend_from_slice(flags);
    args.extend(["busybox", "sh", "-c", script]);
    d.cli(&args)
}

fn row(d: &Daemon, name: &str) -> Value {
    d.services()
        .into_iter()
        .find(|r| s(r, "name") == name)
        .unwrap_or_else(|| panic!("service {name} is not listed"))
}

/// Waits for the job's current run to have `n` completions, none of them
/// a task of `earlier` (an earlier run, which stays meant to run until
/// the orchestrator sees the new one), noting the most containers of the
/// job that containerd ran at once meanwhile.
fn watch_until_complete(d: &Daemon, name: &str, n: usize, earlier: &BTreeSet<String>) -> usize {
    let mut most = 0;
    let ok = wait_until(Duration::from_secs(120), || {
        let ours: BTreeSet<String> = d
            .ps(name)
            .iter()
            .filter(|t| s(t, "desired_state") == "running")
            .map(container_id)
            .collect();
        most = most.max(ours.intersection(&d.ctr_running()).count());
        let done = completed(d, name);
        done.len() == n && done.iter().all(|t| !earlier.contains(s(t, "id")))
    });
    assert!(
        ok,
        "job {name} never completed {n} runs\n{}",
        d.describe(name)
    );
    most
}

#[test]
fn a_replicated_job_completes_4_runs_with_at_most_2_at_a_time() {
    let d = Daemon::cluster();
    // Each run takes a while, so that runs overlap if they may.
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "migrate",
        "--mode",
        "replicated-job",
        "--replicas",
        "4",
        "--max-concurrent",
        "2",
        "busybox",
        "sh",
        "-c",
        "sleep 2; echo migrated",
    ]);
    let most = watch_until_complete(&d, "migrate", 4, &BTreeSet::new());
    assert!(most <= 2, "{most} runs at once with --max-concurrent 2");
    assert_eq!(
        most, 2,
        "the runs never overlapped: max-concurrent 2 unused"
    );
    let slots: BTreeSet<u64> = completed(&d, "migrate")
        .iter()
        .map(|t| t["slot"].as_u64().unwrap())
        .collect();
    assert_eq!(slots, (1..=4).collect());

    // Done is done: nothing runs again.
    d.settle();
    let tasks = d.ps("migrate");
    assert_eq!(tasks.len(), 4, "a job ran again\n{}", d.describe("migrate"));
    let r = row(&d, "migrate");
    assert_eq!(s(&r, "mode"), "replicated-job");
    assert_eq!(r["completed"], 4, "{r}");
    let table = d.cli_ok(&["service", "ls"]);
    assert!(table.contains("0/2 (4/4 completed)"), "{table}");
    let ps = d.cli_ok(&["service", "ps", "migrate"]);
    assert!(ps.contains("complete"), "{ps}");

    // --force runs it again: 4 new completions, the old run is history.
    let first: BTreeSet<String> = tasks.iter().map(|t| s(t, "id").to_string()).collect();
    d.cli_ok(&["service", "update", "--force", "migrate"]);
    let most = watch_until_complete(&d, "migrate", 4, &first);
    assert!(most <= 2, "{most} runs at once on the second run");
    let again: BTreeSet<String> = completed(&d, "migrate")
        .iter()
        .map(|t| s(t, "id").to_string())
        .collect();
    assert!(
        again.is_disjoint(&first),
        "--force did not run the job again"
    );
    let history = d
        .ps("migrate")
        .into_iter()
        .filter(|t| first.contains(s(t, "id")))
        .filter(|t| s(t, "desired_state") == "shutdown")
        .count();
    assert_eq!(history, 4, "{}", d.describe("migrate"));
}

#[test]
fn a_job_that_fails_for_good_ends_the_waiting_cli_with_exit_1() {
    let d = Daemon::cluster();
    // The CLI waits (no --detach): it ends when the job can no longer
    // complete.
    let out = job(
        &d,
        "broken",
        &["--mode", "replicated-job", "--restart-condition", "none"],
        "exit 3",
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = one_line_error(&out);
    assert!(err.contains("job failed"), "{err}");
    let tasks = d.ps("broken");
    assert_eq!(tasks.len(), 1, "restart condition none restarted");
    assert_eq!(tasks[0]["exit_code"], 3, "{}", tasks[0]);

    // on-failure (a job's default): a failed run is retried, up to
    // --restart-max-attempts, and the waiting CLI ends when none is left.
    let out = job(
        &d,
        "retried",
        &[
            "--mode",
            "replicated-job",
            "--restart-delay",
            "0s",
            "--restart-max-attempts",
            "2",
        ],
        "exit 4",
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        one_line_error(&out).contains("job failed"),
        "{}",
        stderr(&out)
    );
    d.settle();
    let tasks = d.ps("retried");
    assert_eq!(
        tasks.len(),
        3,
        "1 run + 2 retries\n{}",
        d.describe("retried")
    );
    assert!(
        tasks.iter().all(|t| t["exit_code"] == 4),
        "{}",
        d.describe("retried")
    );
}

#[test]
fn a_global_job_runs_once_on_the_node() {
    let d = Daemon::cluster();
    let out = job(&d, "once", &["--mode", "global-job"], "true");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = stdout(&out);
    assert!(out.contains("once: job complete"), "{out}");
    d.settle();
    assert_eq!(d.ps("once").len(), 1, "{}", d.describe("once"));
    assert_eq!(row(&d, "once")["completed"], 1);
}

#[test]
fn what_a_job_cannot_have_is_refused() {
    let d = Daemon::cluster();
    let create = |args: &[&str]| {
        let mut all = vec!["service", "create", "--name", "j"];
        all.extend_from_slice(args);
        all.extend(["busybox", "true"]);
        d.cli(&all)
    };
    for (args, want) in [
        (&["--restart-condition", "any"][..], "cannot be any"),
        (&["--update-parallelism", "2"][..], "do not apply to jobs"),
        (&["--max-concurrent", "0"][..], "at least 1"),
    ] {
        let out = create(&[&["--mode", "replicated-job"][..], args].concat());
        assert!(!out.status.success(), "{args:?} was taken");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let out = create(&["--max-concurrent", "2"]);
    assert!(
        stderr(&out).contains("--mode replicated-job"),
        "{}",
        stderr(&out)
    );
    let out = create(&["--mode", "replicated-job"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.cli(&["service", "rollback", "j"]);
    assert!(
        stderr(&out).contains("does not roll back"),
        "{}",
        stderr(&out)
    );
}
