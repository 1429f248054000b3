//! The hostile suite: bad input that once got through, each kept as a test
//! so that it never does again (issue "Hardening"). Every case runs against
//! a real daemon and checks both that the input is refused with a clear
//! error and that nothing was stored or started.
//!
//! Needs root and a running containerd (`bash tests/run` starts it).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::containerd::OwnContainerd;
use common::harness::*;

/// `POST path` with a JSON body on the daemon's control socket, as any API
/// client could send it (the CLI cannot put a NUL in an argument). Returns
/// the status code and the body.
fn post_raw(d: &Daemon, path: &str, body: &str) -> (u16, String) {
    request_raw(d, "POST", path, "application/json", body)
}

/// Any request on the control socket, with the content type it is given.
fn request_raw(
    d: &Daemon,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let mut s = UnixStream::connect(&d.socket).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: shoal\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // The daemon may answer from the headers alone (415) and close before
    // it has read the body: the write then fails with a broken pipe, and
    // the answer, which is what is checked, is there to read all the same.
    if let Err(e) = s.write_all(request.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write: {e}");
    }
    // Likewise the read: a daemon that answered before reading all of a
    // large body closes with it unread, and the socket then reports a
    // reset after the answer. What was read is the answer.
    let mut bytes = Vec::new();
    match s.read_to_end(&mut bytes) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !bytes.is_empty() => {}
        Err(e) => panic!("read the reply: {e}"),
    }
    let reply = String::from_utf8_lossy(&bytes).to_string();
    let code = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply}"));
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_string())
}

fn nothing_stored(d: &Daemon, what: &str) {
    assert!(
        d.services().is_empty(),
        "{what} was refused but a service was stored: {:?}",
        d.services()
    );
    assert!(d.ctr_containers().is_empty(), "{what} started a container");
}

#[test]
fn durations_out_of_bounds_are_refused_not_wrapped() {
    let d = Daemon::cluster();
    for (flag, value, word) in [
        ("--restart-delay", "300000000y", "restart delay"),
        ("--restart-delay", "25h", "at most 24h"),
        ("--stop-grace-period", "2h", "at most 1h"),
    ] {
        let out = d.create_sleeper("x", &[flag, value]);
        let err = one_line_error(&out);
        assert!(err.contains(word), "{flag} {value}: {err}");
        nothing_stored(&d, &format!("{flag} {value}"));
    }
}

#[test]
fn nul_bytes_and_malformed_digests_are_refused_at_the_api() {
    let d = Daemon::cluster();
    for (body, word) in [
        (
            r#"{"name":"x","image":"busybox","env":["A=b\u0000c"]}"#,
            "NUL",
        ),
        (
            r#"{"name":"x","image":"busybox","env":["A\u0000=b"]}"#,
            "NUL",
        ),
        (
            r#"{"name":"x","image":"busybox","args":["sleep\u0000","1"]}"#,
            "NUL",
        ),
        (r#"{"name":"x","image":"busybox@sha256:zz"}"#, "digest"),
        (
            r#"{"name":"x","image":"busybox","restart_delay_ms":18446744073709551615}"#,
            "restart delay",
        ),
    ] {
        let (code, reply) = post_raw(&d, "/v1/services", body);
        assert_eq!(code, 400, "{body}: {reply}");
        assert!(reply.contains(word), "{body}: {reply}");
        assert!(
            !reply.contains("--"),
            "no CLI flag in an API error: {reply}"
        );
        nothing_stored(&d, body);
    }
    // The CLI refuses the digest too, in one line.
    let err = one_line_error(&d.cli(&[
        "service",
        "create",
        "--name",
        "x",
        "busybox@sha256:zz",
        "sleep",
        "1",
    ]));
    assert!(err.contains("digest"), "{err}");
    nothing_stored(&d, "busybox@sha256:zz");
}

/// Runs the CLI with its stdout closed before it writes, as `| head -1`
/// closes it after one line.
fn with_closed_stdout(d: &Daemon, args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(SHOAL)
        .env_remove("SHOAL_SOCKET")
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the CLI");
    drop(child.stdout.take());
    finish(child, Duration::from_secs(30))
}

#[test]
fn a_closed_pipe_ends_the_cli_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let d = Daemon::cluster();
    for i in 0..3 {
        d.sleeper(&format!("s{i}"), &[]);
    }
    for args in [&["service", "ls"][..], &["completion", "bash"], &["--help"]] {
        let out = with_closed_stdout(&d, args);
        let err = stderr(&out);
        assert!(
            !err.contains("panicked") && out.status.code() != Some(134),
            "`shoal {}` with its reader gone: {} {err}",
            args.join(" "),
            out.status
        );
        assert!(
            out.status.success() || out.status.signal() == Some(13),
            "`shoal {}` must end as `ls` does (SIGPIPE): {}",
            args.join(" "),
            out.status
        );
    }
}

