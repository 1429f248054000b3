//! The opt-in Prometheus endpoint: `daemon --metrics-addr` serves /metrics
//! with nodes, tasks and services by state, the scheduling latency and
//! missed heartbeats. Needs root and containerd.

mod common;

use std::io::{Read, Write};

use common::harness::*;

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to metrics");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_show_cluster_state_and_scheduling() {
    require_root_and_containerd();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut d = Daemon::new(CONTAINERD_SOCKET);
    d.extra_args = vec!["--metrics-addr".into(), addr.clone()];
    d.spawn();
    d.wait_ready().unwrap();
    d.cli_ok(&["init"]);
    d.load_image("busybox");
    d.sleeper("m", &["--replicas", "2"]);
    d.wait_running("m", 2);

    let text = scrape(&addr);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("shoal_nodes{state=\"ready\"} 1"), "{text}");
    assert!(text.contains("shoal_tasks{state=\"running\"} 2"), "{text}");
    assert!(text.contains("shoal_services 1"), "{text}");
    assert!(
        text.contains("shoal_scheduling_latency_seconds_count 2"),
        "{text}"
    );
    assert!(text.contains("shoal_missed_heartbeats_total 0"), "{text}");
    // Raft: this one manager leads, in term 1 or later, and has committed
    // the cluster's writes.
    assert!(text.contains("shoal_raft_leader 1"), "{text}");
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert!(value("shoal_raft_term") >= 1);
    assert!(value("shoal_raft_commit_index") >= 3);
}
