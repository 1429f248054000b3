//! `shoal events` on real daemons: a service's create, update and remove
//! (and a secret's, a network's) as they are committed; filters; `--since`
//! replaying what a manager kept; a stream that goes on across its
//! daemon's restart (resuming after the last commit it showed) and across
//! the leader's death (three managers).
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::io::BufRead;
use std::process::Child;
use std::sync::{Arc, Mutex};

use common::harness::*;
use common::managers::*;
use serde_json::Value;

/// A running `shoal events --format json …`, its lines collected.
struct Stream {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Stream {
    fn start(d: &Daemon, flags: &[&str]) -> Stream {
        let mut args = vec!["events", "--format", "json"];
        args.extend_from_slice(flags);
        let mut child = d.cli_spawn(&args);
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"));
                sink.lock().unwrap().push(v);
            }
        });
        // Subscribed once the daemon answered: give it a moment.
        std::thread::sleep(std::time::Duration::from_millis(500));
        Stream { child, lines }
    }

    /// (type, action, name) of every event so far.
    fn seen(&self) -> Vec<(String, String, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    s(e, "type").into(),
                    s(e, "action").into(),
                    s(e, "name").into(),
                )
            })
            .collect()
    }

    fn has(&self, kind: &str, action: &str, name: &str) -> bool {
        self.seen()
            .iter()
            .any(|(k, a, n)| k == kind && a == action && n == name)
    }

    /// Waits for the event, or fails saying what came.
    fn wait_for(&self, kind: &str, action: &str, name: &str) {
        assert!(
            wait_until(WAIT, || self.has(kind, action, name)),
            "no {kind} {action} {name} among {:?}",
            self.seen()
        );
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_show_creates_updates_and_removes_and_follow_a_restart() {
    let mut d = Daemon::cluster();
    let all = Stream::start(&d, &[]);
    let services = Stream::start(&d, &["--filter", "type=service"]);
    d.sleeper("web", &[]);
    d.cli_ok(&["service", "update", "--env-add", "A=1", "web"]);
    let pw = d.dir().join("pw");
    std::fs::write(&pw, "x").unwrap();
    d.cli_ok(&["secret", "create", "pw", pw.to_str().unwrap()]);
    d.cli_ok(&["network", "create", "backend"]);
    d.cli_ok(&["service", "rm", "web"]);
    all.wait_for("service", "create", "web");
    all.wait_for("service", "update", "web");
    all.wait_for("service", "remove", "web");
    all.wait_for("secret", "create", "pw");
    all.wait_for("network", "create", "backend");
    all.wait_for("task", "create", "web.1");
    // In commit order, each with its index.
    let order: Vec<String> = all
        .seen()
        .into_iter()
        .filter(|(k, _, n)| k == "service" && n == "web")
        .map(|(_, a, _)| a)
        .collect();
    assert_eq!(
        order.first().map(String::as_str),
        Some("create"),
        "{order:?}"
    );
    assert_eq!(
        order.last().map(String::as_str),
        Some("remove"),
        "{order:?}"
    );
    services.wait_for("service", "remove", "web");
    assert!(
        services.seen().iter().all(|(k, _, _)| k == "service"),
        "{:?}",
        services.seen()
    );

    // What the manager kept, from a while ago: replayed, then live.
    let replay = Stream::start(&d, &["--since", "10m", "--filter", "type=secret"]);
    replay.wait_for("secret", "create", "pw");
    assert!(
        !replay.has("service", "create", "web"),
        "{:?}",
        replay.seen()
    );

    // The daemon restarts under the stream: it comes back, and shows what
    // happens after.
    d.restart();
    d.sleeper("after", &[]);
    all.wait_for("service", "create", "after");

    // Bad filters are refused with the reason.
    for (flags, want) in [
        (&["--filter", "type=volume"][..], "invalid event type"),
        (&["--filter", "colour=red"][..], "invalid filter key"),
        (&["--since", "yesterday-ish"][..], "invalid --since"),
    ] {
        let mut args = vec!["events"];
        args.extend_from_slice(flags);
        let out = d.cli(&args);
        assert!(!out.status.success(), "{flags:?} was taken");
        assert!(stderr(&out).contains(want), "{flags:?}: {}", stderr(&out));
    }
}

#[test]
fn a_stream_on_a_follower_goes_on_across_the_leader_s_death() {
    let mut ms = three_managers();
    let leader = leader_id(&ms[0]);
    let li = ms
        .iter()
        .position(|m| self_id(m) == leader)
        .expect("the leader is one of the three");
    let fi = (li + 1) % 3;
    let stream = Stream::start(&ms[fi], &["--filter", "type=service"]);
    ms[fi].sleeper("before", &[]);
    stream.wait_for("service", "create", "before");
    ms[li].kill9();
    // A new leader among the two left; the follower's stream goes on.
    assert!(
        wait_until(WAIT, || try_leader(&ms[fi]).is_some_and(|l| l != leader)),
        "no new leader"
    );
    ms[fi].sleeper("after", &[]);
    stream.wait_for("service", "create", "after");
    ms[li].start_again();
}