#[test]
fn a_pending_task_says_why_in_service_ps_and_join_token_names_the_manager() {
    let d = Daemon::cluster();
    d.sleeper("nowhere", &["--constraint", "node.labels.zone==nowhere"]);
    assert!(
        wait_until(WAIT, || stdout(&d.cli(&["service", "ps", "nowhere"]))
            .contains("no suitable node")),
        "the ERROR column must say why the task waits:\n{}",
        stdout(&d.cli(&["service", "ps", "nowhere"]))
    );
    let addr = format!("127.0.0.1:{}", d.port);
    for role in ["worker", "manager"] {
        let out = d.cli_ok(&["join-token", role]);
        let line = out
            .lines()
            .find(|l| l.contains("shoal join --token"))
            .unwrap_or_else(|| panic!("no join command: {out}"));
        assert!(
            line.trim_end().ends_with(&addr),
            "the join command must name this manager ({addr}): {line}"
        );
    }
}

/// An image loaded on a worker after it joined reaches the scheduler: the
/// worker's session opens again with the new description. Once, the change
/// was dropped on workers and every replica piled on the manager. The order
/// matters: join first, then load.
#[test]
fn an_image_loaded_on_a_worker_after_it_joined_reaches_the_scheduler() {
    let manager = Daemon::cluster();
    let workers = [Daemon::start(), Daemon::start()];
    for w in &workers {
        let addr = format!("127.0.0.1:{}", manager.port);
        w.cli_ok(&["join", "--token", &manager.join_token(), &addr]);
    }
    for w in &workers {
        let addr = format!("127.0.0.1:{}", w.port);
        assert!(
            wait_until(WAIT, || manager.node_status(&addr) == "ready"),
            "a worker never became ready: {:?}",
            manager.nodes()
        );
        w.load_image("busybox");
    }
    manager.sleeper("spread", &["--replicas", "6"]);
    let counts = || {
        [
            manager.ctr_running().len(),
            workers[0].ctr_running().len(),
            workers[1].ctr_running().len(),
        ]
    };
    assert!(
        wait_until(WAIT, || counts() == [2, 2, 2]),
        "replicas per node (manager, worker, worker): {:?}\n{}",
        counts(),
        manager.describe("spread")
    );
}

