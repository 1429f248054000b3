//! Services end to end on one node: replicas become real containerd
//! containers, scaling both ways, a spec update that replaces tasks one slot
//! at a time, create options that reach the container, `rm` that leaves
//! nothing behind, global mode and `node ls`. What runs is checked through
//! containerd itself (`ctr`), not only through shoal.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::harness::*;
use serde_json::Value;

#[test]
fn replicas_are_containers_and_scale_both_ways() {
    let d = Daemon::cluster();
    d.sleeper("web", &["--replicas", "3", "--stop-grace-period", "2s"]);
    let ids = d.wait_running("web", 3);
    assert_eq!(
        d.ctr_running(),
        ids,
        "containerd must run exactly the tasks shoal reports\n{}",
        d.describe("web")
    );
    assert_eq!(d.ctr_containers(), ids, "one container per task, no more");

    let ps = d.ps("web");
    assert_eq!(ps.len(), 3, "{ps:?}");
    let names: BTreeSet<&str> = ps.iter().map(|t| s(t, "name")).collect();
    assert_eq!(names, BTreeSet::from(["web.1", "web.2", "web.3"]));
    for t in &ps {
        let id = s(t, "id");
        assert_eq!(s(t, "service"), "web");
        assert_eq!(s(t, "desired_state"), "running");
        assert_eq!(s(t, "state"), "running");
        assert!(!s(t, "node").is_empty(), "task without a node: {t}");
        assert_eq!(
            t["container_id"].as_str(),
            Some(id),
            "the container id is the task id: {t}"
        );
        assert_eq!(
            t["slot"].as_u64(),
            s(t, "name")
                .strip_prefix("web.")
                .and_then(|n| n.parse().ok()),
            "name is service.slot: {t}"
        );
        let info = d.ctr_container_info(id);
        assert_eq!(
            info["Labels"]["shoal.task.id"].as_str(),
            Some(id),
            "container {id} must carry the label shoal.task.id: {info}"
        );
    }

    let ls = d.services();
    assert_eq!(ls.len(), 1, "{ls:?}");
    let web = &ls[0];
    assert_eq!(s(web, "name"), "web");
    assert_eq!(s(web, "mode"), "replicated");
    assert_eq!(s(web, "image"), BUSYBOX, "the image name is normalized");
    assert_eq!(web["replicas"].as_u64(), Some(3));
    assert!(!s(web, "id").is_empty());
    assert!(
        wait_until(WAIT, || d.services()[0]["running"].as_u64() == Some(3)),
        "service ls must count 3 running: {:?}",
        d.services()
    );
    let table = d.cli_ok(&["service", "ls"]);
    assert!(table.contains("web"), "service ls table:\n{table}");
    let table = d.cli_ok(&["service", "ps", "web"]);
    assert!(
        table.contains("web.1") && table.contains("web.3"),
        "ps table:\n{table}"
    );

    // Up to 5: the running three stay, two more start.
    d.cli_ok(&["service", "scale", "web=5"]);
    let up = d.wait_running("web", 5);
    assert!(
        ids.is_subset(&up),
        "scaling up must not replace running tasks: {ids:?} vs {up:?}"
    );
    assert!(
        wait_until(WAIT, || d.ctr_running() == up),
        "containerd must run exactly the 5 tasks\n{}",
        d.describe("web")
    );

    // Down to 2: three are stopped, in containerd too.
    d.cli_ok(&["service", "scale", "web=2"]);
    let mut down = BTreeSet::new();
    let ok = wait_until(WAIT, || {
        down = d.running("web");
        down.len() == 2 && d.ctr_running() == down
    });
    assert!(
        ok,
        "after scale web=2, shoal and containerd must both run 2 tasks\n{}",
        d.describe("web")
    );
    assert!(down.is_subset(&up), "scaling down must not start new tasks");
    assert_eq!(d.services()[0]["replicas"].as_u64(), Some(2));

    // `update --replicas` scales as well.
    d.cli_ok(&["service", "update", "--replicas", "4", "web"]);
    let four = d.wait_running("web", 4);
    assert!(wait_until(WAIT, || d.ctr_running() == four));
    assert_eq!(d.services()[0]["replicas"].as_u64(), Some(4));
}

/// Slots of the service's tasks → whether some task in that slot runs.
fn slots_up(ps: &[Value]) -> BTreeMap<u64, bool> {
    let mut slots = BTreeMap::new();
    for t in ps {
        let slot = t["slot"].as_u64().unwrap_or(0);
        let up = slots.entry(slot).or_insert(false);
        *up |= s(t, "state") == "running";
    }
    slots
}

