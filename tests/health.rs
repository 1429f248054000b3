//! Health checks on one node, on real containerd: a task with
//! `--health-cmd` is `starting` until its check passes (run inside the
//! container, through containerd), then `running` and healthy; when the
//! check fails `--health-retries` times in a row, its container is
//! stopped and the task fails as unhealthy, with the check's output, and
//! is replaced; an update whose new tasks never get healthy is rolled
//! back (health gates rollouts); and an image's own HEALTHCHECK is run
//! unless the service says `--no-healthcheck`.
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::time::{Duration, Instant};

use common::harness::*;
use serde_json::Value;

/// Healthy from its third second (`/tmp/ok` appears) to its ninth.
const FLAKY: &str = "trap 'exit 0' TERM; sleep 3; touch /tmp/ok; sleep 6; rm /tmp/ok; \
                     while true; do sleep 1; done";

#[test]
fn a_task_runs_once_healthy_and_is_replaced_when_unhealthy() {
    let d = Daemon::cluster();
    let started = Instant::now();
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--health-cmd",
        "test -f /tmp/ok || { echo no ok file; exit 1; }",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        // Its first checks fail: they do not count for 5 s.
        "--health-start-period",
        "5s",
        "--restart-delay",
        "1s",
        "busybox",
        "sh",
        "-c",
        FLAKY,
    ]);
    // Starting while its check fails; its container runs meanwhile.
    let first = || d.ps("web").into_iter().next().unwrap_or_default();
    let mut seen_starting = false;
    let mut task = Value::Null;
    assert!(
        wait_until(WAIT, || {
            task = first();
            if s(&task, "state") == "starting" && task["health"] == "starting" {
                seen_starting = true;
            }
            s(&task, "state") == "running"
        }),
        "the task never ran\n{}",
        d.describe("web")
    );
    assert!(
        seen_starting,
        "the task never showed as starting before its check passed"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "running after {:?}, before its check could pass",
        started.elapsed()
    );
    assert_eq!(task["health"], "healthy", "{task}");
    let id = container_id(&task);
    assert!(d.ctr_running().contains(&id));

    // From its ninth second the check fails: twice, and it is stopped and
    // failed, then replaced.
    let mut failed = Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            failed = d
                .ps("web")
                .into_iter()
                .find(|t| s(t, "id") == s(&task, "id"))
                .unwrap_or_default();
            s(&failed, "state") == "failed"
        }),
        "the unhealthy task never failed\n{}",
        d.describe("web")
    );
    assert_eq!(failed["health"], "unhealthy", "{failed}");
    let err = s(&failed, "error");
    assert!(
        err.starts_with("unhealthy: 2 checks in a row failed") && err.contains("no ok file"),
        "{failed}"
    );
    assert!(
        wait_until(WAIT, || !d.ctr_running().contains(&id)),
        "the unhealthy task's container still runs"
    );
    // Replaced by a new task, which gets healthy in turn.
    assert!(
        wait_until(WAIT, || d
            .ps("web")
            .iter()
            .any(|t| s(t, "id") != s(&task, "id") && t["health"] == "healthy")),
        "no healthy replacement\n{}",
        d.describe("web")
    );
}

#[test]
fn an_update_whose_tasks_never_get_healthy_rolls_back() {
    let d = Daemon::cluster();
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "api",
        "--replicas",
        "2",
        "--restart-delay",
        "1s",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "2s",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 1; done",
    ]);
    let before = d.wait_running("api", 2);
    d.cli_ok(&[
        "service",
        "update",
        "--health-cmd",
        "exit 3",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "api",
    ]);
    let mut state = String::new();
    assert!(
        wait_until(Duration::from_secs(120), || {
            let inspect = d.cli_json(&["service", "inspect", "api"]);
            state = inspect["update_status"]["state"]
                .as_str()
                .unwrap_or("")
                .to_string();
            state == "rollback_completed"
        }),
        "the update never rolled back (last state {state:?})\n{}",
        d.describe("api")
    );
    let after = d.wait_running("api", 2);
    // One slot never left the old spec; the other is back on it.
    assert_eq!(
        after.intersection(&before).count(),
        1,
        "{}",
        d.describe("api")
    );
    let inspect = d.cli_json(&["service", "inspect", "api"]);
    assert!(inspect["spec"]["healthcheck"].is_null(), "{inspect}");
    // Bad checks are refused with the reason.
    d.update_refused(
        "api",
        &[
            (
                &["--health-interval", "5s"][..],
                "no health check to change",
            ),
            (
                &["--health-cmd", "true", "--health-interval", "10ms"][..],
                "health interval 10ms is out of bounds",
            ),
        ],
    );
}

#[test]
fn an_image_s_own_healthcheck_runs_unless_the_service_says_none() {
    let d = Daemon::cluster();
    let mut o = common::image::Options::new("checked:1", host_arch(), common::image::Format::Oci);
    // HEALTHCHECK --interval=1s --retries=1 --start-period=5s CMD test -f /tmp/ok
    o.healthcheck = Some(serde_json::json!({
        "Test": ["CMD", "test", "-f", "/tmp/ok"],
        "Interval": 1_000_000_000u64,
        "Retries": 1,
        "StartPeriod": 5_000_000_000u64,
    }));
    let tar = common::image::build(d.dir(), &o);
    d.cli_ok(&["image", "load", tar.to_str().unwrap()]);
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec!["service", "create", "--name", name];
        args.extend_from_slice(extra);
        args.extend([
            "checked:1",
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 2; touch /tmp/ok; while true; do sleep 1; done",
        ]);
        d.cli_ok(&args);
    };
    create("imagecheck", &[]);
    create("nocheck", &["--no-healthcheck"]);
    let first = |svc: &str| d.ps(svc).into_iter().next().unwrap_or_default();
    assert!(
        wait_until(WAIT, || first("imagecheck")["health"] == "healthy"),
        "the image's check never made the task healthy: {}\n{}",
        first("imagecheck"),
        d.describe("imagecheck")
    );
    assert_eq!(s(&first("imagecheck"), "state"), "running");
    d.wait_running("nocheck", 1);
    assert!(
        first("nocheck")["health"].is_null(),
        "--no-healthcheck still checked: {}",
        first("nocheck")
    );
}
