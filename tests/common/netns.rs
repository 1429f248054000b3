//! Several hosts on one machine: a [`Lan`] is a bridge with N network
//! namespaces plugged into it, each one a "host" with its own IPv4 address
//! on a private /24, loopback up and multicast working (so mDNS crosses
//! between hosts, as on a real LAN). Nothing is routed out of it: the
//! namespaces have no default route and the bridge has no address of its
//! own (and no IPv6 link-local either), so traffic stays between the hosts.
//!
//! A daemon runs "on" a host when it is started with
//! `nsenter --net=/run/netns/NAME` (not `ip netns exec`, which remounts /sys
//! and hides the cgroup mounts, so runc fails). Only its network is the
//! host's: its data dir, control socket (a filesystem path, so the CLI runs
//! from the root namespace) and containerd namespace are its own, as in
//! `harness`. Containers still come from the machine's one containerd in
//! the root namespace, so they share containerd's network, not the host's;
//! that is fine for these tests.
//!
//! Faults: [`Lan::link_down`] unplugs a host's cable (the bridge side of
//! its veth), [`Lan::set_ip`] moves a host to another address.
//!
//! Clean-up runs on drop, also after a panic: a [`NetDaemon`] stops its
//! daemon and empties its containerd namespace (through `harness::Daemon`);
//! the [`Lan`] then kills whatever still runs in its namespaces (only
//! processes the test started can be there) and deletes the namespaces,
//! veths and bridge. Declare the `Lan` first so it drops last.
//!
//! Needs root, `ip` (iproute2), `nsenter` and a running containerd.

#![allow(dead_code)]

use std::fs;
use std::net::Ipv4Addr;
use std::ops::Deref;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::harness::{
    require_root_and_containerd, stderr, stop_quietly, terminate, try_run, wait_for_socket, Daemon,
    CONTAINERD_SOCKET, SHOAL,
};

/// The node-to-node port every daemon listens on, on its host's address.
pub const PORT: u16 = 4290;
/// No `ip` or `nsenter` call may take longer than this.
const IP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to exit after SIGTERM, and processes left in
/// a namespace at teardown before they get SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT_LAN: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS…`; `Err` with its stderr if it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = try_run(Command::new("ip").args(args), IP_TIMEOUT)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}: {}",
            args.join(" "),
            out.status,
            stderr(&out).trim()
        ))
    }
}

/// Like [`ip`], and it must succeed.
fn ip_ok(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

/// Panics with a clear message unless root, containerd, `ip` and `nsenter`
/// are all here. These tests never skip.
pub fn require_lan_tools() {
    require_root_and_containerd();
    for (tool, arg) in [("ip", "-V"), ("nsenter", "--version")] {
        let ok = try_run(Command::new(tool).arg(arg), IP_TIMEOUT)
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "this test needs `{tool}` (Debian packages iproute2 and util-linux) to build \
             hosts from network namespaces"
        );
    }
}