#[test]
fn update_replaces_tasks_one_slot_at_a_time() {
    let d = Daemon::cluster();
    // A second name for the same image, for `update --image`.
    d.load_image("other/busybox:v2");
    // sh is PID 1 and traps TERM, so a stop is quick and clean.
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "--restart-delay",
        "1s",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo \"A=[$A]\"; while true; do sleep 1; done",
    ]);
    let old = d.wait_running("web", 3);

    // The update may return at once or wait for the rollout: run it in the
    // background and watch the slots meanwhile.
    let update = d.cli_spawn(&["service", "update", "--env-add", "A=1", "web"]);
    let mut worst = 0;
    let mut new = BTreeSet::new();
    let done = wait_until(Duration::from_secs(120), || {
        let ps = d.ps("web");
        let down = slots_up(&ps).values().filter(|up| !**up).count();
        worst = worst.max(down);
        new = d.running("web");
        new.len() == 3 && new.is_disjoint(&old)
    });
    let out = finish(update, WAIT);
    assert!(
        out.status.success(),
        "service update failed: {}\n{}",
        out.status,
        stderr(&out)
    );
    assert!(
        done,
        "update did not replace all 3 tasks\n{}",
        d.describe("web")
    );
    assert!(
        worst <= 1,
        "the update took {worst} slots down at once; it must replace one slot at a time"
    );
    assert!(wait_until(WAIT, || d.ctr_running() == new));

    for id in &new {
        let env = d.ctr_spec(id)["process"]["env"].clone();
        assert!(
            env.as_array().is_some_and(|e| e.iter().any(|v| v == "A=1")),
            "new container {id} must have A=1 in its env: {env}"
        );
    }
    let ps = d.ps("web");
    for t in ps.iter().filter(|t| old.contains(s(t, "id"))) {
        assert_eq!(
            s(t, "desired_state"),
            "shutdown",
            "replaced task must be shut down: {t}"
        );
    }
    assert_eq!(
        slots_up(&ps).keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3],
        "the update keeps the slots"
    );
    let inspect = d.cli_json(&["service", "inspect", "web"]);
    assert!(
        inspect.to_string().contains("A=1"),
        "service inspect must show the new env: {inspect}"
    );
    // The same words as `service ls`, and the spec before the update.
    assert_eq!(inspect["spec"]["mode"], "replicated", "{inspect}");
    assert_eq!(inspect["spec"]["replicas"], 3, "{inspect}");
    assert_eq!(inspect["spec"]["restart_condition"], "any", "{inspect}");
    assert_eq!(inspect["spec_version"], 2, "{inspect}");
    assert!(
        !inspect["previous_spec"].to_string().contains("A=1"),
        "{inspect}"
    );
    // And the containers themselves see it.
    assert!(
        wait_until(WAIT, || {
            let logs = d.cli(&["service", "logs", "web"]);
            stdout(&logs).matches("A=[1]").count() >= 3
        }),
        "the 3 new containers must print A=[1]; logs:\n{}",
        stdout(&d.cli(&["service", "logs", "web"]))
    );

    // --env-rm takes it away again.
    d.cli_ok(&["service", "update", "--env-rm", "A", "web"]);
    let mut third = BTreeSet::new();
    assert!(
        wait_until(Duration::from_secs(120), || {
            third = d.running("web");
            third.len() == 3 && third.is_disjoint(&new) && third.is_disjoint(&old)
        }),
        "--env-rm must replace the tasks\n{}",
        d.describe("web")
    );
    for id in &third {
        let env = d.ctr_spec(id)["process"]["env"].to_string();
        assert!(!env.contains("A=1"), "A must be gone from {id}: {env}");
    }

    // --image replaces them with containers of the new image.
    d.cli_ok(&["service", "update", "--image", "other/busybox:v2", "web"]);
    let mut fourth = BTreeSet::new();
    assert!(
        wait_until(Duration::from_secs(120), || {
            fourth = d.running("web");
            fourth.len() == 3 && fourth.is_disjoint(&third)
        }),
        "--image must replace the tasks\n{}",
        d.describe("web")
    );
    assert_eq!(s(&d.services()[0], "image"), "docker.io/other/busybox:v2");
    for id in &fourth {
        let info = d.ctr_container_info(id);
        assert_eq!(
            info["Image"].as_str(),
            Some("docker.io/other/busybox:v2"),
            "container {id} must use the new image: {info}"
        );
    }
    // History: at most 5 tasks per slot, and each slot has its old tasks.
    let ps = d.ps("web");
    for slot in 1..=3u64 {
        let n = ps
            .iter()
            .filter(|t| t["slot"].as_u64() == Some(slot))
            .count();
        assert!((2..=5).contains(&n), "slot {slot} has {n} tasks: {ps:?}");
    }
}

