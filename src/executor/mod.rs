//! The executor: how a node turns a task into a container and back.
//! The agent drives it one step at a time (prepare, start, wait, stop,
//! remove); containerd is the one implementation (`containerd/`). The
//! container id of a task is the task id.

pub mod containerd;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::types::{ImageInfo, Task};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub oom_killed: bool,
}

/// Every call is idempotent: calling `prepare` for a container that exists,
/// or `remove` for one that is gone, succeeds. This is what lets the agent
/// re-run steps after a restart without duplicating anything.
pub trait Executor: Send + Sync + 'static {
    /// Check containerd is reachable.
    fn ping(&self) -> impl Future<Output = Result<(), ExecError>> + Send;

    /// Create the container (snapshot + container record + OCI spec) for the
    /// task. `ImageNotFound` when the image is not present locally.
    fn prepare(&self, task: &Task) -> impl Future<Output = Result<(), ExecError>> + Send;

    /// Create and start the container's process, logging through the shoal
    /// log driver. A container that is already running is left alone.
    fn start(&self, task: &Task) -> impl Future<Output = Result<(), ExecError>> + Send;

    /// Wait for the process to exit. Works for a process started by this
    /// daemon and for one adopted after a restart.
    fn wait(&self, task_id: &str) -> impl Future<Output = Result<ExitStatus, ExecError>> + Send;

    /// Send `signal` (e.g. "SIGTERM"), then SIGKILL after `grace`. Returns
    /// once the process is gone. No-op when nothing runs.
    fn stop(
        &self,
        task_id: &str,
        signal: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), ExecError>> + Send;

    /// Remove the process, the container and its snapshot.
    fn remove(&self, task_id: &str) -> impl Future<Output = Result<(), ExecError>> + Send;

    fn inspect(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<ContainerState, ExecError>> + Send;

    /// Ids of every container shoal made in its namespace.
    fn list(&self) -> impl Future<Output = Result<Vec<String>, ExecError>> + Send;

    fn images(&self) -> impl Future<Output = Result<Vec<ImageInfo>, ExecError>> + Send;

    /// Import an OCI-layout or `docker save` tarball. Returns the
    /// normalized names of the images it held.
    fn load_image(
        &self,
        path: &Path,
    ) -> impl Future<Output = Result<Vec<String>, ExecError>> + Send;

    fn remove_image(&self, name: &str) -> impl Future<Output = Result<(), ExecError>> + Send;
}
