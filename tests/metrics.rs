//! The opt-in Prometheus endpoint: `daemon --metrics-addr` serves /metrics
//! with nodes, tasks and services by state, the scheduling latency and
//! missed heartbeats. Needs root and containerd.

mod common;

use common::harness::*;

#[test]
fn metrics_show_cluster_state_and_scheduling() {
    let (d, addr) = Daemon::with_metrics();
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