#[test]
fn create_options_reach_the_container() {
    let d = Daemon::cluster();
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "opts",
        "--env",
        "FOO=bar",
        "--env",
        "EMPTY=",
        "--workdir",
        "/tmp",
        "--user",
        "app",
        "--label",
        "team=edge",
        "busybox",
        "sh",
        "-c",
        "echo \"who=$(id -u):$(id -g) pwd=$(pwd) foo=$FOO\"; exec sleep 3600",
    ]);
    let ids = d.wait_running("opts", 1);
    let id = ids.iter().next().unwrap();
    let spec = d.ctr_spec(id);
    let process = &spec["process"];
    let env = process["env"].to_string();
    assert!(
        env.contains("FOO=bar") && env.contains("EMPTY="),
        "env: {env}"
    );
    assert!(
        env.contains("PATH=") && env.contains("BAR=image"),
        "the image's env (PATH, BAR) must be kept: {env}"
    );
    assert!(
        !env.contains("FOO=image"),
        "--env FOO=bar must replace the image's FOO: {env}"
    );
    assert_eq!(process["cwd"].as_str(), Some("/tmp"), "{process}");
    assert_eq!(
        process["user"]["uid"].as_u64(),
        Some(1000),
        "user app must resolve through the image's /etc/passwd: {process}"
    );
    assert_eq!(process["user"]["gid"].as_u64(), Some(1000), "{process}");
    assert!(
        !spec["hostname"].as_str().unwrap_or("").is_empty(),
        "the container gets a hostname: {spec}"
    );
    let inspect = d.cli_json(&["service", "inspect", "opts"]).to_string();
    for want in ["opts", "FOO=bar", "/tmp", "app", "team", "edge"] {
        assert!(inspect.contains(want), "inspect lacks {want}: {inspect}");
    }
    assert!(
        wait_until(WAIT, || {
            stdout(&d.cli(&["service", "logs", "opts"])).contains("who=1000:1000 pwd=/tmp foo=bar")
        }),
        "the process must run as app in /tmp with FOO=bar; logs:\n{}",
        stdout(&d.cli(&["service", "logs", "opts"]))
    );
}

/// Replaces the service's one task (an env change) and returns the old task
/// as `service ps` shows it once the new one runs, and how long that took.
fn replace_task(d: &Daemon, service: &str) -> (Value, Duration) {
    let old = d.wait_running(service, 1).into_iter().next().unwrap();
    let started = std::time::Instant::now();
    d.cli_ok(&["service", "update", "--env-add", "X=1", service]);
    assert!(
        wait_until(WAIT, || {
            let now = d.running(service);
            now.len() == 1 && !now.contains(&old)
        }),
        "the update must replace the task\n{}",
        d.describe(service)
    );
    let took = started.elapsed();
    // The old task stays in the history; give its exit code time to arrive.
    let mut task = Value::Null;
    wait_until(Duration::from_secs(10), || {
        task = d
            .ps(service)
            .into_iter()
            .find(|t| s(t, "id") == old)
            .unwrap_or_default();
        !task["exit_code"].is_null()
    });
    assert!(!task.is_null(), "the old task must stay in the history");
    (task, took)
}

#[test]
fn stop_signal_then_kill_after_grace_period() {
    let d = Daemon::cluster();
    // Traps USR1 (the stop signal asked for) and exits cleanly.
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "polite",
        "--stop-signal",
        "SIGUSR1",
        "--stop-grace-period",
        "30s",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 0' USR1; echo ready; while true; do sleep 1; done",
    ]);
    // Ignores what it can: only SIGKILL after the grace period stops it.
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "stubborn",
        "--stop-grace-period",
        "2s",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM INT USR1; echo ready; while true; do sleep 1; done",
    ]);
    for name in ["polite", "stubborn"] {
        d.wait_running(name, 1);
        assert!(wait_until(WAIT, || stdout(
            &d.cli(&["service", "logs", name])
        )
        .contains("ready")));
    }

    let (old, took) = replace_task(&d, "polite");
    let logs = stdout(&d.cli(&["service", "logs", "polite"]));
    assert!(
        logs.contains("got-usr1"),
        "the stop signal must be SIGUSR1: {logs}"
    );
    assert!(
        took < Duration::from_secs(25),
        "the stop took {took:?}: it must not wait for the 30s grace period"
    );
    assert_eq!(
        old["exit_code"].as_i64(),
        Some(0),
        "the polite task exited by itself on SIGUSR1, with code 0: {old}"
    );

    let (old, took) = replace_task(&d, "stubborn");
    assert_eq!(
        old["exit_code"].as_i64(),
        Some(137),
        "a task that ignores its stop signal is SIGKILLed: {old}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "SIGKILL must wait for the 2s grace period, took {took:?}"
    );
}

