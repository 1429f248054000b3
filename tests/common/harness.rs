//! The integration-test harness: one real `shoal daemon` per test, talking to
//! the machine's real containerd.
//!
//! A [`Daemon`] owns a temp dir (data dir, control socket, daemon log, image
//! tarballs), a containerd namespace of its own and a free loopback port, so
//! tests run side by side (`--test-threads=2`) without seeing each other.
//! Tests drive it only as a user would: through the `shoal` CLI, and they
//! check what really runs through containerd itself (`ctr`), not only through
//! shoal. On drop, also after a panic, the daemon is stopped and everything in
//! its namespace (tasks, containers, snapshots, images, content, leases) is
//! removed, then the namespace itself.
//!
//! Everything here may panic: it is test code. When a test panics, the
//! daemon's drop prints the end of its log, so the failure can be read from
//! `cargo test`'s output.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The containerd the tests use, as `.ci/start-containerd` starts it.
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// The shoal binary cargo built for this test run (one shared debug build).
pub const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
/// The name the test image is loaded under; `busybox` on the command line
/// normalizes to it.
pub const BUSYBOX: &str = "docker.io/library/busybox:latest";
/// A generous bound for anything to converge, with two tests running at once
/// on a two-core machine.
pub const WAIT: Duration = Duration::from_secs(60);
/// No single CLI or `ctr` call may take longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopped daemon may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Panics with a clear message unless the tests can run here: they start real
/// containers, which needs root and a running containerd.
pub fn require_root_and_containerd() {
    let root = nix::unistd::geteuid().is_root();
    let up = fs::metadata(CONTAINERD_SOCKET)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    if !root || !up {
        panic!(
            "this test needs root and a running containerd: run `bash .ci/start-containerd` \
             (as root), then run the tests as root (running as root: {root}; \
             {CONTAINERD_SOCKET} present: {up})"
        );
    }
}

/// This machine's arch with the OCI name images use (`amd64`, `arm64`, `arm`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// This machine's hostname, as a node reports it.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read /proc/sys/kernel/hostname")
        .trim()
        .to_string()
}

/// Polls `cond` every 200 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a command to completion with a time limit; `Err` if it could not be
/// started or did not finish in time (it is then killed).
pub fn try_run(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {desc}: {e}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{desc} did not finish within {timeout:?}"));
            }
            Err(e) => return Err(format!("waiting for {desc}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// Waits up to `timeout` for a child started with piped output (e.g. by
/// [`Daemon::cli_spawn`]) to exit, and collects its output. Kills it and
/// panics if it does not exit in time.
pub fn finish(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("command did not exit within {timeout:?}");
            }
        }
    }
    child.wait_with_output().expect("collect output")
}

