//! Prometheus metrics, served on an opt-in address (`daemon --metrics-addr`).
//! Gauges of cluster state (nodes and tasks by state, services) are read
//! from the store at scrape time, so they cost nothing between scrapes;
//! the scheduling latency and missed heartbeats are counted as they happen.

use std::sync::Arc;

use axum::extract::State;

use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::counters::global;
use crate::store::Store;

type Labels = Vec<(String, String)>;

/// This manager's Raft, when it runs one.
pub type RaftSlot = tokio::sync::watch::Receiver<Option<Arc<crate::raft::RaftNode>>>;

/// The text exposition of every metric, with state gauges from `store` and
/// Raft's from `raft`.
pub fn render(store: &Store, raft: &RaftSlot) -> String {
    let mut registry = Registry::with_prefix("shoal");
    let nodes = Family::<Labels, Gauge>::default();
    let tasks = Family::<Labels, Gauge>::default();
    let services = Gauge::<i64>::default();
    if let Ok(view) = store.read() {
        for n in view.nodes().unwrap_or_default() {
            nodes
                .get_or_create(&vec![("state".into(), n.status.state.as_str().into())])
                .inc();
        }
        for t in view.tasks().unwrap_or_default() {
            tasks
                .get_or_create(&vec![("state".into(), t.status.state.as_str().into())])
                .inc();
        }
        services.set(view.services().map(|s| s.len()).unwrap_or(0) as i64);
    }
    registry.register("nodes", "Nodes by state", nodes);
    registry.register("tasks", "Tasks by observed state", tasks);
    registry.register("services", "Services", services);
    if let Some(node) = raft.borrow().clone() {
        let m = node.metrics();
        let gauge = |v: u64| {
            let g = Gauge::<i64>::default();
            g.set(v as i64);
            g
        };
        registry.register("raft_term", "Current Raft term", gauge(m.current_term));
        registry.register(
            "raft_commit_index",
            "Raft log index applied to this manager's store (committed)",
            gauge(m.last_applied.map_or(0, |l| l.index)),
        );
        registry.register(
            "raft_leader",
            "1 while this manager is the Raft leader",
            gauge(u64::from(crate::raft::RaftNode::leads(&m))),
        );
    }
    let m = global();
    registry.register(
        "scheduling_latency_seconds",
        "Time from a task's creation to its assignment to a node",
        m.scheduling_latency.clone(),
    );
    registry.register(
        "missed_heartbeats",
        "Nodes marked down for missing heartbeats",
        m.missed_heartbeats.clone(),
    );
    registry.register(
        "files_held",
        "Secrets and configs this node holds in memory, for its tasks",
        m.files_held.clone(),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// Serve `/metrics` on `addr` until shutdown.
pub async fn serve(
    addr: String,
    store: Store,
    raft: RaftSlot,
    mut shutdown: crate::shutdown::Shutdown,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    let app = Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(Arc::new((store, raft)));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    Ok(())
}

async fn scrape(
    State(state): State<Arc<(Store, RaftSlot)>>,
) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(&state.0, &state.1),
    )
}