/// Service names are unique where writes are applied, not only where they
/// are proposed: 20 creates of one name at once, spread over 3 managers,
/// make exactly one service, and the 19 others say it already exists.
#[test]
fn parallel_creates_of_one_name_over_three_managers_make_one_service() {
    let managers = common::managers::three_managers();
    let outs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let m = &managers[i % managers.len()];
                scope.spawn(move || m.create_sleeper("dupname", &[]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(created, 1, "creates that succeeded: {created}");
    for out in outs.iter().filter(|o| !o.status.success()) {
        let err = stderr(out);
        assert!(
            err.contains("service dupname already exists"),
            "a refused create says something else: {err}"
        );
    }
    for m in &managers {
        let names: Vec<String> = m
            .services()
            .iter()
            .map(|v| s(v, "name").to_string())
            .collect();
        assert_eq!(names, ["dupname"], "services on one manager");
    }
}

/// Every error the API answers is JSON with one `message`, the ones that
/// axum makes itself included (once, 415 and 422 came as plain text).
#[test]
fn every_api_error_is_json_with_a_message() {
    let d = Daemon::cluster();
    for (method, path, ctype, body, code) in [
        ("POST", "/v1/services", "text/plain", r#"{"name":"x"}"#, 415),
        (
            "POST",
            "/v1/services",
            "application/json",
            r#"{"name":7}"#,
            422,
        ),
        ("POST", "/v1/services", "application/json", "{not json", 400),
        ("GET", "/v1/no-such-thing", "application/json", "", 404),
        ("DELETE", "/v1/info", "application/json", "", 405),
        ("GET", "/v1/services/nope", "application/json", "", 404),
    ] {
        let (got, reply) = request_raw(&d, method, path, ctype, body);
        assert_eq!(got, code, "{method} {path}: {reply}");
        let v: serde_json::Value = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {reply}"));
        let message = v["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{method} {path}: no message: {reply}");
        assert!(!message.contains("--"), "names a CLI flag: {message}");
    }
    nothing_stored(&d, "a bad request");
}

/// `--force-new-cluster` is refused while a quorum is reachable (once, it
/// split a working cluster), and a read without a quorum says so in words
/// (once, a debug dump of openraft's membership).
#[test]
fn quorum_questions_get_plain_answers() {
    let mut managers = common::managers::three_managers();
    let out = managers[0].cli(&["init", "--force-new-cluster"]);
    assert!(!out.status.success(), "forced with a quorum");
    let err = one_line_error(&out);
    assert!(err.contains("has a quorum"), "{err}");
    let survivor = managers.remove(0);
    for mut m in managers {
        m.kill9();
    }
    let out = survivor.cli(&["node", "ls"]);
    assert!(!out.status.success(), "node ls answered without a quorum");
    let err = one_line_error(&out);
    assert!(
        err.contains("no quorum: 1 of 3 managers reachable"),
        "{err}"
    );
    assert!(!err.contains("Member {"), "a debug dump: {err}");
}

/// A usage error is clap's whole message, not its first line cut at a
/// colon: what is missing, the allowed values, a suggestion for a misspelt
/// command, and a word for a negative count.
#[test]
fn usage_errors_say_everything_clap_knows() {
    for (args, words) in [
        (
            &["service", "create", "demo-busybox", "sleep", "100"][..],
            &["required arguments were not provided", "--name"][..],
        ),
        (
            &[
                "service", "create", "--name", "x", "--mode", "foo", "busybox",
            ],
            &["possible values", "replicated", "global"],
        ),
        (&["servce", "ls"], &["similar", "service"]),
        (
            &[
                "service",
                "create",
                "--name",
                "x",
                "--replicas",
                "-1",
                "busybox",
            ],
            &["0 or more"],
        ),
        (
            &["service", "update", "--replicas", "-1", "x"],
            &["0 or more"],
        ),
    ] {
        let out = shoal(args);
        assert_eq!(out.status.code(), Some(2), "shoal {}", args.join(" "));
        one_line_error(&out);
        let err = stderr(&out);
        for w in words {
            assert!(
                err.contains(w),
                "shoal {}: no {w:?} in:\n{err}",
                args.join(" ")
            );
        }
    }
}

/// Overwrites 8 bytes in the middle of every 4 KiB page of `file` but the
/// first (the header), as a failing SD card would: the middle of the file
/// alone may be free space, which redb never reads.
fn damage(file: &std::path::Path) {
    use std::io::{Seek, SeekFrom};
    let len = std::fs::metadata(file).expect("the file to damage").len();
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    for page in (4096..len).step_by(4096) {
        f.seek(SeekFrom::Start(page + 2048)).unwrap();
        f.write_all(&[0xa5; 8]).unwrap();
    }
    f.sync_all().unwrap();
}

/// A damaged `state.redb` is refused at start with what to do, never a
/// panic (once: `entered unreachable code` in redb, exit 134, a crash loop
/// under systemd).
#[test]
fn a_damaged_store_is_refused_with_how_to_recover() {
    let mut d = Daemon::cluster();
    d.sleeper("web", &[]);
    d.wait_running("web", 1);
    assert!(d.stop().success());
    damage(&d.data_dir.join("state.redb"));
    d.spawn();
    let mut status = None;
    assert!(
        wait_until(WAIT, || {
            status = d.try_exit_status();
            status.is_some()
        }),
        "the daemon runs on a damaged store\n{}",
        d.log_tail()
    );
    let status = status.unwrap();
    assert_eq!(status.code(), Some(1), "{status}\n{}", d.log_tail());
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(!log.contains("panicked"), "{}", d.log_tail());
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{}", d.log_tail());
    assert!(
        errors[0].contains("state.redb is damaged") && errors[0].contains("To recover"),
        "{}",
        errors[0]
    );
}

/// A damaged `raft.redb` leaves the daemon up, saying what is wrong (once:
/// "this node does not run the replicated store (it is not a manager…)"),
/// and SIGTERM still stops it (once, it waited forever).
#[test]
fn a_damaged_raft_log_is_reported_and_sigterm_still_stops_the_daemon() {
    let mut d = Daemon::cluster();
    d.sleeper("web", &[]);
    d.wait_running("web", 1);
    assert!(d.stop().success());
    damage(&d.data_dir.join("raft.redb"));
    d.start_again();
    let out = d.cli(&["node", "ls"]);
    let err = one_line_error(&out);
    assert!(
        err.contains("raft.redb is damaged") && err.contains("To recover"),
        "{err}"
    );
    assert!(!err.contains("not a manager"), "{err}");
    assert!(d.stop().success(), "{}", d.log_tail());
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(!log.contains("panicked"), "{}", d.log_tail());
}

/// A damaged `agent.redb` (only a cache of the assignments) is set aside,
/// and the node runs on: its manager sends the assignments again.
#[test]
fn a_damaged_agent_state_is_set_aside_and_rebuilt() {
    let mut d = Daemon::cluster();
    d.sleeper("web", &["--replicas", "2"]);
    d.wait_running("web", 2);
    assert!(d.stop().success());
    damage(&d.data_dir.join("agent.redb"));
    d.start_again();
    assert!(
        wait_until(WAIT, || d.running("web").len() == 2
            && d.ctr_running().len() == 2),
        "the service did not run again: {}\n{}",
        d.describe("web"),
        d.log_tail()
    );
    assert!(d.data_dir.join("agent.redb.damaged").exists());
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(!log.contains("panicked"), "{}", d.log_tail());
}

/// A manager and a worker that joined it and is ready, both with the
/// busybox image, and the worker's address.
fn manager_and_worker() -> (Daemon, Daemon, String) {
    let manager = Daemon::cluster();
    let worker = Daemon::start();
    worker.load_image("busybox");
    let waddr = format!("127.0.0.1:{}", worker.port);
    let addr = format!("127.0.0.1:{}", manager.port);
    worker.cli_ok(&["join", "--token", &manager.join_token(), &addr]);
    assert!(
        wait_until(WAIT, || manager.node_status(&waddr) == "ready"),
        "the worker never became ready: {:?}",
        manager.nodes()
    );
    (manager, worker, waddr)
}

/// A worker that comes back after its tasks were replaced gets the old
/// tasks (to stop) and their replacements at once: it stops the old ones
/// before it starts the new ones, so no slot runs twice (once: 8
/// containers for 4 tasks for about 10 s). The worker vanishes without a
/// word (SIGKILL), so its tasks are replaced; a worker stopped with SIGTERM
/// says it restarts and keeps them (`a_worker_restarted_with_sigterm_…`).
#[test]
fn a_worker_back_after_its_tasks_were_replaced_never_runs_a_slot_twice() {
    let (manager, mut worker, waddr) = manager_and_worker();
    // busybox's sleep ignores SIGTERM: an old task takes its whole grace
    // period to stop, which is when a replacement could overlap it.
    manager.sleeper(
        "slots",
        &[
            "--replicas",
            "4",
            "--constraint",
            "node.role==worker",
            "--stop-grace-period",
            "5s",
        ],
    );
    assert!(
        wait_until(WAIT, || worker.ctr_running().len() == 4),
        "{}",
        manager.describe("slots")
    );
    let old = manager.running("slots");
    worker.kill9();
    assert!(
        wait_until(WAIT, || manager.node_status(&waddr) == "down"),
        "the stopped worker is not down: {:?}",
        manager.nodes()
    );
    // The replacements exist (pending: no other node may take them).
    assert!(
        wait_until(WAIT, || manager.ps("slots").len() >= 8),
        "{}",
        manager.describe("slots")
    );
    worker.start_again();
    let mut most = 0;
    let replaced = wait_until(WAIT, || {
        let on_node = worker.ctr_running();
        most = most.max(on_node.len());
        let running = manager.running("slots");
        running.len() == 4 && running.is_disjoint(&old) && on_node == running
    });
    assert!(
        replaced,
        "on the worker: {:?}\nthe managers' running: {:?}\nold: {old:?}\n{}\n{}",
        worker.ctr_running(),
        manager.running("slots"),
        manager.describe("slots"),
        worker.log_tail()
    );
    assert!(
        most <= 4,
        "{most} containers ran at once on the worker for 4 slots"
    );
}

/// A service whose spec holds `bytes` of environment, with `replicas`
/// tasks that fit no node (they are stored, and run nowhere), created
/// through the API as any client could.
fn big_service(d: &Daemon, name: &str, bytes: usize, replicas: u64) -> (u16, String) {
    let value = "x".repeat(bytes);
    let body = format!(
        r#"{{"name":"{name}","image":"busybox","replicas":{replicas},"env":["BIG={value}"],"constraints":["node.labels.nowhere==true"]}}"#
    );
    post_raw(d, "/v1/services", &body)
}

/// A service spec has a size limit, checked at the API with a clear error,
/// and nothing is stored. Once, a few 1.9 MB specs made one 14.7 MB Raft
/// message that every follower refused, for good.
#[test]
fn an_oversized_spec_is_refused_at_the_api() {
    let d = Daemon::cluster();
    let (code, reply) = big_service(&d, "huge", 2_000_000, 1);
    assert_eq!(code, 400, "{reply}");
    assert!(reply.contains("over the limit"), "{reply}");
    nothing_stored(&d, "an oversized spec");
    // Just under the limit is fine.
    let (code, reply) = big_service(&d, "big", 100 * 1024, 1);
    assert_eq!(code, 200, "{reply}");
}

/// A token whose CA digest is not the manager's (a token of another
/// cluster, or a mistyped one) is refused before anything is sent, in one
/// line of words. Once, it was rustls's debug dump, printed twice.
#[test]
fn a_token_of_another_cluster_is_refused_in_one_line_of_words() {
    let manager = Daemon::cluster();
    let joiner = Daemon::start();
    let token = manager.join_token();
    // SHOAL-1-<digest>-<secret>: change the digest's first character.
    let (head, rest) = token.split_at("SHOAL-1-".len());
    let first = if rest.starts_with('0') { '1' } else { '0' };
    let foreign = format!("{head}{first}{}", &rest[1..]);
    let addr = format!("127.0.0.1:{}", manager.port);
    let out = joiner.cli(&["join", "--token", &foreign, &addr]);
    let err = one_line_error(&out);
    assert!(
        err.contains("join refused")
            && err.contains("not a manager of the join token's cluster")
            && err.contains("does not match the join token's"),
        "the refusal must say the CA is not the token's: {err}"
    );
    assert!(
        !err.contains("OtherError") && !err.contains("Other("),
        "no debug dump: {err}"
    );
    assert_eq!(err.matches("does not match").count(), 1, "said once: {err}");
    // Nothing was written: the manager knows one node, and the joiner is
    // in no cluster.
    assert_eq!(manager.nodes().len(), 1, "{:?}", manager.nodes());
    let out = joiner.cli(&["node", "ls"]);
    assert!(!out.status.success(), "the joiner must be in no cluster");
}

/// Connections without a node certificate (the kind a join uses) are
/// bounded: one address holds at most 32 of them, and each is closed after
/// 15 s. Once, 1,000 of them that sent the HTTP/2 preface were held
/// forever (open files 33 → 1,033).
#[test]
fn connections_without_a_certificate_are_bounded_and_closed() {
    use shoal::tls::{bootstrap_client_config, JoinToken, MANAGER_SERVER_NAME};
    use tokio::io::AsyncWriteExt;

    let d = Daemon::cluster();
    let pid = d.pid();
    let open_files = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("the daemon's fds")
            .count()
    };
    let before = open_files();
    let digest = JoinToken::parse(&d.join_token())
        .expect("the worker token")
        .ca_digest();
    let tls = bootstrap_client_config(&digest).expect("bootstrap config");
    let addr = format!("127.0.0.1:{}", d.port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..200 {
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let name = rustls::pki_types::ServerName::try_from(MANAGER_SERVER_NAME.to_string())
                .expect("a server name");
            let Ok(mut s) = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
            else {
                continue;
            };
            let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            held.push(s);
        }
        held
    });
    assert!(!held.is_empty(), "no connection could be made at all");
    // Give the daemon a moment to close what is over the bound.
    assert!(
        wait_until(Duration::from_secs(10), || open_files() <= before + 32 + 8),
        "200 connections without a certificate hold {} open files (from {before})",
        open_files()
    );
    // And the ones it kept go after 15 s, though the peer keeps them open.
    assert!(
        wait_until(Duration::from_secs(30), || open_files() <= before + 4),
        "connections without a certificate still hold {} open files (from {before}) after 30 s",
        open_files()
    );
    drop(held);
    // The cluster still takes a join.
    let joiner = Daemon::start();
    let out = joiner.cli(&["join", "--token", &d.join_token(), &addr]);
    assert!(
        out.status.success(),
        "join after the flood: {}",
        stderr(&out)
    );
}

/// A manager join that cannot make the node a voter (it advertises an
/// address its leader cannot reach) says so, leaves the cluster taking
/// writes, and the node is not counted among the managers. Once such a
/// join was made a voter all the same, which stopped every write of a
/// one-manager cluster; and a ghost of it made `node promote` report 3
/// managers, and so no warning, where the quorum counted 2.
#[test]
fn a_manager_join_that_cannot_be_reached_says_so_and_is_not_counted() {
    let manager = Daemon::cluster();
    let addr = format!("127.0.0.1:{}", manager.port);
    let mut ghost = Daemon::new(CONTAINERD_SOCKET);
    // Port 1 on loopback: nothing listens there.
    ghost.extra_args = vec!["--advertise".into(), "127.0.0.1:1".into()];
    ghost.spawn();
    ghost.wait_ready().expect("the daemon starts");
    let out = ghost.cli(&["join", "--token", &manager.manager_token(), &addr]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a voting manager yet") && stderr(&out).contains("127.0.0.1:1"),
        "the join must say the node is not a voter yet, and the address it advertised: {}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("now has"),
        "a node that is not a voter was counted: {}",
        stderr(&out)
    );
    // The cluster still takes writes, with the unreachable node in it.
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "still",
        "--replicas",
        "0",
        "busybox",
    ]);
    ghost.stop();

    let worker = Daemon::start();
    worker.cli_ok(&["join", "--token", &manager.join_token(), &addr]);
    let wid = manager.node_id(&format!("127.0.0.1:{}", worker.port));
    let out = manager.cli(&["node", "promote", &wid]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the cluster now has 2 managers"),
        "promoting a worker next to one manager and a ghost makes 2 managers the quorum counts: {}",
        stderr(&out)
    );
}

