//! Rollouts on one node, on real containerd: an update whose new tasks
//! fail rolls back on its own (`--update-failure-action rollback`);
//! start-first keeps every slot running through an update; `service
//! rollback` goes back to the previous spec, and a second one forward
//! again; `--force` replaces tasks with no change of spec; without
//! `--detach`, `create` and `update` wait and show each slot's progress,
//! and an update that fails exits 1 with why. The decisions
//! themselves (parallelism, delay, monitor, failure ratio) are unit-tested
//! in `src/orchestrator/update.rs`.
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::harness::*;
use serde_json::Value;

/// A task that runs until stopped, unless `FAIL` is set: then it exits 1
/// at once. `trap` makes a stop quick.
const SERVER: &str = "trap 'exit 0' TERM; test -z \"$FAIL\" || exit 1; \
                      echo \"V=[$V]\"; while true; do sleep 1; done";

fn create(d: &Daemon, name: &str, replicas: &str, flags: &[&str]) {
    let mut args = vec![
        "service",
        "create",
        "--name",
        name,
        "--replicas",
        replicas,
        "--restart-delay",
        "1s",
    ];
    args.extend_from_slice(flags);
    args.extend(["busybox", "sh", "-c", SERVER]);
    d.cli_ok(&args);
}

fn update_state(d: &Daemon, name: &str) -> (String, String) {
    let inspect = d.cli_json(&["service", "inspect", name]);
    let u = &inspect["update_status"];
    (
        u["state"].as_str().unwrap_or("").to_string(),
        u["message"].as_str().unwrap_or("").to_string(),
    )
}

fn wait_state(d: &Daemon, name: &str, want: &str) -> String {
    let mut seen = (String::new(), String::new());
    assert!(
        wait_until(Duration::from_secs(120), || {
            seen = update_state(d, name);
            seen.0 == want
        }),
        "service {name} never reached update state {want}: last {seen:?}\n{}",
        d.describe(name)
    );
    seen.1
}

/// The env of the containers containerd runs for these ids.
fn envs(d: &Daemon, ids: &BTreeSet<String>) -> Vec<String> {
    ids.iter()
        .map(|id| d.ctr_spec(id)["process"]["env"].to_string())
        .collect()
}

#[test]
fn an_update_whose_tasks_fail_rolls_back_on_its_own() {
    let d = Daemon::cluster();
    create(
        &d,
        "web",
        "2",
        &[
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "2s",
            // A failing task runs for a moment before it exits: the delay
            // lets its failure be seen before the next slot is touched.
            "--update-delay",
            "3s",
        ],
    );
    let before = d.wait_running("web", 2);
    d.cli_ok(&["service", "update", "--env-add", "FAIL=1", "web"]);
    let message = wait_state(&d, "web", "rollback_completed");
    assert!(
        message.starts_with("rollback completed (rollback started: 1 of 2 new tasks failed"),
        "{message}"
    );
    // Back on the spec without FAIL: two containers that run.
    let after = d.wait_running("web", 2);
    for env in envs(&d, &after) {
        assert!(
            !env.contains("FAIL=1"),
            "a task of the failed spec runs: {env}"
        );
    }
    let inspect = d.cli_json(&["service", "inspect", "web"]);
    assert!(
        !inspect["spec"].to_string().contains("FAIL=1"),
        "the spec in force is the failed one: {inspect}"
    );
    assert!(
        inspect["previous_spec"].to_string().contains("FAIL=1"),
        "the failed spec is kept as the previous one: {inspect}"
    );
    // Stop-first, parallelism 1, a delay: the first slot's failure stopped
    // the update; the second slot never left the old spec.
    assert_eq!(
        after.intersection(&before).count(),
        1,
        "the slot the update never reached keeps its task: before {before:?}, after {after:?}\n{}",
        d.describe("web")
    );
    // Why, in `service ps`: the failed task.
    let ps = d.ps("web");
    assert!(
        ps.iter().any(|t| s(t, "state") == "failed"),
        "no failed task in the history: {ps:?}"
    );
    // And `service ls`.
    let row = d
        .services()
        .into_iter()
        .find(|r| r["name"] == "web")
        .unwrap();
    assert_eq!(row["update_state"], "rollback_completed", "{row}");
}

