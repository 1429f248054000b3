//! The overlay and the routing mesh, measured (a benchmark: it prints
//! numbers, never fails on one). Three hosts made of network namespaces on
//! a bridge (the LAN harness of `tests/netns.rs`), a shoal node on each
//! (release build), side by side in one run:
//!
//! - TCP throughput from a task on h1 to a task of its network on h2, over
//!   the WireGuard overlay and over VXLAN (a network created with
//!   `--opt encrypted=false`), against the same two hosts straight over
//!   the bridge (the ratio is the overlay's cost);
//! - requests/s (and mean latency) of a busybox httpd task on h2: straight
//!   to the task from h2, through its published port on h2 (a local
//!   backend), and through the published port on h3, which runs no task
//!   and forwards over the overlay (the routing mesh);
//! - the time from `service create --publish` to the port answering on h3.
//!
//!   sudo bash bench/overlay [MB] [REQUESTS] [CONCURRENCY]   # default: 200 5000 8
//!
//! Needs root, containerd, nftables, ab (apache2-utils), nsenter and
//! busybox-static (bash tests/run installs them).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/netns.rs"]
mod netns;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::harness::*;
use netns::{Host, Lan, NetDaemon};

const WEB: &str = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www";
const PORT: u16 = 8080;

/// The `n`th number among the arguments (cargo adds `--bench` to them).
fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .filter_map(|a| a.parse().ok())
        .nth(n - 1)
        .unwrap_or(default)
}

fn main() {
    require_root_and_containerd();
    let mb = arg(1, 200);
    let requests = arg(2, 5000);
    let conc = arg(3, 8);

    let lan = Lan::new(3);
    let manager = lan.host(1).spawn_daemon();
    manager.cli_ok(&["init"]);
    let mut nodes: Vec<NetDaemon> = Vec::new();
    for i in 2..=3 {
        let d = lan.host(i).spawn_daemon();
        d.load_image("busybox");
        let out = d.cli(&["join", "--token", &manager.join_token(), &manager.addr]);
        assert!(out.status.success(), "h{i} join: {}", stderr(&out));
        nodes.push(d);
    }
    manager.load_image("busybox");
    for d in &nodes {
        assert!(
            wait_until(WAIT, || manager.node_status(&d.addr) == "ready"),
            "a node never became ready"
        );
    }
    let id = |d: &NetDaemon| manager.node_id(&d.addr);
    let (h1, h2) = (id(&manager), id(&nodes[0]));

    println!("shoal overlay benchmark: 3 hosts (network namespaces on one bridge), release build");
    throughput(&lan, &manager, &h1, &h2, mb);
    requests_per_s(&lan, &manager, &h2, requests, conc);
}

/// The task network namespace of the one running task of `service`.
fn task_netns(m: &NetDaemon, service: &str) -> (PathBuf, String) {
    let running = || m.ps(service).into_iter().find(|t| t["state"] == "running");
    assert!(
        wait_until(WAIT, || running().is_some()),
        "{service} never ran"
    );
    let t = running().unwrap();
    let id = s(&t, "id").to_string();
    let addr = t["addresses"][0].as_str().unwrap_or_default().to_string();
    for entry in std::fs::read_dir("/run/shoal/net").expect("/run/shoal/net") {
        let p = entry.unwrap().path().join("netns").join(&id);
        if p.exists() {
            return (p, addr);
        }
    }
    panic!("no netns for task {id}");
}

/// Runs `f` on a thread that entered the network namespace at `path`.
fn in_netns<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// MB/s of `mb` MB sent over one TCP connection from a thread in netns
/// `from` to a listener in netns `to` at `addr`; None if it could not
/// connect within a few seconds.
fn transfer(from: &Path, to: &Path, addr: &str, mb: u64) -> Option<f64> {
    let bind = format!("{addr}:5001");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = in_netns(to, move || {
        let l = TcpListener::bind(("0.0.0.0", 5001)).expect("listen");
        l.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut c = loop {
            match l.accept() {
                Ok((c, _)) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return 0,
            }
        };
        c.set_nonblocking(false).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        total
    });
    ready_rx.recv().unwrap();
    let client = in_netns(from, move || {
        let mut c =
            TcpStream::connect_timeout(&bind.parse().unwrap(), Duration::from_secs(3)).ok()?;
        let buf = vec![0x5au8; 1 << 16];
        let started = Instant::now();
        for _ in 0..(mb * 16) {
            c.write_all(&buf).ok()?;
        }
        c.shutdown(std::net::Shutdown::Write).ok()?;
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        Some(started)
    });
    let started = client.join().unwrap();
    let got = server.join().unwrap();
    let secs = started?.elapsed().as_secs_f64();
    (got == mb << 20).then(|| got as f64 / 1e6 / secs)
}