/// The message `node ls` gives for the node at `addr` on `d`.
fn node_message(d: &Daemon, addr: &str) -> String {
    d.nodes()
        .iter()
        .find(|n| s(n, "addr") == addr)
        .and_then(|n| n.get("message").and_then(|m| m.as_str()))
        .unwrap_or_default()
        .to_string()
}

/// The ids of every task of `service`, history included.
fn task_ids(d: &Daemon, service: &str) -> BTreeSet<String> {
    d.ps(service)
        .iter()
        .map(|t| s(t, "id").to_string())
        .collect()
}

/// A worker whose daemon is stopped with SIGTERM (a planned restart: an
/// upgrade of shoal, a reboot) says so; the managers hold its tasks for the
/// cluster's restart grace instead of replacing them, and it finds them
/// again, with the same containers, when it is back. Once, every task of
/// a restarted worker was replaced. Past the grace they are replaced.
#[test]
fn a_worker_restarted_with_sigterm_keeps_its_tasks_for_the_grace_period() {
    let (manager, mut worker, waddr) = manager_and_worker();
    manager.sleeper(
        "held",
        &["--replicas", "2", "--constraint", "node.role==worker"],
    );
    assert!(
        wait_until(WAIT, || worker.ctr_running().len() == 2),
        "{}",
        manager.describe("held")
    );
    let tasks = task_ids(&manager, "held");
    let containers = worker.ctr_running();

    assert!(worker.stop().success(), "{}", worker.log_tail());
    assert!(
        wait_until(WAIT, || manager.node_status(&waddr) == "down"
            && node_message(&manager, &waddr).contains("restarting")),
        "the stopped worker is not down as restarting: {:?}",
        manager.nodes()
    );
    // Once the control loops have made a pass over that state (a probe on
    // the manager runs), nothing was replaced.
    manager.settle();
    assert_eq!(
        task_ids(&manager, "held"),
        tasks,
        "tasks of a restarting worker were replaced\n{}",
        manager.describe("held")
    );

    worker.start_again();
    assert!(
        wait_until(WAIT, || manager.node_status(&waddr) == "ready"),
        "the worker is not ready again: {:?}",
        manager.nodes()
    );
    assert!(
        wait_until(WAIT, || manager.running("held") == containers
            && worker.ctr_running() == containers),
        "the worker does not run its old containers again: {:?} (was {containers:?})\n{}",
        worker.ctr_running(),
        manager.describe("held")
    );
    assert_eq!(task_ids(&manager, "held"), tasks);

    // With a grace of 1s, a worker that stays away loses its tasks.
    manager.cli_ok(&["cluster", "update", "--restart-grace", "1s"]);
    assert!(worker.stop().success(), "{}", worker.log_tail());
    assert!(
        wait_until(WAIT, || task_ids(&manager, "held").len() >= 4),
        "the tasks of a worker past its restart grace were not replaced\n{}",
        manager.describe("held")
    );
    assert!(
        node_message(&manager, &waddr).contains("did not come back"),
        "{:?}",
        manager.nodes()
    );
}

