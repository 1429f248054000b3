//! `service logs`: the content of stdout and stderr, kept apart (the
//! container's stdout on the CLI's stdout, its stderr on the CLI's stderr),
//! `--tail`, `--timestamps`, `--follow`, every replica's lines, and logs that
//! keep flowing across a daemon restart.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc;
use std::time::Instant;

use common::harness::*;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn logs(d: &Daemon, args: &[&str]) -> (String, String) {
    let mut all = vec!["service", "logs"];
    all.extend(args);
    let out = d.cli(&all);
    assert!(
        out.status.success(),
        "`shoal {}` failed: {}\n{}",
        all.join(" "),
        out.status,
        stderr(&out)
    );
    (stdout(&out), stderr(&out))
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn stdout_and_stderr_tail_and_timestamps() {
    let d = Daemon::cluster();
    // Two stderr lines first, then (a second later) five stdout lines.
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "echo oops-1 >&2; echo oops-2 >&2; sleep 1; \
         for i in 1 2 3 4 5; do echo line-$i; done; exec sleep 3600",
    ]);
    d.wait_running("talk", 1);
    assert!(
        wait_until(WAIT, || {
            let (out, err) = logs(&d, &["talk"]);
            out.contains("line-5") && err.contains("oops-2")
        }),
        "service logs must show what the container printed: {:?}",
        logs(&d, &["talk"])
    );

    let (out, err) = logs(&d, &["talk"]);
    let out_lines = lines(&out);
    assert_eq!(out_lines.len(), 5, "stdout: {out}");
    for (i, line) in out_lines.iter().enumerate() {
        assert!(
            line.contains(&format!("line-{}", i + 1)),
            "stdout lines in order: {out}"
        );
    }
    let err_lines = lines(&err);
    assert_eq!(err_lines.len(), 2, "stderr: {err}");
    assert!(err_lines[0].contains("oops-1") && err_lines[1].contains("oops-2"));
    assert!(
        !out.contains("oops"),
        "stderr lines leaked to stdout: {out}"
    );
    assert!(
        !err.contains("line-"),
        "stdout lines leaked to stderr: {err}"
    );

    // --tail counts lines from the end of the whole log, both streams.
    let (out, err) = logs(&d, &["--tail", "2", "talk"]);
    assert_eq!(
        lines(&out).len() + lines(&err).len(),
        2,
        "--tail 2 shows 2 lines: stdout {out:?} stderr {err:?}"
    );
    assert!(out.contains("line-4") && out.contains("line-5"), "{out}");
    let (out, err) = logs(&d, &["--tail", "6", "talk"]);
    assert_eq!(lines(&out).len(), 5, "{out}");
    assert!(err.contains("oops-2") && !err.contains("oops-1"), "{err}");
    let (out, err) = logs(&d, &["--tail", "0", "talk"]);
    assert!(
        lines(&out).is_empty() && lines(&err).is_empty(),
        "{out}{err}"
    );

    // --timestamps: every line carries its RFC 3339 time, close to now.
    let (out, err) = logs(&d, &["--timestamps", "talk"]);
    let now = OffsetDateTime::now_utc();
    for line in lines(&out).into_iter().chain(lines(&err)) {
        let stamp = line
            .split_whitespace()
            .find_map(|w| OffsetDateTime::parse(w, &Rfc3339).ok());
        let stamp = stamp.unwrap_or_else(|| panic!("no RFC 3339 timestamp in {line:?}"));
        let age = (now - stamp).abs();
        assert!(
            age < time::Duration::minutes(10),
            "timestamp {stamp} is not recent: {line}"
        );
    }
    assert_eq!(lines(&out).len(), 5);
    assert_eq!(lines(&err).len(), 2);
}

/// Reads a pipe line by line on a thread, into a channel.
fn line_reader(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Kills the `--follow` CLI when the test ends, however it ends.
struct Follower(Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The highest N among `prefix-N` words in `text`.
fn highest(text: &str, prefix: &str) -> u64 {
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix(prefix)?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Waits until a line with `prefix-N`, N > `after`, comes out of `rx`.
fn wait_for_new(rx: &mpsc::Receiver<String>, prefix: &str, after: u64) -> bool {
    let deadline = Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if highest(&line, prefix) > after => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

const TICKER: &str =
    "i=0; while true; do i=$((i+1)); echo tick-$i; echo tock-$i >&2; sleep 1; done";

#[test]
fn follow_sees_new_lines_arrive() {
    let d = Daemon::cluster();
    d.cli_ok(&[
        "service", "create", "--name", "ticker", "busybox", "sh", "-c", TICKER,
    ]);
    d.wait_running("ticker", 1);
    assert!(wait_until(WAIT, || highest(
        &logs(&d, &["ticker"]).0,
        "tick-"
    ) >= 2));
    let seen = highest(&logs(&d, &["ticker"]).0, "tick-");

    let mut child = d.cli_spawn(&["service", "logs", "--follow", "ticker"]);
    let out = line_reader(child.stdout.take().unwrap());
    let err = line_reader(child.stderr.take().unwrap());
    let mut follower = Follower(child);
    // A line printed after the follower started (seen + 1 may have been
    // printed before) must arrive on each stream while it runs.
    assert!(
        wait_for_new(&out, "tick-", seen + 1),
        "--follow must show new stdout lines as they are printed"
    );
    assert!(
        wait_for_new(&err, "tock-", seen + 1),
        "--follow must show new stderr lines on stderr"
    );
    assert!(
        follower.0.try_wait().unwrap().is_none(),
        "--follow must keep running"
    );
}

#[test]
fn logs_show_every_replica() {
    let d = Daemon::cluster();
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "hello",
        "--replicas",
        "2",
        "busybox",
        "sh",
        "-c",
        "echo hello from $(hostname); exec sleep 3600",
    ]);
    d.wait_running("hello", 2);
    let mut hosts = Vec::new();
    let ok = wait_until(WAIT, || {
        let (out, _) = logs(&d, &["hello"]);
        hosts = out
            .lines()
            .filter_map(|l| Some(l.split("hello from ").nth(1)?.trim().to_string()))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts.len() == 2
    });
    assert!(
        ok,
        "both replicas' lines, each with its own hostname: {hosts:?}"
    );
}

#[test]
fn logs_keep_flowing_across_a_daemon_restart() {
    let mut d = Daemon::cluster();
    d.cli_ok(&[
        "service", "create", "--name", "ticker", "busybox", "sh", "-c", TICKER,
    ]);
    let ids = d.wait_running("ticker", 1);
    assert!(wait_until(WAIT, || highest(
        &logs(&d, &["ticker"]).0,
        "tick-"
    ) >= 2));
    d.restart();
    let before = highest(&logs(&d, &["ticker"]).0, "tick-");
    assert!(before >= 2, "logs written before the restart are kept");
    assert!(
        wait_until(WAIT, || highest(&logs(&d, &["ticker"]).0, "tick-")
            >= before + 3),
        "the adopted container's new lines must reach service logs\n{}",
        d.describe("ticker")
    );
    assert_eq!(d.running("ticker"), ids, "the same container, adopted");
    let (out, _) = logs(&d, &["ticker"]);
    let ticks: Vec<u64> = out
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("tick-")?.parse().ok())
        .collect();
    let expected: Vec<u64> = (1..=ticks.len() as u64).collect();
    assert_eq!(
        ticks, expected,
        "no line lost or repeated across the restart"
    );
}