#[test]
fn start_first_keeps_every_slot_running_through_an_update() {
    let d = Daemon::cluster();
    create(&d, "web", "2", &["--update-order", "start-first"]);
    let old = d.wait_running("web", 2);
    let update = d.cli_spawn(&["service", "update", "--env-add", "V=2", "web"]);
    let (mut most, mut fewest) = (0, usize::MAX);
    let mut new = BTreeSet::new();
    let done = wait_until(Duration::from_secs(120), || {
        // Running and meant to: an old task told to stop may still be
        // seen running for a moment.
        let serving = d
            .ps("web")
            .iter()
            .filter(|t| s(t, "state") == "running" && s(t, "desired_state") == "running")
            .count();
        most = most.max(serving);
        fewest = fewest.min(serving);
        new = d.running("web");
        new.len() == 2 && new.is_disjoint(&old)
    });
    let out = finish(update, WAIT);
    assert!(out.status.success(), "update failed: {}", stderr(&out));
    assert!(done, "the update never finished\n{}", d.describe("web"));
    assert_eq!(
        fewest,
        2,
        "a slot had no running task during a start-first update\n{}",
        d.describe("web")
    );
    assert!(
        most <= 3,
        "{most} tasks ran at once: parallelism 1 allows 3"
    );
    for env in envs(&d, &new) {
        assert!(env.contains("V=2"), "{env}");
    }
    assert_eq!(wait_state(&d, "web", "completed"), "update completed");
}

#[test]
fn rollback_goes_back_and_a_second_one_forward_again() {
    let d = Daemon::cluster();
    create(&d, "web", "1", &[]);
    d.wait_running("web", 1);
    // No previous spec yet.
    let out = d.cli(&["service", "rollback", "web"]);
    assert!(!out.status.success());
    assert!(
        one_line_error(&out).contains("no previous spec"),
        "{}",
        stderr(&out)
    );

    d.cli_ok(&["service", "update", "--env-add", "V=2", "web"]);
    wait_state(&d, "web", "completed");
    let v2 = d.wait_running("web", 1);
    assert!(envs(&d, &v2)[0].contains("V=2"));

    d.cli_ok(&["service", "rollback", "web"]);
    wait_state(&d, "web", "rollback_completed");
    let back = d.wait_running("web", 1);
    assert!(back.is_disjoint(&v2));
    assert!(!envs(&d, &back)[0].contains("V=2"), "{:?}", envs(&d, &back));

    d.cli_ok(&["service", "rollback", "web"]);
    let mut forward = BTreeSet::new();
    assert!(
        wait_until(Duration::from_secs(120), || {
            forward = d.running("web");
            forward.len() == 1 && forward.is_disjoint(&back)
        }),
        "the second rollback replaced nothing\n{}",
        d.describe("web")
    );
    assert!(envs(&d, &forward)[0].contains("V=2"));
    wait_state(&d, "web", "rollback_completed");
    let inspect: Value = d.cli_json(&["service", "inspect", "web"]);
    assert_eq!(inspect["spec_version"], 4, "{inspect}");
}

#[test]
fn force_replaces_every_task_with_no_change_of_spec() {
    let d = Daemon::cluster();
    create(&d, "web", "2", &["--update-parallelism", "0"]);
    let old = d.wait_running("web", 2);
    d.cli_ok(&["service", "update", "--force", "web"]);
    let mut new = BTreeSet::new();
    assert!(
        wait_until(Duration::from_secs(120), || {
            new = d.running("web");
            new.len() == 2 && new.is_disjoint(&old)
        }),
        "--force did not replace the tasks\n{}",
        d.describe("web")
    );
    wait_state(&d, "web", "completed");
    // Bad policies are refused with the reason.
    d.update_refused(
        "web",
        &[
            (
                &["--update-max-failure-ratio", "2"][..],
                "expected a number from 0 to 1",
            ),
            (&["--update-order", "sideways"][..], "sideways"),
            (&["--update-delay", "48h"][..], "at most 24 h"),
        ],
    );
}