/// A state of 50 MB (services near the spec limit) reaches a manager that
/// joins after the log behind it was compacted: it is sent as a snapshot,
/// in chunks, and the new manager lists every service. Once, a 3.4 MB
/// snapshot was the largest any test had sent.
#[test]
fn a_new_manager_receives_a_state_of_50_mb() {
    let m1 = Daemon::cluster();
    m1.cli_ok(&["cluster", "update", "--snapshot-interval", "100"]);
    const SERVICES: usize = 420;
    for i in 0..SERVICES {
        let (code, reply) = big_service(&m1, &format!("big{i}"), 120 * 1024, 0);
        assert_eq!(code, 200, "service {i}: {reply}");
    }
    // A snapshot is taken every 100 entries: small writes until one holds
    // all of the above.
    let snapshot = m1.data_dir.join("raft-snapshot");
    let size = || std::fs::metadata(&snapshot).map_or(0, |m| m.len());
    let mut fillers = 0;
    assert!(
        wait_until(WAIT, || {
            fillers += 1;
            let name = format!("filler{fillers}");
            let out = m1.create_empty(&name, &[]);
            assert!(out.status.success(), "{}", stderr(&out));
            size() >= 50_000_000
        }),
        "the snapshot is {} bytes\n{}",
        size(),
        m1.log_tail()
    );
    let all = common::managers::service_names(&m1);
    assert_eq!(all.len(), SERVICES + fillers);
    eprintln!("snapshot: {} bytes", size());
    let m2 = Daemon::start();
    let joined = std::time::Instant::now();
    common::managers::join_manager(&m2, &m1);
    let listed = || common::managers::try_service_names(&m2).unwrap_or_default();
    // About a minute in a debug build on 2 cores; more beside other tests.
    assert!(
        wait_until(Duration::from_secs(300), || listed() == all),
        "the new manager lists {} of {} services\n{}",
        listed().len(),
        all.len(),
        m2.log_tail()
    );
    eprintln!(
        "the new manager listed every service {:?} after its join began",
        joined.elapsed()
    );
    let log = std::fs::read_to_string(&m2.log).unwrap_or_default();
    assert!(
        log.contains("installed a snapshot"),
        "the new manager caught up without a snapshot\n{}",
        m2.log_tail()
    );
}

