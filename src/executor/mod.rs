//! The executor: how a node turns a task into a container and back, and
//! the image store beside it. The agent drives the executor one step at a
//! time (prepare, start, wait, stop, remove); containerd implements both
//! (`containerd/`). The container id of a task is the task id.

pub mod containerd;

use futures::future::BoxFuture;
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::registry::ImagePlatform;
use crate::types::{ImageInfo, RegistryAccess, Task};

/// A pull, as a task or `image pull` asks for it.
#[derive(Clone)]
pub struct PullRequest {
    /// Normalized reference (`host/repo:tag` or `host/repo@digest`).
    pub image: String,
    /// The digest to fetch instead of what the tag names now (a service's
    /// pinned digest).
    pub digest: Option<String>,
    /// The platform to pick from an index (default: this machine's).
    pub platform: Option<ImagePlatform>,
    /// Credentials, CA and mirrors of the image's registry.
    pub access: Option<RegistryAccess>,
    /// Other nodes to fetch blobs from before the registry (LAN sharing).
    pub peers: Option<std::sync::Arc<dyn BlobPeers>>,
}

/// Where to get a blob, as the managers see it.
#[derive(Debug, Clone, Default)]
pub struct PeerSources {
    pub nodes: Vec<(String, String)>,
    pub wait: Option<Duration>,
}

/// A stream of a blob's bytes from some offset.
pub type ByteStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, String>>;

/// The nodes of the cluster as a source of image blobs: which hold one,
/// and its bytes from an offset. Only digests are asked for; the puller
/// checks every byte against the digest (containerd's commit does).
pub trait BlobPeers: Send + Sync + 'static {
    /// (node id, address) of nodes that hold `digest`, best first; or,
    /// when none does yet, how soon to ask again because another node is
    /// fetching it from the registry (None: fetch it from there).
    fn sources<'a>(&'a self, digest: &'a str) -> BoxFuture<'a, PeerSources>;

    /// This node is still fetching `digest` from the registry: the others
    /// keep waiting for it.
    fn fetching<'a>(&'a self, digest: &'a str) -> BoxFuture<'a, ()>;

    /// This node now holds `digest`: the others may fetch it from here.
    fn have<'a>(&'a self, digest: &'a str) -> BoxFuture<'a, ()>;

    /// The blob from `offset` on, from the node `node_id` at `addr`.
    fn fetch<'a>(
        &'a self,
        node_id: &'a str,
        addr: &'a str,
        digest: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<ByteStream, String>>;
}

impl PullRequest {
    /// The pull a task needs: its image at its pinned digest.
    pub fn for_task(task: &Task, access: Option<RegistryAccess>) -> PullRequest {
        PullRequest {
            image: task.spec.container.image.clone(),
            digest: task.spec.container.image_digest.clone(),
            platform: None,
            access,
            peers: None,
        }
    }
}

/// How a pull goes, for progress bars; sent best effort (never blocks).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum PullEvent {
    /// The manifest is known: what will be fetched.
    Resolved {
        digest: String,
        platform: String,
        layers: Vec<(String, u64)>,
    },
    /// Bytes of one blob stored so far (`done == total` when complete;
    /// `cached` when the node had it already).
    Blob {
        digest: String,
        done: u64,
        total: u64,
        cached: bool,
    },
    /// Another node is fetching this blob from the registry; this one
    /// waits and then fetches it from that node.
    Waiting { digest: String },
    /// Layers are being unpacked into snapshots.
    Unpacking,
}

/// What a pull stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pulled {
    /// The image record's name.
    pub name: String,
    /// The digest of what was pulled (index or manifest).
    pub digest: String,
    /// The platform unpacked here.
    pub platform: String,
    /// Bytes fetched from the registry (0: everything was here).
    pub fetched_bytes: u64,
    /// Bytes fetched from other nodes of the cluster.
    #[serde(default)]
    pub peer_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The task's image is not in the node's image store. The agent turns
    /// this into a `rejected` task: "image X not found on node Y".
    #[error("image {0} not found")]
    ImageNotFound(String),
    #[error(
        "cannot reach containerd at {socket}: {reason}. Is containerd running? \
         Start it with `systemctl start containerd` (or run `containerd &`)"
    )]
    Unavailable { socket: String, reason: String },
    #[error("invalid image archive: {0}")]
    BadArchive(String),
    /// A registry pull failed: the registry's reason, or an image that has
    /// nothing for this node's platform. The task is rejected with it.
    #[error("{0}")]
    Pull(String),
    #[error("{0}")]
    Other(String),
}

