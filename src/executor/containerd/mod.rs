//! The containerd executor: tasks become containerd containers through its
//! gRPC API only (containerd-client), in one containerd namespace.
//!
//! Files: this one holds the connection, the request helpers (namespace and
//! lease headers, error mapping) and the `Executor` impl, which only
//! delegates. `image.rs` resolves and unpacks images, `load.rs` imports
//! archives, `pull.rs` pulls from registries (`crate::registry`),
//! `spec.rs` builds the OCI spec (pure), `options.rs` adds a task's
//! options to it (devices, privileged, sysctls, ulimits, init) and
//! `seccomp.rs` its filter, `rootfs.rs` reads /etc/passwd from a snapshot,
//! `task.rs` runs containers. It may use `crate::types`, `crate::registry`,
//! `crate::devices` and `crate::logs` (for log paths and the driver's
//! URI), nothing above them.

mod archive;
mod container;
mod disk;
mod exec;
mod image;
mod load;
mod options;
mod pull;
mod rootfs;
mod seccomp;
mod session;
mod spec;
mod task;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{CreateRequest, DeleteRequest};
use tokio::sync::watch;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use futures::future::BoxFuture;

use super::{
    ContainerState, ExecError, Executor, ExitStatus, ImageStore, PullEvent, PullRequest, Pulled,
    Setup,
};
use crate::types::{DiskUsage, ImageInfo, Task};

/// How long `connect` and `ping` wait for containerd. A stale socket (the
/// file exists, nobody serves it) would otherwise hang each call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Label on every container shoal creates; `list` filters on it.
pub const LABEL_TASK_ID: &str = "shoal.task.id";
pub const LABEL_SERVICE_ID: &str = "shoal.service.id";
pub const LABEL_SERVICE_NAME: &str = "shoal.service.name";
pub const LABEL_SLOT: &str = "shoal.slot";
/// The image's HEALTHCHECK, as a task's check (JSON), when it has one.
pub const LABEL_IMAGE_HEALTH: &str = "shoal.image-healthcheck";

#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    pub socket: PathBuf,
    /// The containerd namespace; one per shoal node when nodes share a
    /// containerd. Never `default` in tests.
    pub namespace: String,
    /// shoal's data dir; task logs go under `data_dir/logs`.
    pub data_dir: PathBuf,
    /// The shoal binary, which the shim starts as the log driver.
    pub log_binary: PathBuf,
    /// Cap of each task's logs on disk.
    pub log_max_bytes: u64,
    /// Use containerd's own `file://` logging instead of the driver: both
    /// streams in one raw file, no timestamps, no cap.
    pub log_to_file: bool,
    /// This node's name, for error messages.
    pub node_name: String,
}