/// Runs a command with the standard time limit; panics if it cannot run.
pub fn run(cmd: &mut Command) -> Output {
    try_run(cmd, CALL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the shoal CLI with no `--socket` (and no `SHOAL_SOCKET`) given by us.
pub fn shoal(args: &[&str]) -> Output {
    run(Command::new(SHOAL).env_remove("SHOAL_SOCKET").args(args))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Checks the CLI's error contract: a non-zero exit and one line on
/// stderr, starting with `error: `, which is returned. A usage error (exit
/// code 2) is clap's whole message: its `error: ` line first, then the
/// allowed values, a suggestion or the usage line.
pub fn one_line_error(out: &Output) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected a failure, got {}\nstdout:\n{}\nstderr:\n{err}",
        out.status,
        stdout(out)
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let usage_error = out.status.code() == Some(2);
    assert!(
        lines.first().is_some_and(|l| l.starts_with("error: "))
            && (lines.len() == 1 || usage_error)
            && !err.contains("panicked"),
        "expected one stderr line starting with `error: ` (or a usage error), got {} line(s), {}:\n{err}",
        lines.len(),
        out.status
    );
    lines[0].to_string()
}

/// The string at `key` of a JSON object, or "" when missing or not a string.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Test clusters take their address pools from 10.100.0.0/16 to
/// 10.199.0.0/16, one per daemon in turn.
const POOL_FIRST: u32 = 100;
const POOL_COUNT: u32 = 100;

/// A real `shoal daemon` with its own dirs, socket, port and containerd
/// namespace. Dropping it stops the daemon and removes all it made.
pub struct Daemon {
    dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    /// The daemon's stdout and stderr, appended across restarts.
    pub log: PathBuf,
    pub namespace: String,
    pub containerd: String,
    pub port: u16,
    /// More `shoal daemon` flags, for tests of optional features.
    pub extra_args: Vec<String>,
    /// The shoal binary the daemon runs (another build, e.g. for aarch64
    /// under qemu).
    pub binary: PathBuf,
    /// The shoal binary the CLI helpers run: this build's, or the
    /// daemon's own for a daemon of an older release (a node's CLI and
    /// daemon are one binary).
    pub cli_binary: PathBuf,
    /// The address pool this daemon's `init` gives its cluster: one of its
    /// own, as the bridges of clusters that tests run side by side on one
    /// machine must not share subnets.
    pub addr_pool: String,
    child: Option<Child>,
}

impl Daemon {
    /// A daemon on the machine's containerd, answering on its socket, with no
    /// cluster yet (`shoal init` not run).
    pub fn start() -> Daemon {
        require_root_and_containerd();
        let mut d = Daemon::new(CONTAINERD_SOCKET);
        d.spawn();
        if let Err(e) = d.wait_ready() {
            panic!("{e}");
        }
        d
    }

    /// Like [`Daemon::start`], serving Prometheus metrics on a loopback
    /// port of its own (`--metrics-addr`); returns it and that address.
    pub fn with_metrics() -> (Daemon, String) {
        require_root_and_containerd();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free loopback port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut d = Daemon::new(CONTAINERD_SOCKET);
        d.extra_args = vec!["--metrics-addr".into(), addr.clone()];
        d.spawn();
        if let Err(e) = d.wait_ready() {
            panic!("{e}");
        }
        (d, addr)
    }

    /// A daemon that is initialized (`shoal init`) and has the busybox test
    /// image loaded as [`BUSYBOX`]: ready for `service create … busybox …`.
    pub fn cluster() -> Daemon {
        let d = Daemon::start();
        d.cli_ok(&["init"]);
        d.load_image("busybox");
        d
    }

    /// Prepares a daemon (dirs, namespace, port) without starting it, to use
    /// with [`Daemon::spawn`] and [`Daemon::wait_ready`] when a test wants to
    /// see a daemon fail to start. `containerd` is the socket it is given.
    pub fn new(containerd: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("shoal-test-")
            .tempdir()
            .expect("create temp dir");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free loopback port")
            .port();
        Daemon {
            data_dir: dir.path().join("data"),
            socket: dir.path().join("shoal.sock"),
            log: dir.path().join("daemon.log"),
            namespace: format!(
                "shoal-test-{}-{n}-{}",
                std::process::id(),
                nanos % 1_000_000
            ),
            containerd: containerd.to_string(),
            port,
            dir,
            extra_args: Vec::new(),
            binary: PathBuf::from(SHOAL),
            cli_binary: PathBuf::from(SHOAL),
            addr_pool: format!("10.{}.0.0/16", POOL_FIRST + n % POOL_COUNT),
            child: None,
        }
    }

    /// The temp dir this daemon owns (removed on drop).
    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon runs").id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the daemon process in the background, its output appended to
    /// [`Daemon::log`]. Does not wait for it.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let addr = format!("127.0.0.1:{}", self.port);
        let mut cmd = self.daemon_command(Command::new(&self.binary), &addr);
        self.child = Some(cmd.spawn().expect("start shoal daemon"));
    }

    /// `cmd` (the shoal binary, or a command that execs it, such as
    /// `nsenter`) made into this daemon: its dirs, socket, containerd
    /// namespace and extra flags, listening on and advertising `addr`, with
    /// its output appended to [`Daemon::log`].
    pub fn daemon_command(&self, mut cmd: Command, addr: &str) -> Command {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open daemon log");
        cmd.arg("daemon")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--containerd")
            .arg(&self.containerd)
            .arg("--containerd-namespace")
            .arg(&self.namespace)
            .arg("--listen")
            .arg(addr);
        // A test may advertise another address (one nobody can reach).
        if !self.extra_args.iter().any(|a| a == "--advertise") {
            cmd.arg("--advertise").arg(addr);
        }
        cmd.args(&self.extra_args)
            .env_remove("SHOAL_SOCKET")
            // Daemons that share a machine cannot share WireGuard's port.
            .env("SHOAL_OVERLAY_PORT", "0")
            // The daemon's log filter; set SHOAL_LOG to change it.
            .env(
                "SHOAL_LOG",
                std::env::var("SHOAL_LOG").unwrap_or_else(|_| "info,shoal=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log);
        cmd
    }

    /// Waits until the daemon accepts connections on its socket. `Err` (with
    /// why) if it exits first or does not come up within [`WAIT`].
    pub fn wait_ready(&mut self) -> Result<(), String> {
        wait_for_socket(&mut self.child, &self.socket)
    }

    /// The daemon's exit status if it has exited (the process is then reaped
    /// and forgotten), None while it runs.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// Stops the daemon with SIGTERM, as systemd would, and waits for it to
    /// exit. Returns its exit status. Containers are meant to keep running.
    pub fn stop(&mut self) -> ExitStatus {
        terminate(self.child.take().expect("daemon is not running"))
    }

    /// Starts the daemon again on the same data dir, socket, namespace and
    /// port, and waits until it answers.
    pub fn start_again(&mut self) {
        self.spawn();
        if let Err(e) = self.wait_ready() {
            panic!("{e}");
        }
    }

    /// SIGTERM, wait, start again on the same dirs. Asserts the stop was
    /// clean (exit status 0).
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "shoal daemon did not stop cleanly on SIGTERM: {status}"
        );
        self.start_again();
    }

    /// The last lines of the daemon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        format!(
            "--- last lines of the shoal daemon log ({}) ---\n{}\n--- end of daemon log ---",
            self.log.display(),
            tail_lines(&text, 150)
        )
    }

    /// Builds the busybox test image under `name` and loads it with
    /// `shoal image load`.
    pub fn load_image(&self, name: &str) {
        let tar = super::image::build_busybox_image(self.dir(), name, host_arch());
        self.cli_ok(&["image", "load", tar.to_str().expect("utf-8 path")]);
    }

    // ---- the CLI ------------------------------------------------------------

    /// `shoal --socket SOCK ARGS…`, whatever its outcome. `service
    /// create|update|scale|rollback` get `--detach` unless the test says
    /// `--detach=…` itself: most tests check what runs on their own terms,
    /// and some create services that are never meant to converge.
    pub fn cli(&self, args: &[&str]) -> Output {
        run(Command::new(&self.cli_binary)
            .env_remove("SHOAL_SOCKET")
            .env("SHOAL_DEFAULT_ADDR_POOL", &self.addr_pool)
            .arg("--socket")
            .arg(&self.socket)
            .args(self.detached(args)))
    }

    /// `args`, with `--detach` after `service create|update|scale|rollback|rebalance`
    /// for this build's CLI (an older release's has no such flag).
    fn detached<'a>(&self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        let waits = matches!(
            args,
            [
                "service",
                "create" | "update" | "scale" | "rollback" | "rebalance",
                ..
            ]
        );
        let said = args.iter().any(|a| a.starts_with("--detach") || *a == "-d");
        if waits && !said && self.cli_binary == Path::new(SHOAL) {
            all.insert(2, "--detach");
        }
        all
    }

    /// Like [`Daemon::cli`], and the command must succeed; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        if !out.status.success() {
            panic!(
                "`shoal {}` failed: {}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                out.status,
                stdout(&out),
                stderr(&out),
            );
        }
        stdout(&out)
    }

    /// Like [`Daemon::cli_ok`] with `--format json` appended; returns the
    /// parsed output.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let text = self.cli_ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "`shoal {}` printed invalid JSON ({e}):\n{text}",
                all.join(" ")
            )
        })
    }

    /// Starts `shoal --socket SOCK ARGS…` in the background with stdout and
    /// stderr piped (for `--follow`). The caller kills it.
    pub fn cli_spawn(&self, args: &[&str]) -> Child {
        Command::new(&self.cli_binary)
            .env_remove("SHOAL_SOCKET")
            .arg("--socket")
            .arg(&self.socket)
            .args(self.detached(args))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shoal CLI")
    }

    /// SIGKILLs the daemon process (not its containers), as a power cut
    /// would, and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon is not running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `service create --name NAME --replicas 0 FLAGS… busybox`: a write to
    /// the store only (no task), whatever its outcome.
    pub fn create_empty(&self, name: &str, flags: &[&str]) -> Output {
        let mut args = vec!["service", "create", "--name", name, "--replicas", "0"];
        args.extend_from_slice(flags);
        args.push("busybox");
        self.cli(&args)
    }

    /// `service create --name NAME FLAGS… busybox sleep 3600`: a service
    /// whose tasks run until they are stopped.
    pub fn create_sleeper(&self, name: &str, flags: &[&str]) -> Output {
        self.cli(&sleeper_args(name, flags))
    }

    /// [`Daemon::create_sleeper`], which must succeed.
    pub fn sleeper(&self, name: &str, flags: &[&str]) {
        self.cli_ok(&sleeper_args(name, flags));
    }

    /// `service update FLAGS… SERVICE` is refused, saying `want`, for each
    /// (FLAGS, want): bad input gets a clear error.
    pub fn update_refused(&self, service: &str, cases: &[(&[&str], &str)]) {
        for (flags, want) in cases {
            let mut args = vec!["service", "update"];
            args.extend_from_slice(flags);
            args.push(service);
            let out = self.cli(&args);
            assert!(!out.status.success(), "{flags:?} was taken");
            assert!(stderr(&out).contains(want), "{flags:?}: {}", stderr(&out));
        }
    }

    /// Waits until this one-node cluster's control loops have acted on
    /// everything committed before the call: the positive signal that a
    /// "nothing more happens" check waits for, where a fixed sleep would
    /// also pass when a loop is merely slow. A probe service created now
    /// runs only once the orchestrator, the scheduler and the node's agent
    /// have each made a pass over a state that holds every earlier commit
    /// (each pass reads the latest state, and commits are in log order).
    /// The probe is removed again, and its container waited out, so that
    /// checks of the node's containers see only the test's own.
    pub fn settle(&self) {
        let name = "settle-probe";
        self.sleeper(name, &[]);
        let ids = self.wait_running(name, 1);
        self.cli_ok(&["service", "rm", name]);
        assert!(
            wait_until(WAIT, || self.ctr_containers().is_disjoint(&ids)),
            "the probe's container must be removed with its service\n{}",
            self.log_tail()
        );
    }

    /// The manager join token (`join-token manager -q`).
    /// Joins this (started, not yet joined) daemon to `manager`'s cluster
    /// as a worker and waits until the manager calls it ready. Returns the
    /// node ids of the manager and of this worker.
    pub fn join_as_worker(&self, manager: &Daemon) -> (String, String) {
        let addr = format!("127.0.0.1:{}", manager.port);
        let out = self.cli(&["join", "--token", &manager.join_token(), &addr]);
        assert!(out.status.success(), "join: {}", stderr(&out));
        let waddr = format!("127.0.0.1:{}", self.port);
        assert!(
            wait_until(WAIT, || manager.node_status(&waddr) == "ready"),
            "the worker never became ready"
        );
        (manager.node_id(&addr), manager.node_id(&waddr))
    }

    pub fn manager_token(&self) -> String {
        self.cli_ok(&["join-token", "manager", "-q"])
            .trim()
            .to_string()
    }

    /// The worker join token (`join-token worker -q`).
    pub fn join_token(&self) -> String {
        self.cli_ok(&["join-token", "worker", "-q"])
            .trim()
            .to_string()
    }

    /// `node ls --format json`.
    pub fn nodes(&self) -> Vec<Value> {
        as_array(self.cli_json(&["node", "ls"]))
    }

    /// The status (`ready`, `down`, …) of the node at `addr`; empty if none.
    pub fn node_status(&self, addr: &str) -> String {
        self.nodes()
            .iter()
            .find(|n| s(n, "addr") == addr)
            .map(|n| s(n, "status").to_string())
            .unwrap_or_default()
    }

    /// The id of the node at `addr`.
    pub fn node_id(&self, addr: &str) -> String {
        let nodes = self.nodes();
        nodes
            .iter()
            .find(|n| s(n, "addr") == addr)
            .map(|n| s(n, "id").to_string())
            .unwrap_or_else(|| panic!("no node at {addr} in node ls: {nodes:?}"))
    }

    /// `service ls --format json`.
    pub fn services(&self) -> Vec<Value> {
        as_array(self.cli_json(&["service", "ls"]))
    }

    /// `service ps NAME --format json`.
    pub fn ps(&self, service: &str) -> Vec<Value> {
        as_array(self.cli_json(&["service", "ps", service]))
    }

    /// Container ids of the service's tasks that shoal reports `running`.
    pub fn running(&self, service: &str) -> BTreeSet<String> {
        self.ps(service)
            .iter()
            .filter(|t| s(t, "state") == "running")
            .map(container_id)
            .collect()
    }

    /// Waits until shoal reports exactly `n` running tasks for the service
    /// and containerd runs each of them. Returns their container ids.
    pub fn wait_running(&self, service: &str, n: usize) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let ok = wait_until(WAIT, || {
            ids = self.running(service);
            ids.len() == n && ids.is_subset(&self.ctr_running())
        });
        if !ok {
            panic!(
                "service {service}: expected {n} running tasks, also running in containerd; \
                 shoal says {ids:?}\n{}",
                self.describe(service)
            );
        }
        ids
    }

    /// What shoal and containerd both say, for failure messages.
    pub fn describe(&self, service: &str) -> String {
        let ps = self.cli(&["service", "ps", service]);
        let tasks = self.ctr(&["tasks", "ls"]);
        format!(
            "--- shoal service ps {service} ---\n{}{}\n--- ctr -n {} tasks ls ---\n{}",
            stdout(&ps),
            stderr(&ps),
            self.namespace,
            stdout(&tasks),
        )
    }

    // ---- containerd, seen through ctr ----------------------------------------

    /// Container id → pid of the running tasks, as containerd reports them:
    /// an adopted container keeps its pid, a restarted one does not.
    pub fn running_pids(&self) -> BTreeMap<String, u32> {
        self.ctr_tasks()
            .into_iter()
            .filter(|(_, (_, status))| status == "RUNNING")
            .map(|(id, (pid, _))| (id, pid))
            .collect()
    }

    /// `ctr --address SOCK -n NS ARGS…`, whatever its outcome.
    pub fn ctr(&self, args: &[&str]) -> Output {
        run(ctr_command(&self.containerd, &self.namespace).args(args))
    }

    /// Like [`Daemon::ctr`], and it must succeed; returns stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "`ctr -n {} {}` failed: {}\n{}",
            self.namespace,
            args.join(" "),
            out.status,
            stderr(&out)
        );
        stdout(&out)
    }

    /// containerd's tasks in this daemon's namespace: id → (pid, status),
    /// status as ctr prints it (`RUNNING`, `STOPPED`, …).
    pub fn ctr_tasks(&self) -> BTreeMap<String, (u32, String)> {
        self.ctr_ok(&["tasks", "ls"])
            .lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                match f.as_slice() {
                    [id, pid, status, ..] => Some((
                        id.to_string(),
                        (pid.parse().unwrap_or(0), status.to_string()),
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// Ids of the tasks containerd reports RUNNING.
    pub fn ctr_running(&self) -> BTreeSet<String> {
        self.ctr_tasks()
            .into_iter()
            .filter(|(_, (_, status))| status == "RUNNING")
            .map(|(id, _)| id)
            .collect()
    }

    /// Ids of every container in this daemon's namespace.
    pub fn ctr_containers(&self) -> BTreeSet<String> {
        self.ctr_ok(&["containers", "ls", "-q"])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// Snapshots (of the default snapshotter) in this namespace: (key, kind),
    /// kind as ctr prints it (`Active`, `Committed`, `View`).
    pub fn ctr_snapshots(&self) -> Vec<(String, String)> {
        self.ctr_ok(&["snapshots", "ls"])
            .lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                Some((f.first()?.to_string(), f.last()?.to_string()))
            })
            .collect()
    }

    /// The container record containerd holds (`ctr containers info ID`).
    pub fn ctr_container_info(&self, id: &str) -> Value {
        let text = self.ctr_ok(&["containers", "info", id]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ctr containers info {id}: {e}"))
    }

    /// The OCI runtime spec of a container (`ctr containers info --spec ID`).
    pub fn ctr_spec(&self, id: &str) -> Value {
        let text = self.ctr_ok(&["containers", "info", "--spec", id]);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("ctr containers info --spec {id}: {e}"))
    }

    /// SIGKILLs a container's process behind shoal's back.
    pub fn ctr_kill(&self, id: &str) {
        self.ctr_ok(&["tasks", "kill", "-s", "SIGKILL", id]);
    }

    /// Removes everything this daemon made in containerd, and the namespace.
    /// Never panics: it runs from `Drop`.
    fn clean_containerd(&self) {
        let ctr = |args: &[&str]| -> Option<String> {
            let out = try_run(
                ctr_command(&self.containerd, &self.namespace).args(args),
                CALL_TIMEOUT,
            )
            .ok()?;
            out.status.success().then(|| stdout(&out))
        };
        let ids = |args: &[&str]| -> Vec<String> {
            ctr(args)
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        };
        // No containerd there, or no namespace was ever made (the daemon
        // could not reach containerd): nothing to do.
        if !Path::new(&self.containerd).exists() {
            return;
        }
        let namespaces = try_run(
            Command::new("ctr").args(["--address", &self.containerd, "namespaces", "ls", "-q"]),
            CALL_TIMEOUT,
        );
        match namespaces {
            Ok(out) if stdout(&out).lines().any(|l| l.trim() == self.namespace) => {}
            _ => return,
        }
        for id in ids(&["tasks", "ls", "-q"]) {
            ctr(&["tasks", "kill", "-s", "SIGKILL", &id]);
            ctr(&["tasks", "rm", "-f", &id]);
        }
        for id in ids(&["containers", "ls", "-q"]) {
            ctr(&["containers", "rm", &id]);
        }
        for name in ids(&["images", "ls", "-q"]) {
            ctr(&["images", "rm", "--sync", &name]);
        }
        for id in ids(&["leases", "ls", "-q"]) {
            ctr(&["leases", "rm", "--sync", &id]);
        }
        // Children before parents: repeat until none is left.
        for _ in 0..10 {
            let keys: Vec<String> = ctr(&["snapshots", "ls"])
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next().map(String::from))
                .collect();
            if keys.is_empty() {
                break;
            }
            for key in keys {
                ctr(&["snapshots", "rm", &key]);
            }
        }
        for digest in ids(&["content", "ls", "-q"]) {
            ctr(&["content", "rm", &digest]);
        }
        let removed = try_run(
            Command::new("ctr").args([
                "--address",
                &self.containerd,
                "namespaces",
                "rm",
                &self.namespace,
            ]),
            CALL_TIMEOUT,
        );
        if !matches!(&removed, Ok(out) if out.status.success()) {
            eprintln!(
                "warning: could not remove containerd namespace {}: {:?}",
                self.namespace,
                removed.map(|o| stderr(&o))
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        if let Some(child) = self.child.take() {
            stop_quietly(child);
        }
        self.clean_containerd();
        // The node's own bridge, whatever pool it came from (a cluster
        // made by an older release has the default one), then whatever
        // else is left in this daemon's pool.
        if let Ok(subnet) = std::fs::read_to_string(self.data_dir.join("bridge-subnet")) {
            let subnet = subnet.trim();
            if let Some(hex) = subnet_hex(subnet) {
                clean_networks(&hex, &subnet.replace('/', "_"));
            }
        }
        if let Some(second) = self
            .addr_pool
            .split('.')
            .nth(1)
            .and_then(|o| o.parse::<u8>().ok())
        {
            clean_networks(&format!("0a{second:02x}"), &format!("10.{second}."));
        }
    }
}

/// `10.20.3.0/24` as shoal names its bridge: `0a140300`.
fn subnet_hex(subnet: &str) -> Option<String> {
    let addr: std::net::Ipv4Addr = subnet.split('/').next()?.parse().ok()?;
    Some(addr.octets().iter().map(|o| format!("{o:02x}")).collect())
}

/// Removes the bridges, nftables tables and network namespaces that the
/// nodes of a cluster on `pool` made: a node keeps them when its daemon
/// stops (its containers keep running), and the next test must find the
/// machine as it was. Never panics: it runs from `Drop`.
/// `hex` and `dir` are prefixes of the names: of the bridges and tables
/// (`shl…`, `shoal_…`), and of the state dirs in /run/shoal/net.
fn clean_networks(hex: &str, dir: &str) {
    let out = |cmd: &mut Command| {
        try_run(cmd, CALL_TIMEOUT)
            .map(|o| stdout(&o))
            .unwrap_or_default()
    };
    // Namespaces first: their veths go with them.
    let dirs = std::fs::read_dir("/run/shoal/net")
        .into_iter()
        .flatten()
        .flatten();
    for dir in dirs.filter(|d| d.file_name().to_string_lossy().starts_with(dir)) {
        let netns = dir.path().join("netns");
        for f in std::fs::read_dir(&netns).into_iter().flatten().flatten() {
            let _ = nix::mount::umount2(&f.path(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = nix::mount::umount2(&netns, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(dir.path());
    }
    for line in out(Command::new("ip").args(["-o", "link", "show", "type", "bridge"])).lines() {
        if let Some(name) = line
            .split(": ")
            .nth(1)
            .filter(|n| n.starts_with(&format!("shl{hex}")))
        {
            let _ = try_run(Command::new("ip").args(["link", "del", name]), CALL_TIMEOUT);
        }
    }
    for line in out(Command::new("nft").args(["list", "tables"])).lines() {
        let mut words = line.split_whitespace().skip(1);
        if let (Some(family), Some(name)) = (words.next(), words.next()) {
            if name.starts_with(&format!("shoal_{hex}")) {
                let _ = try_run(
                    Command::new("nft").args(["delete", "table", family, name]),
                    CALL_TIMEOUT,
                );
            }
        }
    }
}

fn sleeper_args<'a>(name: &'a str, flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["service", "create", "--name", name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sleep", "3600"]);
    args
}

/// Waits until a daemon accepts connections on `socket`. `Err` (with why)
/// if the process in `child` exits first (it is then reaped and cleared), or
/// nothing listens within [`WAIT`].
pub fn wait_for_socket(child: &mut Option<Child>, socket: &Path) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            *child = None;
            return Err(format!("shoal daemon exited before it was ready: {status}"));
        }
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "shoal daemon did not listen on {} within {WAIT:?}",
                socket.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, as systemd sends it, then wait for the exit. `Err` with a
/// message if it does not exit within [`STOP_TIMEOUT`] (it is then
/// SIGKILLed and reaped).
fn sigterm_and_wait(mut child: Child) -> Result<ExitStatus, String> {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "shoal daemon did not exit within {STOP_TIMEOUT:?} of SIGTERM"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a daemon process with SIGTERM and returns its exit status; panics
/// if it does not exit in time.
pub fn terminate(child: Child) -> ExitStatus {
    sigterm_and_wait(child).unwrap_or_else(|e| panic!("{e}"))
}

/// Stops a daemon process on clean-up: SIGTERM, SIGKILL if it hangs.
pub fn stop_quietly(child: Child) {
    let _ = sigterm_and_wait(child);
}

fn ctr_command(containerd: &str, namespace: &str) -> Command {
    let mut cmd = Command::new("ctr");
    cmd.args(["--address", containerd, "-n", namespace]);
    cmd
}

fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// A task's container id as `service ps` reports it (the task id, by
/// contract), falling back to the task id.
pub fn container_id(task: &Value) -> String {
    match task.get("container_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => s(task, "id").to_string(),
    }
}

/// The text of `GET /metrics` from a daemon's `--metrics-addr`, status
/// line and headers included.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to metrics");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the metrics");
    out
}