/// What containerd knows of a task's container, used to re-adopt
/// containers after a daemon restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// No container with this id.
    Missing,
    /// The container exists but its process was never started (or was
    /// deleted after it exited).
    Created,
    Running {
        pid: u32,
    },
    Exited(ExitStatus),
}

/// What a command run in a task said: its exit code (None: killed at its
/// timeout) and the start of its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: Option<i32>,
    pub output: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub oom_killed: bool,
}

/// A task's own network, set up before its container is made
/// (`crate::tasknet`): the network namespace the container joins, and the
/// files it sees as its `/etc/hosts`, `/etc/resolv.conf` and
/// `/etc/hostname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetFiles {
    pub netns: std::path::PathBuf,
    pub hosts: std::path::PathBuf,
    pub resolv_conf: std::path::PathBuf,
    pub hostname: std::path::PathBuf,
}

/// What the node made for a task before its container.
#[derive(Debug, Default)]
pub struct Setup {
    /// The container's hostname (`hostname_of`); empty: `task_hostname`.
    pub hostname: String,
    /// Its own network; None: the host's.
    pub net: Option<NetFiles>,
    /// Files bound read-only into the container: its secrets and configs,
    /// on a tmpfs of the task's own.
    pub files: Vec<FileMount>,
    /// Its named volumes: name, and the node's directory of its data.
    pub volumes: Vec<(String, std::path::PathBuf)>,
}

/// A file of the node's bound over `target` in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    pub source: std::path::PathBuf,
    pub target: String,
}

/// A task's container's hostname: the first 12 characters of its id, as
/// docker names a container's.
pub fn task_hostname(task_id: &str) -> &str {
    task_id.get(..12).unwrap_or(task_id)
}

/// The hostname of a task's container on the node named `node_hostname`:
/// its `--hostname` with the placeholders filled in, else the start of
/// its id.
pub fn hostname_of(task: &Task, node_hostname: &str) -> String {
    let task_name = task.display_name();
    let named = task.spec.container.hostname.as_deref().map(|t| {
        let vars = crate::types::HostnameVars {
            node_id: task.node_id.as_deref().unwrap_or(""),
            node_hostname,
            service_id: &task.service_id,
            service_name: &task.service_name,
            task_id: &task.id,
            task_name: &task_name,
            task_slot: task.slot,
        };
        crate::types::expand_hostname(t, &vars)
    });
    match named.filter(|h| !h.is_empty()) {
        Some(h) => h,
        None => task_hostname(&task.id).to_string(),
    }
}

/// What `shoal exec` runs in a task.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// A terminal of its own: its output is one stream.
    pub tty: bool,
    /// Input is sent (else the process reads nothing).
    pub stdin: bool,
    /// `uid[:gid]`; None: the task's own.
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Added to the task's environment.
    pub env: Vec<String>,
    pub cols: u16,
    pub rows: u16,
}

/// Output of a `shoal exec` process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecChunk {
    Stdout(bytes::Bytes),
    Stderr(bytes::Bytes),
}

/// A running `shoal exec` process: its input (dropping the sender ends
/// it), its output, terminal resizes, and its exit code once its output
/// is all read. Dropping the session kills the process if it still runs.
pub struct ExecSession {
    pub stdin: Option<mpsc::Sender<bytes::Bytes>>,
    pub output: mpsc::Receiver<ExecChunk>,
    pub resize: mpsc::Sender<(u16, u16)>,
    pub exit: tokio::sync::oneshot::Receiver<Result<i32, String>>,
    /// Held for its drop: the process is killed when the session goes.
    pub cancel: tokio::sync::oneshot::Sender<()>,
}