impl Default for ContainerdConfig {
    fn default() -> Self {
        ContainerdConfig {
            socket: PathBuf::from("/run/containerd/containerd.sock"),
            namespace: "shoal".into(),
            data_dir: PathBuf::from("/var/lib/shoal"),
            log_binary: std::env::current_exe().unwrap_or_default(),
            log_max_bytes: crate::logs::DEFAULT_MAX_BYTES,
            log_to_file: false,
            node_name: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// The exit of a process this daemon started, filled in by the waiter
/// spawned before `Start`; `Err` carries the waiter's RPC error.
type ExitSlot = watch::Receiver<Option<Result<ExitStatus, String>>>;

pub struct Containerd {
    cfg: ContainerdConfig,
    channel: Channel,
    /// The `containerd-namespace` header value, checked once.
    ns_header: AsciiMetadataValue,
    /// Waiters of the processes started by this daemon, by task id.
    /// std Mutex: never held across .await.
    waiters: Mutex<HashMap<String, ExitSlot>>,
    /// Task ids containerd reported a `/tasks/oom` event for.
    /// std Mutex: never held across .await; shared with the event watcher.
    oom: Arc<Mutex<HashSet<String>>>,
    /// The OOM event watcher; aborted on drop.
    events: tokio::task::JoinHandle<()>,
    /// One lock per image being pulled, so that two tasks of one image
    /// share a pull. std Mutex: never held across .await.
    pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where containerd keeps content and snapshots, once asked.
    roots: std::sync::OnceLock<Vec<String>>,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.events.abort();
    }
}

impl Containerd {
    /// Connects to containerd and checks it answers, within a few seconds.
    pub async fn connect(mut cfg: ContainerdConfig) -> Result<Containerd, ExecError> {
        let ns_header: AsciiMetadataValue = cfg
            .namespace
            .parse()
            .ok()
            .filter(|_| valid_namespace(&cfg.namespace))
            .ok_or_else(|| {
                ExecError::Other(format!("invalid containerd namespace {:?}", cfg.namespace))
            })?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        cfg.data_dir = cwd.join(&cfg.data_dir);
        cfg.log_binary = cwd.join(&cfg.log_binary);
        let unavailable = |reason: String| ExecError::Unavailable {
            socket: cfg.socket.display().to_string(),
            reason,
        };
        if !cfg.log_to_file && !cfg.log_binary.is_file() {
            return Err(ExecError::Other(format!(
                "the log driver binary {} does not exist",
                cfg.log_binary.display()
            )));
        }
        if !cfg.socket.exists() {
            return Err(unavailable("the socket does not exist".into()));
        }
        // One deadline for connecting and a first answer: a hung
        // containerd accepts the connection and then says nothing.
        let attempt = async {
            let channel = containerd_client::connect(&cfg.socket)
                .await
                .map_err(|e| error_chain(&e))?;
            VersionClient::new(channel.clone())
                .version(Request::new(()))
                .await
                .map_err(|s| s.message().to_string())?;
            Ok::<_, String>(channel)
        };
        let channel = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Err(_) => return Err(unavailable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
            Ok(Err(reason)) => return Err(unavailable(reason)),
            Ok(Ok(c)) => c,
        };
        let oom = Arc::new(Mutex::new(HashSet::new()));
        let events = tokio::spawn(task::watch_oom(
            channel.clone(),
            cfg.namespace.clone(),
            oom.clone(),
        ));
        Ok(Containerd {
            cfg,
            channel,
            ns_header,
            waiters: Mutex::new(HashMap::new()),
            oom,
            events,
            pulls: Mutex::new(HashMap::new()),
            roots: std::sync::OnceLock::new(),
        })
    }

    pub fn config(&self) -> &ContainerdConfig {
        &self.cfg
    }

    async fn ping_inner(&self) -> Result<(), ExecError> {
        let mut v = VersionClient::new(self.channel.clone());
        match tokio::time::timeout(CONNECT_TIMEOUT, v.version(Request::new(()))).await {
            Err(_) => Err(ExecError::Unavailable {
                socket: self.cfg.socket.display().to_string(),
                reason: format!("no answer within {CONNECT_TIMEOUT:?}"),
            }),
            Ok(Err(s)) => Err(self.err("version", s)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// A request in our namespace.
    fn req<T>(&self, msg: T) -> Request<T> {
        self.req_leased(msg, None)
    }

    /// A request in our namespace, and under `lease` when given, so that
    /// what it creates (content, snapshots) is kept from GC until the lease
    /// is deleted. `with_namespace!` cannot add the lease header.
    fn req_leased<T>(&self, msg: T, lease: Option<&Lease>) -> Request<T> {
        let mut r = Request::new(msg);
        let md = r.metadata_mut();
        md.insert("containerd-namespace", self.ns_header.clone());
        if let Some(l) = lease {
            md.insert("containerd-lease", l.header.clone());
        }
        r
    }

    /// Maps a containerd error: a broken connection is `Unavailable`,
    /// anything else `Other` with what we were doing. A call under way when
    /// containerd dies ends `Cancelled`, or `Unknown` with tonic's words for
    /// a broken connection: that is containerd going away too.
    fn err(&self, op: &str, s: Status) -> ExecError {
        let broken = s.code() == Code::Unknown
            && ["transport error", "h2 protocol error", "connection"]
                .iter()
                .any(|w| s.message().contains(w));
        match s.code() {
            Code::Unavailable | Code::Cancelled => ExecError::Unavailable {
                socket: self.cfg.socket.display().to_string(),
                reason: s.message().to_string(),
            },
            _ if broken => ExecError::Unavailable {
                socket: self.cfg.socket.display().to_string(),
                reason: s.message().to_string(),
            },
            _ => ExecError::Other(format!("containerd {op}: {}", s.message())),
        }
    }

    /// Creates a lease that expires by itself after an hour, in case we die
    /// before deleting it.
    async fn lease(&self) -> Result<Lease, ExecError> {
        self.lease_named(format!("shoal-{}", random_hex())).await
    }

    /// A lease with a given id, or the one that exists with it: a pull
    /// that failed leaves its lease (and so its partial writes, which GC
    /// would otherwise collect) for the next try to carry on under, until
    /// it expires.
    async fn lease_named(&self, id: String) -> Result<Lease, ExecError> {
        let expire = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let expire = expire
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| ExecError::Other(e.to_string()))?;
        let labels = HashMap::from([("containerd.io/gc.expire".to_string(), expire)]);
        let r = LeasesClient::new(self.channel.clone())
            .create(self.req(CreateRequest {
                id: id.clone(),
                labels,
            }))
            .await;
        match r {
            Ok(_) => {}
            Err(s) if s.code() == Code::AlreadyExists => {}
            Err(s) => return Err(self.err("create lease", s)),
        }
        let header = id
            .parse()
            .map_err(|_| ExecError::Other(format!("bad lease id {id}")))?;
        Ok(Lease { id, header })
    }

    /// Deletes a lease; what it held is now kept only by references (an
    /// image, a container) or collected. Failure only delays cleanup.
    async fn end_lease(&self, lease: Lease) {
        let r = LeasesClient::new(self.channel.clone())
            .delete(self.req(DeleteRequest {
                id: lease.id.clone(),
                sync: false,
            }))
            .await;
        if let Err(e) = r {
            tracing::warn!(lease = %lease.id, error = %e.message(), "cannot delete lease");
        }
    }

    fn log_dir(&self, task_id: &str) -> PathBuf {
        crate::logs::log_dir(&self.cfg.data_dir, task_id)
    }
}

/// A containerd lease held while assembling something.
struct Lease {
    id: String,
    header: AsciiMetadataValue,
}

/// `Ok(None)` for NotFound, so idempotent calls read simply.
fn found<T>(r: Result<T, Status>) -> Result<Option<T>, Status> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s),
    }
}

/// containerd's rule: `[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*`, at most 76.
fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 76
        && ns
            .split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// An error with its sources, since tonic's top-level text is only
/// "transport error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Executor for Containerd {
    fn ping(&self) -> BoxFuture<'_, Result<(), ExecError>> {
        Box::pin(self.ping_inner())
    }

    fn exec<'a>(
        &'a self,
        task_id: &'a str,
        args: &'a [String],
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, Result<crate::executor::ExecOutput, ExecError>> {
        Box::pin(self.exec_in(task_id, args, timeout))
    }

    fn exec_session<'a>(
        &'a self,
        task_id: &'a str,
        spec: crate::executor::ExecSpec,
    ) -> BoxFuture<'a, Result<crate::executor::ExecSession, ExecError>> {
        Box::pin(self.exec_session(task_id, spec))
    }

    fn image_health_check<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<crate::types::HealthCheck>, ExecError>> {
        Box::pin(self.image_health_of(task_id))
    }

    fn prepare<'a>(
        &'a self,
        task: &'a Task,
        setup: &'a Setup,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(self.prepare_container(task, setup))
    }

    fn start<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(self.start_task(&task.id))
    }

    fn wait<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, ExecError>> {
        Box::pin(self.wait_task(task_id))
    }

    fn stop<'a>(
        &'a self,
        task_id: &'a str,
        signal: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(self.stop_task(task_id, signal, grace))
    }

    fn remove<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(self.remove_container(task_id))
    }

    fn inspect<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<ContainerState, ExecError>> {
        Box::pin(self.inspect_container(task_id))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>> {
        Box::pin(self.list_containers())
    }
}