#[test]
fn rm_leaves_no_container_and_no_snapshot() {
    let d = Daemon::cluster();
    for name in ["web", "api"] {
        d.cli_ok(&[
            "service",
            "create",
            "--name",
            name,
            "--replicas",
            "2",
            "--restart-delay",
            "1s",
            "--stop-grace-period",
            "2s",
            "busybox",
            "sleep",
            "3600",
        ]);
    }
    let web = d.wait_running("web", 2);
    d.wait_running("api", 2);
    // Give web some history: a killed task whose container stays until the
    // task is removed.
    let victim = web.iter().next().unwrap().clone();
    d.ctr_kill(&victim);
    assert!(
        wait_until(WAIT, || {
            let r = d.running("web");
            r.len() == 2 && !r.contains(&victim)
        }),
        "killed task must be replaced\n{}",
        d.describe("web")
    );
    let mut all_tasks: BTreeSet<String> = BTreeSet::new();
    for name in ["web", "api"] {
        all_tasks.extend(d.ps(name).iter().map(|t| s(t, "id").to_string()));
    }
    assert!(all_tasks.len() >= 5);

    d.cli_ok(&["service", "rm", "web", "api"]);
    assert!(
        wait_until(WAIT, || d.ctr_containers().is_empty()
            && d.ctr_tasks().is_empty()),
        "service rm must remove every container and task: containers {:?}, tasks {:?}",
        d.ctr_containers(),
        d.ctr_tasks()
    );
    let leftover = |snaps: &[(String, String)]| -> Vec<String> {
        snaps
            .iter()
            .filter(|(key, kind)| kind == "Active" || all_tasks.iter().any(|t| key.contains(t)))
            .map(|(key, kind)| format!("{key} ({kind})"))
            .collect()
    };
    assert!(
        wait_until(WAIT, || leftover(&d.ctr_snapshots()).is_empty()),
        "service rm must remove the containers' snapshots: {:?}",
        leftover(&d.ctr_snapshots())
    );
    assert!(d.services().is_empty(), "{:?}", d.services());
    let err = one_line_error(&d.cli(&["service", "ps", "web"]));
    assert!(err.contains("web"), "{err}");
    // The image stays: a new service still starts.
    d.sleeper("again", &[]);
    d.wait_running("again", 1);
}

#[test]
fn global_service_runs_one_task_on_the_node() {
    let d = Daemon::cluster();
    d.sleeper("agent", &["--mode", "global"]);
    let ids = d.wait_running("agent", 1);
    let ls = d.services();
    assert_eq!(s(&ls[0], "mode"), "global", "{ls:?}");
    d.settle();
    assert_eq!(d.running("agent"), ids, "one task on the one node, no more");
    assert_eq!(d.ctr_running(), ids);
}

#[test]
fn node_ls_shows_one_ready_manager_leader() {
    let d = Daemon::cluster();
    let nodes = d.cli_json(&["node", "ls"]);
    let nodes = nodes.as_array().expect("node ls is an array");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let n = &nodes[0];
    assert!(!s(n, "id").is_empty(), "{n}");
    assert_eq!(s(n, "hostname"), hostname(), "{n}");
    assert_eq!(s(n, "role"), "manager", "{n}");
    assert_eq!(s(n, "status"), "ready", "{n}");
    assert_eq!(s(n, "availability"), "active", "{n}");
    assert_eq!(n["leader"].as_bool(), Some(true), "{n}");
    assert_eq!(s(n, "manager_status"), "leader", "{n}");
    assert_eq!(s(n, "platform"), format!("linux/{}", host_arch()), "{n}");
    assert!(
        s(n, "addr").ends_with(&format!(":{}", d.port)),
        "addr is the advertise address: {n}"
    );
    assert!(!s(n, "version").is_empty(), "{n}");

    let me = d.cli_json(&["node", "inspect", "self"]);
    let me = if let Value::Array(items) = &me {
        items.first().cloned().unwrap_or_default()
    } else {
        me
    };
    assert_eq!(s(&me, "id"), s(n, "id"), "node inspect self: {me}");
    assert_eq!(s(&me, "platform"), s(n, "platform"), "{me}");
    let by_id = d.cli_json(&["node", "inspect", s(n, "id")]);
    assert!(by_id.to_string().contains(s(n, "id")));

    let table = d.cli_ok(&["node", "ls"]);
    assert!(table.contains(&hostname()), "node ls table:\n{table}");
}