/// A node's container runtime: the task's life, one step at a time. Every
/// call is idempotent: calling `prepare` for a container that exists, or
/// `remove` for one that is gone, succeeds. This is what lets the agent
/// re-run steps after a restart without duplicating anything. Futures are
/// boxed so that the daemon can hold any executor (`Arc<dyn Executor>`):
/// containerd, or the simulated one of the in-process tests.
pub trait Executor: Send + Sync + 'static {
    /// Check the runtime is reachable.
    fn ping(&self) -> BoxFuture<'_, Result<(), ExecError>>;

    /// Runs `args` in the running task's container, as its own process
    /// runs (user, env, cwd), killed after `timeout` (a health check).
    fn exec<'a>(
        &'a self,
        task_id: &'a str,
        args: &'a [String],
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, ExecError>>;

    /// Starts `spec` in the running task's container, interactively
    /// (`shoal exec`).
    fn exec_session<'a>(
        &'a self,
        task_id: &'a str,
        spec: ExecSpec,
    ) -> BoxFuture<'a, Result<ExecSession, ExecError>>;

    /// The health check of the task's image (its `HEALTHCHECK`), if it
    /// has one; asked once the container exists.
    fn image_health_check<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<crate::types::HealthCheck>, ExecError>>;

    /// Create the container (snapshot + container record + OCI spec) for the
    /// task, with what the node set up for it (its network, else the
    /// host's; its files). `ImageNotFound` when the image is not present
    /// locally.
    fn prepare<'a>(
        &'a self,
        task: &'a Task,
        setup: &'a Setup,
    ) -> BoxFuture<'a, Result<(), ExecError>>;

    /// Create and start the container's process, logging through the shoal
    /// log driver. A container that is already running is left alone.
    fn start<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<(), ExecError>>;

    /// Wait for the process to exit. Works for a process started by this
    /// daemon and for one adopted after a restart.
    fn wait<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, ExecError>>;

    /// Send `signal` (e.g. "SIGTERM"), then SIGKILL after `grace`. Returns
    /// once the process is gone. No-op when nothing runs.
    fn stop<'a>(
        &'a self,
        task_id: &'a str,
        signal: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), ExecError>>;

    /// Remove the process, the container and its snapshot.
    fn remove<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), ExecError>>;

    fn inspect<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<ContainerState, ExecError>>;

    /// Ids of every container shoal made in its namespace.
    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>>;
}

/// A node's images, apart from its containers: what the scheduler is told
/// the node has, and what `image load/ls/rm` act on. Registry pulls and
/// sharing images over the LAN plug in here, beside tarball loads.
pub trait ImageStore: Send + Sync + 'static {
    /// The images present, with the platforms each can run on.
    fn images(&self) -> BoxFuture<'_, Result<Vec<ImageInfo>, ExecError>>;

    /// Import an OCI-layout or `docker save` tarball. Returns the
    /// normalized names of the images it held.
    fn load_image<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<Vec<String>, ExecError>>;

    /// Removes the image record and, before it returns, the content and
    /// snapshots no other image uses (the disk is freed when it returns).
    fn remove_image<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ExecError>>;

    /// The image names the containers here were made from.
    fn images_in_use(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>>;

    /// How full the disk that holds the images is.
    fn image_disk(&self) -> BoxFuture<'_, Result<crate::types::DiskUsage, ExecError>>;

    /// Pull an image from its registry, streaming each blob into the
    /// image store and unpacking it for `req.platform`. Two pulls of the
    /// same image share one.
    fn pull_image<'a>(
        &'a self,
        req: &'a PullRequest,
        progress: Option<mpsc::Sender<PullEvent>>,
    ) -> BoxFuture<'a, Result<Pulled, ExecError>>;

    /// Whether the image a task runs is here (at its pinned digest).
    fn has_image<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<bool, ExecError>>;

    /// Digests of the blobs held (committed), for peers to fetch.
    fn blobs(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>>;

    /// A committed blob from `offset` on; `ImageNotFound` if it is not
    /// held (or only partly written).
    fn read_blob<'a>(
        &'a self,
        digest: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<ByteStream, ExecError>>;
}