/// When containerd goes away under a running node, its tasks are neither
/// failed nor replaced, the node says so and is given no new task; when
/// containerd is back, the node reconciles on its own: a container that
/// died meanwhile is reported and replaced, the others run on. Once, 1,900
/// rejected replacement tasks were made in 150 s, and dead containers kept
/// until the daemon restarted.
#[test]
fn a_node_whose_containerd_goes_away_keeps_its_tasks_and_reconciles_when_it_is_back() {
    let mut containerd = OwnContainerd::start();
    let mut d = Daemon::new(&containerd.socket);
    d.spawn();
    d.wait_ready().expect("the daemon starts");
    d.cli_ok(&["init"]);
    d.load_image("busybox");
    d.sleeper("web", &["--replicas", "2", "--restart-delay", "0s"]);
    let running = d.wait_running("web", 2);
    let tasks = task_ids(&d, "web");
    let pids = d.ctr_tasks();
    let addr = format!("127.0.0.1:{}", d.port);
    let runtime_error = |d: &Daemon| {
        d.nodes()
            .iter()
            .find(|n| s(n, "addr") == addr)
            .and_then(|n| n.get("runtime_error").and_then(|m| m.as_str()))
            .map(str::to_string)
    };

    containerd.kill();
    // One of the two dies while containerd is away.
    let (victim, (pid, _)) = pids.iter().next().expect("two tasks");
    let victim = victim.clone();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    assert!(
        wait_until(WAIT, || runtime_error(&d).is_some()),
        "the node does not say it cannot reach containerd: {:?}",
        d.nodes()
    );
    // A new service is not given to the node.
    d.sleeper("later", &[]);
    assert!(
        wait_until(WAIT, || stdout(&d.cli(&["service", "ps", "later"]))
            .contains("cannot reach its container runtime")),
        "a task waits for no reason while the runtime is away:\n{}",
        stdout(&d.cli(&["service", "ps", "later"]))
    );
    // Nothing was failed or replaced meanwhile.
    assert_eq!(
        task_ids(&d, "web"),
        tasks,
        "tasks were replaced while containerd was away\n{}",
        stdout(&d.cli(&["service", "ps", "web"]))
    );
    assert_eq!(d.running("web"), running);

    containerd.up();
    assert!(
        wait_until(WAIT, || runtime_error(&d).is_none()),
        "the node still says it cannot reach containerd: {:?}",
        d.nodes()
    );
    // The dead one is reported and replaced; the other runs on; the new
    // service runs.
    assert!(
        wait_until(WAIT, || {
            let now = d.running("web");
            now.len() == 2 && !now.contains(&victim) && now.is_subset(&d.ctr_running())
        }),
        "the task that died while containerd was away was not replaced\n{}",
        d.describe("web")
    );
    let survivor: Vec<&String> = running.iter().filter(|c| **c != victim).collect();
    assert!(
        survivor.iter().all(|c| d.running("web").contains(*c)),
        "the task that kept running was replaced\n{}",
        d.describe("web")
    );
    d.wait_running("later", 1);
}