impl ImageStore for Containerd {
    fn images(&self) -> BoxFuture<'_, Result<Vec<ImageInfo>, ExecError>> {
        Box::pin(self.list_images())
    }

    fn load_image<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<Vec<String>, ExecError>> {
        Box::pin(self.load_archive(path))
    }

    fn remove_image<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(self.delete_image(name))
    }

    fn images_in_use(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>> {
        Box::pin(self.container_images())
    }

    fn image_disk(&self) -> BoxFuture<'_, Result<DiskUsage, ExecError>> {
        Box::pin(self.image_disk())
    }

    fn pull_image<'a>(
        &'a self,
        req: &'a PullRequest,
        progress: Option<tokio::sync::mpsc::Sender<PullEvent>>,
    ) -> BoxFuture<'a, Result<Pulled, ExecError>> {
        Box::pin(self.pull(req, progress))
    }

    fn has_image<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<bool, ExecError>> {
        Box::pin(async move { Ok(self.task_image(task).await?.is_some()) })
    }

    fn blobs(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>> {
        Box::pin(self.list_blobs())
    }

    fn read_blob<'a>(
        &'a self,
        digest: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<super::ByteStream, ExecError>> {
        Box::pin(self.serve_blob(digest, offset))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn namespaces_follow_containerd_rules() {
        assert!(super::valid_namespace("shoal"));
        assert!(super::valid_namespace("shoal-test-ab12.x_y"));
        assert!(!super::valid_namespace(""));
        assert!(!super::valid_namespace("-a"));
        assert!(!super::valid_namespace("a b"));
        assert!(!super::valid_namespace("a--b"));
    }
}
