//! Container logs: where they live, what one line looks like, the log
//! driver that containerd's shim starts (`driver`) and the reader behind
//! `shoal logs` (`reader`).
//!
//! Layout: `<data_dir>/logs/<task_id>/container.log`, plus
//! `container.log.1` once the driver has rotated. Each line of those files
//! is one JSON [`LogLine`]. With the `file://` fallback (no driver) the file
//! holds the raw bytes of both streams instead; the reader copes with both.
//! This module uses only std, serde and tokio: it knows nothing of
//! containerd beyond the argv/fd contract documented in `driver`.

pub mod driver;
mod reader;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use reader::read;

/// The file the driver appends to.
pub const LOG_FILE: &str = "container.log";
/// The previous file, kept after a rotation.
pub const ROTATED_LOG_FILE: &str = "container.log.1";
/// Default cap of a task's logs on disk (both files together).
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Which of the container's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of container output, as stored and as streamed to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339 UTC with nanoseconds, fixed width (so lines sort as text).
    /// Empty for lines written by the `file://` fallback, which has no
    /// timestamps.
    pub ts: String,
    pub stream: Stream,
    /// The line without its trailing newline. Invalid UTF-8 is replaced.
    pub line: String,
}

/// The directory holding a task's logs.
pub fn log_dir(data_dir: &Path, task_id: &str) -> PathBuf {
    data_dir.join("logs").join(task_id)
}
