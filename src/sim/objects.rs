//! The store objects a simulated cluster starts from: the cluster record,
//! ready workers that have the images, replicated services, and a temp
//! dir per manager. Shared by `shoal bench-sim` and the in-process tests.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::types::*;

/// The image every simulated node has, unless told otherwise.
pub const IMAGE: &str = "docker.io/library/sim:latest";

/// The cluster record. `heartbeat_period_ms` sets how soon a silent node
/// is marked down (three periods).
pub fn cluster(heartbeat_period_ms: u64) -> anyhow::Result<Cluster> {
    Ok(Cluster {
        bind_prefixes: Vec::new(),
        allow_privileged: false,
        id: new_id(),
        meta: Meta::default(),
        heartbeat_period_ms,
        task_history_limit: 5,
        cert_expiry_ms: 90 * 24 * 3600 * 1000,
        // The CA is the fixture's, in memory: nothing here issues certs.
        ca_cert_pem: String::new(),
        ca_key_pem: String::new(),
        join_tokens: crate::tls::JoinTokens::generate(&"0".repeat(64))?,
        removed_nodes: Vec::new(),
        snapshot_interval: crate::types::DEFAULT_SNAPSHOT_INTERVAL,
        restart_grace_ms: crate::types::DEFAULT_RESTART_GRACE_MS,
        unlock_key: None,
        registries: Vec::new(),
        image_gc: Default::default(),
        addr_pool: crate::ipam::DEFAULT_POOL.into(),
    })
}

/// A ready, active worker that has `images`.
pub fn node(id: &str, images: &[&str]) -> Node {
    Node {
        id: id.to_string(),
        meta: Meta::default(),
        spec: NodeSpec {
            role: NodeRole::Worker,
            availability: Availability::Active,
            labels: Default::default(),
        },
        description: NodeDescription {
            hostname: id.to_string(),
            platform: Platform::local(),
            images: images
                .iter()
                .map(|name| ImageInfo {
                    name: name.to_string(),
                    ..Default::default()
                })
                .collect(),
            level: crate::LEVEL,
            ..Default::default()
        },
        status: NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: String::new(),
            held_until_ms: None,
        },
        version: crate::VERSION.into(),
        bridge_subnet: None,
    }
}

/// A replicated service of `replicas` tasks of `image`, with the default
/// restart policy.
pub fn service(name: &str, image: &str, replicas: u64) -> Service {
    let mut task = TaskSpec::default();
    task.container.image = image.into();
    Service {
        id: new_id(),
        meta: Meta::default(),
        spec: ServiceSpec {
            name: name.into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas },
            endpoint_mode: Default::default(),
            update: Default::default(),
            rollback: Default::default(),
            depends_on: Vec::new(),
            task,
        },
        spec_version: 1,
        previous_spec: None,
        vips: Vec::new(),
        update_status: None,
        rebalance: Vec::new(),
    }
}

/// A fresh directory under the system's temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Under the system's temp dir.
    pub fn new(label: &str) -> anyhow::Result<TempDir> {
        TempDir::under(&std::env::temp_dir(), label)
    }

    /// In memory where the system has a tmpfs (`/dev/shm`), else under the
    /// temp dir. For the in-process tests: they test the control plane,
    /// not the disk, and on tmpfs a commit's sync costs nothing, so that a
    /// scenario's time does not depend on what else writes to the disk.
    pub fn in_memory(label: &str) -> anyhow::Result<TempDir> {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            if let Ok(dir) = TempDir::under(shm, label) {
                return Ok(dir);
            }
        }
        TempDir::new(label)
    }

    fn under(base: &Path, label: &str) -> anyhow::Result<TempDir> {
        let path = base.join(format!("shoal-{label}.{}.{}", std::process::id(), new_id()));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
