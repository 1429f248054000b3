//! `shoal exec` on real containerd, on two nodes: a command in a task on
//! the worker, run from the manager's CLI, with its output, its stderr
//! apart and its exit code; input with `-i`; a terminal with `-it`
//! (driven through a pseudo-terminal by util-linux's `script`); logged on
//! the node that ran it; refusals with the reason.
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::harness::*;

#[test]
fn exec_runs_in_a_task_on_its_node_and_returns_the_exit_code() {
    let manager = Daemon::cluster();
    let worker = Daemon::start();
    worker.load_image("busybox");
    let (_, wid) = worker.join_as_worker(&manager);
    let on_worker = format!("node.id=={wid}");
    manager.sleeper("web", &["--constraint", &on_worker]);
    assert!(
        wait_until(WAIT, || manager.running("web").len() == 1),
        "{}",
        manager.describe("web")
    );

    // `id` in the task, on the worker, from the manager's CLI.
    let out = manager.cli(&["exec", "web.1", "id"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("uid=0(root)"), "{}", stdout(&out));
    // Its exit code is exec's; its stderr stays apart.
    let out = manager.cli(&[
        "exec",
        "web.1",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    // By task id too, with a user, a directory and a variable of its own.
    let id = s(&manager.ps("web")[0], "id").to_string();
    let out = manager.cli(&[
        "exec",
        "-u",
        "1234:5678",
        "-w",
        "/tmp",
        "-e",
        "GREETING=hi",
        &id[..8],
        "sh",
        "-c",
        "id -u; id -g; pwd; echo $GREETING",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1234\n5678\n/tmp\nhi\n");

    // Input, with -i.
    let mut child = Command::new(SHOAL)
        .args(["--socket", manager.socket.to_str().unwrap()])
        .args(["exec", "-i", "web.1", "sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let out = finish(child, Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "SHOUT\n");

    // Logged on the node that ran it, with the command.
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&worker.log)
                .is_ok_and(|l| l.contains("exec into a task") && l.contains("tr a-z A-Z"))
        }),
        "the worker did not log the exec"
    );

    // A client that goes takes its process with it.
    let mut child = Command::new(SHOAL)
        .args(["--socket", manager.socket.to_str().unwrap()])
        .args(["exec", "web.1", "sleep", "4321"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = || stdout(&manager.cli(&["exec", "web.1", "ps"])).contains("sleep 4321");
    assert!(wait_until(WAIT, sleeping), "the exec never ran");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_until(WAIT, || !sleeping()),
        "the process outlived its client"
    );

    // What cannot run is refused, saying why.
    for (args, want) in [
        (
            &["exec", "nope.1", "id"][..],
            "no task of nope.1 is running",
        ),
        (&["exec", "zzzzzzzz", "id"][..], "no such task"),
        (&["exec", "web.1", "/no/such/binary"][..], "no such file"),
    ] {
        let out = manager.cli(args);
        assert!(!out.status.success(), "{args:?} was taken");
        assert!(
            stderr(&out).to_lowercase().contains(want),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn exec_it_gives_the_process_a_terminal() {
    let d = Daemon::cluster();
    d.sleeper("web", &[]);
    d.wait_running("web", 1);
    let cmd = shell_words::join([
        SHOAL,
        "--socket",
        d.socket.to_str().unwrap(),
        "exec",
        "-it",
        "web.1",
        "sh",
    ]);
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(b"tty; echo answer=$((6*7)); exit 5\n")
        .unwrap();
    let out = finish(child, Duration::from_secs(60));
    drop(input);
    let text = stdout(&out);
    assert!(text.contains("/dev/pts/"), "no terminal: {text:?}");
    assert!(text.contains("answer=42"), "{text:?}");
    assert_eq!(out.status.code(), Some(5), "{text:?} {}", stderr(&out));
}