#[test]
fn without_detach_create_and_update_wait_and_show_progress() {
    let d = Daemon::cluster();
    let out = d.cli(&[
        "service",
        "create",
        "--detach=false",
        "--name",
        "web",
        "--replicas",
        "2",
        "--restart-delay",
        "1s",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "1s",
        "busybox",
        "sh",
        "-c",
        SERVER,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Plain lines (not a terminal): each slot as it changes, then the end.
    assert!(text.contains("web.1: running"), "{text}");
    assert!(text.contains("web.2: running"), "{text}");
    assert!(text.trim_end().ends_with("web: converged"), "{text}");
    // It returned once both run, not before.
    assert_eq!(
        d.running("web").len(),
        2,
        "create returned before its tasks ran:\n{text}"
    );

    // An update whose tasks fail: it waits for the rollout, which rolls
    // back, and says why, with exit code 1.
    let out = d.cli(&[
        "service",
        "update",
        "--detach=false",
        "--env-add",
        "FAIL=1",
        "web",
    ]);
    assert!(
        !out.status.success(),
        "a failed update exited 0:\n{}",
        stdout(&out)
    );
    let err = one_line_error(&out);
    assert!(err.contains("rollback_completed"), "{err}");
    assert!(err.contains("new tasks failed"), "{err}");
    assert!(stdout(&out).contains("failed"), "{}", stdout(&out));
    // And a good one ends with the rollout's message.
    let out = d.cli(&[
        "service",
        "update",
        "--detach=false",
        "--env-add",
        "V=3",
        "web",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).trim_end().ends_with("web: update completed"),
        "{}",
        stdout(&out)
    );

    // On a terminal (a pseudo-terminal, through util-linux's `script`):
    // docker's bars, redrawn in place.
    let cmd = shell_words::join([
        d.cli_binary.to_str().unwrap(),
        "--socket",
        d.socket.to_str().unwrap(),
        "service",
        "scale",
        "--detach=false",
        "web=3",
    ]);
    let out = run(std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("\x1b[2K"),
        "no redraw on a terminal: {text:?}"
    );
    let full = format!("[{}]", "=".repeat(30));
    assert!(text.contains(&full), "no full bar: {text}");
    assert!(text.contains("web: 3/3 tasks up to date"), "{text}");
    assert!(text.trim_end().ends_with("web: converged"), "{text}");
}

#[test]
fn every_field_of_the_spec_can_be_updated_with_add_and_rm_forms() {
    let d = Daemon::cluster();
    d.cli_ok(&["network", "create", "backend"]);
    create(&d, "web", "1", &["--label", "old=1"]);
    let old = d.wait_running("web", 1);
    d.cli_ok(&[
        "service",
        "update",
        "--args",
        "sh -c 'trap \"exit 0\" INT; echo \"in $(pwd)\"; while true; do sleep 1; done'",
        "--workdir",
        "/tmp",
        "--user",
        "1:1",
        "--label-add",
        "tier=web",
        "--label-rm",
        "old",
        "--container-label-add",
        "team=edge",
        "--stop-signal",
        "SIGINT",
        "--stop-grace-period",
        "3s",
        "--restart-condition",
        "on-failure",
        "--restart-max-attempts",
        "7",
        "--network-add",
        "backend",
        "web",
    ]);
    let mut ids = BTreeSet::new();
    assert!(
        wait_until(Duration::from_secs(120), || {
            ids = d.running("web");
            ids.len() == 1 && ids.is_disjoint(&old)
        }),
        "the update did not replace the task\n{}",
        d.describe("web")
    );
    let spec = d.cli_json(&["service", "inspect", "web"])["spec"].clone();
    assert_eq!(spec["args"][0], "sh", "{spec}");
    assert_eq!(spec["workdir"], "/tmp", "{spec}");
    assert_eq!(spec["user"], "1:1", "{spec}");
    assert_eq!(spec["labels"], serde_json::json!({"tier": "web"}), "{spec}");
    assert_eq!(spec["container_labels"]["team"], "edge", "{spec}");
    assert_eq!(spec["stop_signal"], "SIGINT", "{spec}");
    assert_eq!(spec["stop_grace_period_ms"], 3000, "{spec}");
    assert_eq!(spec["restart_condition"], "on-failure", "{spec}");
    assert_eq!(spec["restart_max_attempts"], 7, "{spec}");
    assert_eq!(spec["networks"].as_array().map(Vec::len), Some(1), "{spec}");
    // What the container got.
    let id = ids.iter().next().unwrap();
    let oci = d.ctr_spec(id);
    assert_eq!(oci["process"]["cwd"], "/tmp", "{oci}");
    assert_eq!(oci["process"]["user"]["uid"], 1, "{oci}");
    assert_eq!(oci["process"]["args"][0], "sh", "{oci}");
    let info = d.ctr_container_info(id);
    assert_eq!(info["Labels"]["team"], "edge", "{info}");

    // Leaving the network, and what does not exist, said so.
    d.cli_ok(&["service", "update", "--network-rm", "backend", "web"]);
    let spec = d.cli_json(&["service", "inspect", "web"])["spec"].clone();
    assert!(
        spec["networks"].as_array().is_none_or(Vec::is_empty),
        "{spec}"
    );
    d.update_refused(
        "web",
        &[
            (&["--label-rm", "nope"][..], "there is no label \"nope\""),
            (
                &["--network-rm", "backend"][..],
                "is not on network backend",
            ),
            (&["--network-add", "nowhere"][..], "nowhere"),
            (&["--args", "sh -c 'unclosed"][..], "--args"),
            (&["--restart-condition", "sometimes"][..], "sometimes"),
        ],
    );
}