/// A tmpfs mounted at a path for the life of the value.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs: {}",
            stderr(&out)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A full disk fails writes with a clear error that says their outcome is
/// unknown, and the manager recovers on its own once there is space again,
/// without a restart, keeping every write it acknowledged. Once, every
/// request failed after the disk had been freed, until a restart.
#[test]
fn a_full_disk_fails_writes_clearly_and_the_manager_recovers_when_space_returns() {
    let mut d = Daemon::new(CONTAINERD_SOCKET);
    let _disk = Tmpfs::mount(&d.data_dir, "8m");
    d.spawn();
    d.wait_ready().expect("the daemon starts");
    d.cli_ok(&["init"]);
    let fill = d.data_dir.join("fill");
    std::fs::write(&fill, vec![0u8; 7 * 1024 * 1024]).expect("fill the disk");
    let env = format!("X={}", "a".repeat(60_000));
    let mut acked = BTreeSet::new();
    let mut error = String::new();
    for i in 0..100 {
        let name = format!("s{i}");
        let out = d.create_empty(&name, &["--env", &env]);
        if out.status.success() {
            acked.insert(name);
        } else {
            error = stderr(&out);
            break;
        }
    }
    assert!(
        error.contains("No space left on device") && error.contains("look before writing it again"),
        "a write on a full disk must fail saying so, and that its outcome is unknown: {error:?}"
    );
    std::fs::remove_file(&fill).expect("free the disk");
    assert!(
        wait_until(WAIT, || d
            .cli(&[
                "service",
                "create",
                "--name",
                "after",
                "--replicas",
                "0",
                "busybox"
            ])
            .status
            .success()),
        "the manager does not take writes again once there is space\n{}",
        d.log_tail()
    );
    assert!(
        d.try_exit_status().is_none(),
        "the daemon exited\n{}",
        d.log_tail()
    );
    let names = common::managers::service_names(&d);
    let lost: Vec<&String> = acked.difference(&names).collect();
    assert!(lost.is_empty(), "acknowledged writes were lost: {lost:?}");
    assert!(names.contains("after"));
}

/// Secret payloads that no CLI sends: too big for the API, not base64,
/// or just past the limit once decoded. Each is refused with a JSON
/// message and nothing is stored; just at the limit is taken.
#[test]
fn oversized_or_malformed_secrets_are_refused_and_nothing_is_stored() {
    use base64::Engine;
    let d = Daemon::cluster();
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![b'x'; n]);
    let post = |name: &str, data: &str| {
        post_raw(
            &d,
            "/v1/secrets",
            &format!(r#"{{"name":"{name}","data":"{data}"}}"#),
        )
    };
    for (name, data, want) in [
        ("huge", b64(3 << 20), ""),
        ("over", b64(500 * 1024 + 1), "at most 500 KiB"),
        ("garbled", "not*base64".to_string(), "not base64"),
    ] {
        let (code, reply) = post(name, &data);
        assert!((400..500).contains(&code), "{name}: {code} {reply}");
        let json: serde_json::Value = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {reply}"));
        assert!(
            json["message"].as_str().is_some_and(|m| m.contains(want)),
            "{name}: {reply}"
        );
    }
    let listed = d.cli_json(&["secret", "ls"]);
    assert_eq!(listed, serde_json::json!([]), "a refused secret was stored");
    let (code, reply) = post("full", &b64(500 * 1024));
    assert_eq!(code, 200, "{reply}");
}