fn throughput(lan: &Lan, m: &NetDaemon, h1: &str, h2: &str, mb: u64) {
    let hosts = |i: usize| PathBuf::from(format!("/run/netns/{}", lan.host(i).netns()));
    let bare_to = lan.host(2).ip().to_string();
    let bare = transfer(&hosts(1), &hosts(2), &bare_to, mb).expect("h1 -> h2");
    println!("\nTCP throughput, one connection, {mb} MB:");
    println!("  h1 -> h2 over the bare bridge:           {bare:8.1} MB/s");
    // An encrypted network (WireGuard) and one in clear (VXLAN).
    for (network, opts, way) in [
        ("bench", &[][..], "over WireGuard"),
        ("clear", &["--opt", "encrypted=false"][..], "over VXLAN    "),
    ] {
        let mut create = vec!["network", "create"];
        create.extend_from_slice(opts);
        create.push(network);
        m.cli_ok(&create);
        let (sink_name, source_name) = (format!("sink-{network}"), format!("source-{network}"));
        for (name, node) in [(&sink_name, h2), (&source_name, h1)] {
            m.cli_ok(&[
                "service",
                "create",
                "--name",
                name,
                "--network",
                network,
                "--constraint",
                &format!("node.id=={node}"),
                "busybox",
                "sleep",
                "3600",
            ]);
        }
        let (sink, sink_addr) = task_netns(m, &sink_name);
        let (source, _) = task_netns(m, &source_name);
        // Both directions of the overlay's peers take a moment after a
        // task's first start; a warm-up transfer waits that out.
        assert!(
            wait_until(WAIT, || transfer(&source, &sink, &sink_addr, 1).is_some()),
            "the source task never reached the sink task on {network}"
        );
        let over = transfer(&source, &sink, &sink_addr, mb).expect("between the tasks");
        println!(
            "  task on h1 -> task on h2, {way}: {over:8.1} MB/s ({:.2}x)",
            over / bare
        );
        for name in [&sink_name, &source_name] {
            m.cli_ok(&["service", "rm", name]);
        }
    }
}

/// `ab` run on `host`: (requests/s, mean ms per request).
fn ab(host: &Host, url: &str, requests: u64, conc: u64) -> (f64, f64) {
    let out = host
        .command("ab")
        .args([
            "-q",
            "-n",
            &requests.to_string(),
            "-c",
            &conc.to_string(),
            url,
        ])
        .output()
        .expect("run ab (apache2-utils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests per second:"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let mean = text
        .lines()
        .find(|l| l.starts_with("Time per request:") && l.contains("(mean)"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (rps, mean)
}

fn requests_per_s(lan: &Lan, m: &NetDaemon, h2: &str, requests: u64, conc: u64) {
    let h3_ip = lan.host(3).ip().to_string();
    let started = Instant::now();
    m.cli_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--publish",
        &format!("published={PORT},target=80"),
        "--constraint",
        &format!("node.id=={h2}"),
        "busybox",
        "sh",
        "-c",
        WEB,
    ]);
    let client = lan.host(1);
    assert!(
        wait_until(WAIT, || !client.get(&h3_ip, PORT).is_empty()),
        "the published port never answered on h3"
    );
    let create_to_mesh = started.elapsed();
    let (_, task) = task_netns(m, "web");
    let h2_ip = lan.host(2).ip().to_string();
    let direct = ab(lan.host(2), &format!("http://{task}/"), requests, conc);
    let local = ab(
        lan.host(2),
        &format!("http://{h2_ip}:{PORT}/"),
        requests,
        conc,
    );
    let mesh = ab(client, &format!("http://{h3_ip}:{PORT}/"), requests, conc);
    println!("\nHTTP, busybox httpd on h2, {requests} requests, {conc} clients, no keep-alive:");
    println!(
        "  from h2 straight to the task:             {:8.0} req/s ({:.2} ms mean)",
        direct.0, direct.1
    );
    println!(
        "  from h2 through its published port:      {:8.0} req/s ({:.2} ms mean, {:.2}x)",
        local.0,
        local.1,
        local.0 / direct.0
    );
    println!(
        "  from h1 through h3's port (mesh, overlay): {:6.0} req/s ({:.2} ms mean, {:.2}x)",
        mesh.0,
        mesh.1,
        mesh.0 / direct.0
    );
    println!(
        "\nservice create --publish -> the port answers on h3 (no task there): {:.0} ms",
        create_to_mesh.as_secs_f64() * 1000.0
    );
}
