//! systemd readiness (`Type=notify`, systemd/shoal.service): a real `shoal
//! daemon` is given a `NOTIFY_SOCKET` of its own, a unix datagram socket this
//! test binds in a temp dir, exactly as systemd would hand it one. The test
//! checks that `READY=1` arrives, once, and only when the daemon already
//! answers on its control socket; and that SIGTERM brings `STOPPING=1` and a
//! clean exit.
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`), like
//! every daemon test: without them it fails, saying so. The daemon gets its
//! own containerd namespace, data dir and port from the shared harness, which
//! also removes them afterwards, even when the test fails.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::harness::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The daemon process this test starts itself (the harness's own spawn has
/// no way to add `NOTIFY_SOCKET`). Dropped before the harness's `Daemon`,
/// so the process is gone before its containerd namespace is removed.
struct Process(Option<Child>);

impl Process {
    fn id(&self) -> u32 {
        self.0.as_ref().expect("daemon running").id()
    }

    /// The exit status if the daemon has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.0.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            self.0 = None;
        }
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            stop_quietly(child);
        }
    }
}

/// Starts `shoal daemon` with the harness's dirs, socket, namespace and port,
/// and `NOTIFY_SOCKET` set. Output goes to the harness's daemon log, whose
/// end the harness prints when the test fails.
fn spawn_daemon(d: &Daemon, notify_socket: &Path) -> Process {
    let addr = format!("127.0.0.1:{}", d.port);
    let child = d
        .daemon_command(Command::new(SHOAL), &addr)
        .env("NOTIFY_SOCKET", notify_socket)
        .spawn()
        .expect("start shoal daemon");
    Process(Some(child))
}

/// Waits for the next notification datagram, checking every 100 ms that the
/// daemon still runs. Panics on timeout, or if the daemon exits without
/// sending anything (a datagram sent just before exiting is still read).
fn next_message(sock: &UnixDatagram, daemon: &mut Process, want: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    loop {
        let exited = daemon.exited();
        match sock.recv(&mut buf) {
            Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the notify socket: {e}"),
        }
        if let Some(status) = exited {
            panic!("shoal daemon exited ({status}) without sending {want}");
        }
        assert!(
            Instant::now() < deadline,
            "no {want} on NOTIFY_SOCKET within {WAIT:?} (src/daemon.rs sends it \
             through crate::notify)"
        );
    }
}

/// The notification's `KEY=VALUE` lines (sd_notify's format).
fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l.trim() == line)
}

/// One plain HTTP request on the control socket; returns the status line.
/// Any HTTP answer proves the daemon serves its API.
fn control_status_line(socket: &Path) -> Result<String, String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /v1/images HTTP/1.1\r\nHost: shoal\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write request: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read answer: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let first = text.lines().next().unwrap_or("").to_string();
    if first.starts_with("HTTP/1.1 ") {
        Ok(first)
    } else {
        Err(format!("not an HTTP answer: {text:?}"))
    }
}

#[test]
fn daemon_notifies_systemd_when_ready_and_when_stopping() {
    require_root_and_containerd();
    let d = Daemon::new(CONTAINERD_SOCKET);
    let notify_path = d.dir().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set read timeout");

    let mut daemon = spawn_daemon(&d, &notify_path);

    // READY=1, and by then the control socket must already answer.
    let ready = next_message(&notify, &mut daemon, "READY=1");
    assert!(
        has_line(&ready, "READY=1"),
        "the first notification is not READY=1: {ready:?}"
    );
    if let Err(e) = control_status_line(&d.socket) {
        panic!("READY=1 was sent but the control socket does not serve: {e}");
    }

    // Exactly once: nothing else arrives while the daemon idles.
    std::thread::sleep(Duration::from_secs(1));
    let mut buf = [0u8; 4096];
    if let Ok(n) = notify.recv(&mut buf) {
        let extra = String::from_utf8_lossy(&buf[..n]);
        assert!(!has_line(&extra, "READY=1"), "READY=1 was sent twice");
    }

    // SIGTERM, as `systemctl stop` sends it: STOPPING=1, then a clean exit.
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
    let stopping = next_message(&notify, &mut daemon, "STOPPING=1");
    assert!(
        has_line(&stopping, "STOPPING=1"),
        "after SIGTERM the daemon sent {stopping:?}, not STOPPING=1"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = daemon.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "shoal daemon did not exit within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "shoal daemon exited with {status} after SIGTERM"
    );
}