/// The processes in a network namespace, by pid (`ip netns pids`).
fn netns_pids(netns: &str) -> Vec<i32> {
    try_run(
        Command::new("ip").args(["netns", "pids", netns]),
        IP_TIMEOUT,
    )
    .map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

/// SIGTERM, then after [`STOP_TIMEOUT`] SIGKILL, every process in the
/// namespace. Only what a test started can be in it. Never panics.
fn kill_netns_processes(netns: &str) {
    let pids = netns_pids(netns);
    if pids.is_empty() {
        return;
    }
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if netns_pids(netns).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in netns_pids(netns) {
        eprintln!("warning: pid {pid} in {netns} ignored SIGTERM; sending SIGKILL");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// What a host is; shared by the [`Lan`] and the daemons started on it.
struct HostState {
    /// 1-based, as in `h1`.
    index: usize,
    netns: String,
    /// The root-namespace end of the host's veth, a port of the bridge.
    /// The other end is `eth0` in the host.
    veth: String,
    ip: Mutex<Ipv4Addr>,
}

impl HostState {
    fn ip(&self) -> Ipv4Addr {
        *self.ip.lock().expect("host ip lock")
    }
}

/// One host of a [`Lan`]: a network namespace with `eth0` on the bridge.
pub struct Host {
    state: Arc<HostState>,
}

impl Host {
    /// The network namespace's name (`shoal-<pid>x<n>-h<i>`).
    pub fn netns(&self) -> &str {
        &self.state.netns
    }

    /// Its current IPv4 address.
    pub fn ip(&self) -> Ipv4Addr {
        self.state.ip()
    }

    /// `ip:4290`, what a daemon on this host listens on and advertises.
    pub fn addr(&self) -> String {
        format!("{}:{PORT}", self.ip())
    }

    /// `GET /` of `addr:port`, sent from this host (busybox nc, 2 s at
    /// most): the last line of the answer, empty if none came.
    pub fn get(&self, addr: &str, port: u16) -> String {
        use std::io::Write;
        let child = self
            .command("busybox")
            .args(["nc", "-w", "2", addr, &port.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            return String::new();
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"GET / HTTP/1.0\r\n\r\n");
        }
        let Ok(out) = child.wait_with_output() else {
            return String::new();
        };
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !text.starts_with("HTTP/1.") {
            return String::new();
        }
        text.lines().last().unwrap_or("").trim().to_string()
    }

    /// `nsenter --net=/run/netns/NAME -- PROGRAM`: a command that runs on
    /// this host (its network only; mounts, pids and cgroups are the
    /// machine's).
    pub fn command(&self, program: &str) -> Command {
        nsenter(&self.state.netns, program)
    }

    /// Starts `shoal daemon` on this host with its own data dir, socket and
    /// containerd namespace, listening on and advertising `ip:4290`, and
    /// waits until it answers on its socket.
    pub fn spawn_daemon(&self) -> NetDaemon {
        let mut d = NetDaemon {
            child: None,
            host: self.state.clone(),
            addr: String::new(),
            inner: Daemon::new(CONTAINERD_SOCKET),
        };
        d.start();
        d
    }
}

fn nsenter(netns: &str, program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{netns}"))
        .arg("--")
        .arg(program);
    cmd
}

/// A bridge and N hosts on it (see the module docs). Dropping it kills
/// what still runs on its hosts and removes every namespace, veth and the
/// bridge, also after a panic.
pub struct Lan {
    /// `<pid>x<n>`: unique among live processes, and short enough for
    /// interface names (15 bytes at most).
    id: String,
    bridge: String,
    /// The first three octets of the LAN's /24.
    prefix: [u8; 3],
    hosts: Vec<Host>,
}

impl Lan {
    /// A LAN of `hosts` hosts, `h1`…`hN`, at `10.A.B.1`…`10.A.B.N`/24.
    pub fn new(hosts: usize) -> Lan {
        require_lan_tools();
        assert!((1..=200).contains(&hosts), "1 to 200 hosts, not {hosts}");
        let pid = std::process::id();
        let n = NEXT_LAN.fetch_add(1, Ordering::SeqCst);
        let id = format!("{pid}x{n}");
        // A /24 of its own per LAN of this run. (Each LAN is its own
        // bridge and namespaces, so even a clash would not mix them.) Out
        // of the daemons' address pools (10.100-199.0.0/16, harness.rs)
        // and of tasknet.rs's subnets (10.231-232): a LAN inside a pool
        // would count the hosts' own traffic as task traffic on the LAN.
        let v = pid.wrapping_mul(8).wrapping_add(n);
        let prefix = [10, 200 + ((v >> 8) % 30) as u8, (v & 0xff) as u8];
        let mut lan = Lan {
            bridge: format!("sb{id}"),
            id,
            prefix,
            hosts: Vec::new(),
        };
        assert!(
            lan.veth_name(hosts).len() <= 15,
            "interface name {} is too long for Linux (15 bytes at most)",
            lan.veth_name(hosts)
        );
        // A process that had our pid before may have been killed before
        // its drop ran: remove what it left under the names we use.
        lan.remove_leftovers(hosts);

        // From here on, a panic drops `lan`, which removes what was made.
        ip_ok(&["link", "add", "name", &lan.bridge, "type", "bridge"]);
        // No IPv6 link-local on the bridge, so nothing in the root namespace
        // (other tests' mDNS, for one) takes part in this LAN.
        ip_ok(&["link", "set", &lan.bridge, "addrgenmode", "none"]);
        // Flood multicast to every port (no IGMP snooping surprises), and
        // keep the machine's firewall out of bridged traffic (br_netfilter).
        for option in ["mcast_snooping", "nf_call_iptables"] {
            let set = ["link", "set", &lan.bridge, "type", "bridge", option, "0"];
            if let Err(e) = ip(&set) {
                eprintln!("warning: {e}");
            }
        }
        ip_ok(&["link", "set", &lan.bridge, "up"]);
        for i in 1..=hosts {
            lan.add_host(i);
        }
        lan
    }

    fn netns_name(&self, i: usize) -> String {
        format!("shoal-{}-h{i}", self.id)
    }

    fn veth_name(&self, i: usize) -> String {
        format!("sv{}h{i}", self.id)
    }

    fn remove_leftovers(&self, hosts: usize) {
        for i in 1..=hosts {
            let netns = self.netns_name(i);
            if fs::metadata(format!("/run/netns/{netns}")).is_ok() {
                // Not ours to kill: whatever runs there stays cut off.
                let _ = ip(&["netns", "del", &netns]);
            }
            if fs::metadata(format!("/sys/class/net/{}", self.veth_name(i))).is_ok() {
                let _ = ip(&["link", "del", &self.veth_name(i)]);
            }
        }
        if fs::metadata(format!("/sys/class/net/{}", self.bridge)).is_ok() {
            let _ = ip(&["link", "del", &self.bridge]);
        }
    }

    fn add_host(&mut self, i: usize) {
        let addr = self.addr(i as u8);
        let state = Arc::new(HostState {
            index: i,
            netns: self.netns_name(i),
            veth: self.veth_name(i),
            ip: Mutex::new(addr),
        });
        // Listed before it is made, so that a failure half-way is cleaned.
        self.hosts.push(Host {
            state: state.clone(),
        });
        let (netns, veth) = (state.netns.as_str(), state.veth.as_str());
        ip_ok(&["netns", "add", netns]);
        ip_ok(&[
            "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ]);
        ip_ok(&["link", "set", veth, "addrgenmode", "none"]);
        ip_ok(&["link", "set", veth, "master", &self.bridge]);
        ip_ok(&["link", "set", veth, "up"]);
        ip_ok(&["-n", netns, "link", "set", "lo", "up"]);
        let cidr = format!("{addr}/24");
        ip_ok(&["-n", netns, "addr", "add", &cidr, "dev", "eth0"]);
        ip_ok(&["-n", netns, "link", "set", "eth0", "up"]);
    }

    /// Host `i`, 1-based (`host(1)` is `h1`).
    pub fn host(&self, i: usize) -> &Host {
        assert!(
            (1..=self.hosts.len()).contains(&i),
            "no host h{i}: this LAN has h1..h{}",
            self.hosts.len()
        );
        &self.hosts[i - 1]
    }

    /// The address with last octet `octet` on this LAN's /24.
    pub fn addr(&self, octet: u8) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, octet)
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Unplugs host `i`: its port on the bridge goes down, so nothing
    /// reaches it or leaves it. Its processes keep running.
    pub fn link_down(&self, i: usize) {
        ip_ok(&["link", "set", &self.host(i).state.veth, "down"]);
    }

    /// Plugs host `i` back in.
    pub fn link_up(&self, i: usize) {
        ip_ok(&["link", "set", &self.host(i).state.veth, "up"]);
    }

    /// Moves host `i` to `new` (on this LAN's /24): its IPv4 addresses are
    /// flushed and `new` is added, as a DHCP lease change would.
    /// Daemons already running keep their old `--listen`.
    pub fn set_ip(&self, i: usize, new: Ipv4Addr) {
        let [a, b, c, _] = new.octets();
        assert!(
            [a, b, c] == self.prefix,
            "{new} is not on this LAN ({}/24)",
            self.addr(0)
        );
        let state = &self.host(i).state;
        ip_ok(&["-n", &state.netns, "-4", "addr", "flush", "dev", "eth0"]);
        let cidr = format!("{new}/24");
        ip_ok(&["-n", &state.netns, "addr", "add", &cidr, "dev", "eth0"]);
        *state.ip.lock().expect("host ip lock") = new;
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in &self.hosts {
            kill_netns_processes(&h.state.netns);
        }
        for h in &self.hosts {
            // Deleting the namespace deletes its eth0, and so the veth pair.
            if let Err(e) = ip(&["netns", "del", &h.state.netns]) {
                eprintln!("warning: {e}");
            }
            if fs::metadata(format!("/sys/class/net/{}", h.state.veth)).is_ok() {
                let _ = ip(&["link", "del", &h.state.veth]);
            }
        }
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            eprintln!("warning: {e}");
        }
    }
}

/// A `shoal daemon` running on one host of a [`Lan`]. Everything of
/// `harness::Daemon` but starting and stopping (the CLI on its socket,
/// `ctr` in its namespace, `load_image`, `describe`, `log_tail`) is there
/// through `Deref`. Dropping it stops the daemon and empties its containerd
/// namespace.
pub struct NetDaemon {
    child: Option<Child>,
    host: Arc<HostState>,
    /// `ip:4290` of the host when the daemon was last started: what it
    /// listens on and advertises.
    pub addr: String,
    /// Dirs, socket, containerd namespace and clean-up; never started
    /// itself (its `spawn` would listen on loopback).
    inner: Daemon,
}

impl Deref for NetDaemon {
    type Target = Daemon;

    fn deref(&self) -> &Daemon {
        &self.inner
    }
}

impl NetDaemon {
    /// Starts the daemon on its host's *current* address (same data dir,
    /// socket and namespace as before) and waits until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        self.addr = format!("{}:{PORT}", self.host.ip());
        let mut cmd = self
            .inner
            .daemon_command(nsenter(&self.host.netns, SHOAL), &self.addr);
        // A host of its own: WireGuard on its default port.
        cmd.env_remove("SHOAL_OVERLAY_PORT");
        // nsenter enters the namespace and execs shoal: the child's pid is
        // the daemon's.
        self.child = Some(cmd.spawn().expect("start nsenter … shoal daemon"));
        if let Err(e) = self.wait_ready() {
            panic!("h{}: {e}\n{}", self.host.index, self.inner.log_tail());
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        wait_for_socket(&mut self.child, &self.inner.socket)
    }

    /// Stops the daemon with SIGTERM and waits for it to exit; returns its
    /// exit status. Its containers keep running.
    pub fn stop(&mut self) -> ExitStatus {
        terminate(self.child.take().expect("daemon is not running"))
    }

    /// The host's network namespace.
    pub fn netns(&self) -> &str {
        &self.host.netns
    }
}

impl Drop for NetDaemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_quietly(child);
        }
        // Then `inner` drops: it prints the log's end if the test panicked
        // and empties the containerd namespace.
    }
}
