//! The counters and gauges that code paths update as things happen, one
//! set per process. Apart from `metrics` (which renders them with the
//! store's state): the node side updates some, and must not depend on the
//! store or Raft to do so.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Counters that code paths update. One set per process.
pub struct Metrics {
    /// Seconds from a task's creation to its assignment to a node.
    pub scheduling_latency: Histogram,
    /// Nodes marked down for missing heartbeats.
    pub missed_heartbeats: Counter,
    /// Secrets and configs this node holds in memory for its tasks.
    pub files_held: Gauge,
}

pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        scheduling_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        missed_heartbeats: Counter::default(),
        files_held: Gauge::default(),
    })
}