/// An exec connection that sends what is not a frame of the protocol, or
/// a frame larger than any, gets an error (or is closed), and the daemon
/// serves on; a plain request without the upgrade is refused with JSON.
#[test]
fn garbage_on_an_exec_connection_is_refused_and_the_daemon_serves_on() {
    let mut d = Daemon::cluster();
    let (code, body) = post_raw(&d, "/v1/exec", "{}");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("upgraded to shoal-exec"), "{body}");
    let upgraded = || {
        let mut s = UnixStream::connect(&d.socket).expect("connect to the control socket");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(
            b"POST /v1/exec HTTP/1.1\r\nHost: shoal\r\nConnection: upgrade\r\n\
              Upgrade: shoal-exec\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).expect("read the switch");
            head.push(byte[0]);
        }
        assert!(
            String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        s
    };
    // A frame of noise: an error frame comes back, naming the problem.
    let mut s = upgraded();
    let noise = b"\xffnot a message at all";
    s.write_all(&(noise.len() as u32).to_be_bytes()).unwrap();
    s.write_all(noise).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.len() > 4, "no answer to a bad frame");
    let text = String::from_utf8_lossy(&reply[4..]).to_lowercase();
    assert!(text.contains("format") || text.contains("decode"), "{text}");
    // A frame said to be 2 GiB: the connection is closed, nothing read.
    let mut s = upgraded();
    s.write_all(&0x8000_0000u32.to_be_bytes()).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    // The daemon serves on.
    d.cli_ok(&["service", "ls"]);
    assert!(d.try_exit_status().is_none(), "the daemon exited");
}

/// A stack deploy is checked whole before anything is written: a bad
/// service, a bad secret, a cycle, a name another service holds, a bad
/// stack name, too many services or a body that is not JSON are refused
/// with JSON that says why, and leave no network, secret or service.
#[test]
fn a_bad_stack_is_refused_whole_and_leaves_nothing() {
    let d = Daemon::cluster();
    d.sleeper("s_taken", &["--replicas", "0"]);
    let put = |stack: &str, body: &str| {
        request_raw(
            &d,
            "PUT",
            &format!("/v1/stacks/{stack}"),
            "application/json",
            body,
        )
    };
    let ok_service = r#"{"name":"s_web","image":"busybox","networks":["s_net"]}"#;
    let net = r#""networks":[{"name":"s_net"}]"#;
    let many: Vec<String> = (0..1001)
        .map(|i| format!(r#"{{"name":"s_{i}","image":"busybox"}}"#))
        .collect();
    let many = format!(r#"{{"services":[{}]}}"#, many.join(","));
    for (what, stack, body, want) in [
        (
            "a bad mode",
            "s",
            format!(
                r#"{{"services":[{ok_service},{{"name":"s_x","image":"busybox","mode":"sideways"}}],{net}}}"#
            ),
            "invalid mode",
        ),
        (
            "a bad secret",
            "s",
            format!(
                r#"{{"services":[{ok_service}],{net},"secrets":[{{"name":"s_pw","data":"not*base64"}}]}}"#
            ),
            "not base64",
        ),
        (
            "a secret that is nowhere",
            "s",
            format!(
                r#"{{"services":[{ok_service},{{"name":"s_y","image":"busybox","secrets":[{{"source":"nope"}}]}}],{net}}}"#
            ),
            "service s_y: secret nope not found",
        ),
        (
            "a cycle",
            "s",
            format!(
                r#"{{"services":[{{"name":"s_a","image":"busybox","depends_on":[{{"service":"s_b"}}]}},{{"name":"s_b","image":"busybox","depends_on":[{{"service":"s_a"}}]}}],{net}}}"#
            ),
            "dependency cycle: s_a -> s_b -> s_a",
        ),
        (
            "a name another service holds",
            "s",
            format!(
                r#"{{"services":[{ok_service},{{"name":"s_taken","image":"busybox"}}],{net}}}"#
            ),
            "service s_taken exists and is not part of stack s",
        ),
        (
            "a bad stack name",
            "-s",
            format!(r#"{{"services":[{ok_service}]}}"#),
            "invalid stack name",
        ),
        ("too many services", "s", many, "at most 1000 services"),
        (
            "an unknown image resolution",
            "s",
            format!(r#"{{"services":[{ok_service}],"resolve_image":"sometimes"}}"#),
            "unknown variant `sometimes`",
        ),
        ("not JSON", "s", "{services: [".to_string(), ""),
    ] {
        let (code, reply) = put(stack, &body);
        assert!((400..500).contains(&code), "{what}: {code} {reply}");
        let json: serde_json::Value = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {reply}"));
        assert!(
            json["message"].as_str().is_some_and(|m| m.contains(want)),
            "{what}: {reply}"
        );
    }
    let services: Vec<String> = d
        .services()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(services, ["s_taken"]);
    let networks = d.cli_ok(&["network", "ls"]);
    assert!(!networks.contains("s_net"), "{networks}");
    assert_eq!(d.cli_json(&["secret", "ls"]), serde_json::json!([]));
    // The same stack, whole and right, is taken.
    let (code, reply) = put("s", &format!(r#"{{"services":[{ok_service}],{net}}}"#));
    assert_eq!(code, 200, "{reply}");
}
