//! shoal: a container orchestrator for edge and ARM clusters.
//!
//! Data flows one way, down this list:
//! - `cli`: clap definitions and the client side of every command.
//! - `api`: the control API the CLI talks to (HTTP/JSON on a unix socket).
//! - `store`: redb tables, the `Proposer` (the one write path) and events.
//! - `format`: how stored values and messages are encoded, and read back
//!   from older releases.
//! - `orchestrator`: services → tasks (replicas, restarts, updates).
//! - `scheduler`: pending tasks → nodes.
//! - `leader`: the loops a manager runs while it leads.
//! - `dispatcher`: per-node sessions, assignments and batched status
//!   writes.
//! - `admission`: who the cluster's CA gives a certificate (joins,
//!   renewals).
//! - `agent`: the node side: one state machine per task.
//! - `dns`: the DNS server of tasks on a network (service discovery).
//! - `executor`: the container runtime and the image store, as traits;
//!   containerd, driven through its gRPC API, implements both.
//! - `logs`: the log driver containerd starts, and the reader.
//! - `node`: the node's life: its cluster, its role, and the components
//!   that role runs, changed only by commands to its supervisor.
//! - `host`: what this machine is (hostname, platform, size, images).
//! - `daemon`: wiring only.
//! - `data_dir`: the name of every file in a node's data dir.
//! - `rpc`: node-to-node gRPC over mTLS, in both wire formats.
//! - `sim`: an in-process cluster for tests (real managers, simulated
//!   containers).
//! - `simbench`: `shoal bench-sim`, the control plane against simulated
//!   nodes.

// Modules are internal (`pub(crate)`, so the compiler reports dead code)
// unless the binary (`main.rs`) or the integration tests in `tests/` need
// them: `cli` is the binary's entry, `logs` its log-driver mode; the
// tests drive `rpc`, `tls`, `store`, `executor` and `types` directly, and
// `sim` is their in-process cluster.
pub(crate) mod admission;
pub(crate) mod agent;
pub(crate) mod api;
pub mod cli;
pub(crate) mod compose;
pub(crate) mod counters;
pub(crate) mod daemon;
pub(crate) mod data_dir;
pub(crate) mod devices;
pub(crate) mod discovery;
pub(crate) mod dispatcher;
pub(crate) mod dns;
pub(crate) mod events;
pub mod executor;
pub(crate) mod format;
pub(crate) mod host;
// Address management for task networks (issue 13): the pure part, first.
pub mod ipam;
pub(crate) mod keyring;
pub(crate) mod leader;
pub mod logs;
pub(crate) mod metrics;
pub(crate) mod netaddr;
pub(crate) mod node;
pub(crate) mod notify;
pub(crate) mod orchestrator;
pub(crate) mod pki;
pub(crate) mod raft;
pub mod registry;
pub(crate) mod renewal;
pub mod rpc;
pub(crate) mod scheduler;
pub(crate) mod seal;
pub(crate) mod shutdown;
pub mod sim;
pub(crate) mod simbench;
pub mod store;
pub mod tasknet;
pub mod tls;
pub mod types;

/// The version every node reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What this build can do, reported by every node (`NodeDescription::level`)
/// so that managers can tell what all of a mixed-version cluster supports:
/// 0 is 254a909, 1 adds networks (a new kind of stored object, and tasks
/// with a network namespace of their own), 2 secrets and configs (two new
/// kinds, and tasks that get files a node must know how to mount), 3 task
/// options (mounts, capabilities, devices, sysctls, ulimits, init, hostname
/// templates, seccomp) and the devices a node reports.
pub const LEVEL: u32 = 3;

/// The level at which networks exist.
pub const LEVEL_NETWORKS: u32 = 1;

/// The level at which secrets and configs exist.
pub const LEVEL_SECRETS: u32 = 2;

/// The level at which tasks have options beyond their image, command and
/// environment (see `ContainerSpec::has_options`).
pub const LEVEL_OPTIONS: u32 = 3;

/// `shoal --version`: the version and the git commit it was built from.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SHOAL_GIT_COMMIT"),
    ")"
);
