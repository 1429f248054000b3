//! A node's secrets and configs: their data, as the managers sent it with
//! the tasks that use them, kept in memory only (never in `agent.redb`,
//! never in a log); and, for each task that uses some, a tmpfs of its own
//! holding its files, which the executor binds into its container. Data
//! that no task of the node needs any more is dropped; a task's tmpfs is
//! unmounted when its container goes.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tracing::warn;

use crate::executor::{ExecError, FileMount};
use crate::types::{FileData, Task, SECRETS_DIR};

/// Where the tmpfs of each task is mounted, under a directory of the
/// daemon's own (several daemons may share a machine).
pub const RUN_DIR: &str = "/run/shoal/files";

#[derive(Clone)]
pub struct Files {
    /// By id. std RwLock: never held across .await.
    data: Arc<RwLock<HashMap<String, Bytes>>>,
    dir: PathBuf,
}

impl Files {
    /// `name` tells this daemon's tasks from another's on the machine
    /// (its containerd namespace).
    pub fn new(name: &str) -> Files {
        Files {
            data: Arc::default(),
            dir: Path::new(RUN_DIR).join(name),
        }
    }

    /// Adds what an increment of assignments brought.
    pub fn update(&self, files: Vec<FileData>) {
        let mut map = self.data.write().unwrap_or_else(|e| e.into_inner());
        for f in files {
            map.insert(f.id, f.data);
        }
        crate::counters::global().files_held.set(map.len() as i64);
    }

    /// Replaces everything: a full set of assignments brings every file
    /// the node's tasks need.
    pub fn replace(&self, files: Vec<FileData>) {
        self.data.write().unwrap_or_else(|e| e.into_inner()).clear();
        self.update(files);
    }

    /// Drops the data that none of `tasks` still to run uses. The managers
    /// apply the same rule to the same set, so they know what the node
    /// keeps and send again what it dropped (stop-first: the old task has
    /// ended before its replacement comes).
    pub fn retain_used<'a>(&self, tasks: impl IntoIterator<Item = &'a Task>) {
        let used: HashSet<&str> = tasks
            .into_iter()
            .filter(|t| t.is_live())
            .flat_map(|t| t.spec.file_ids())
            .collect();
        let mut map = self.data.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|id, _| used.contains(id.as_str()));
        crate::counters::global().files_held.set(map.len() as i64);
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.dir.join(task_id)
    }

    /// The task's files on a tmpfs of its own (mounted now, or found
    /// mounted), and where each goes in its container. None used: nothing
    /// is mounted.
    pub fn mount(&self, task: &Task) -> Result<Vec<FileMount>, ExecError> {
        let s = &task.spec;
        if s.secrets.is_empty() && s.configs.is_empty() {
            return Ok(Vec::new());
        }
        let fail =
            |what: String| ExecError::Other(format!("the task's secrets and configs: {what}"));
        let data = self.data.read().unwrap_or_else(|e| e.into_inner());
        let mut wanted = Vec::new();
        for (prefix, base, refs) in [("s", SECRETS_DIR, &s.secrets), ("c", "/", &s.configs)] {
            for (i, r) in refs.iter().enumerate() {
                let bytes = data
                    .get(&r.id)
                    .ok_or_else(|| fail(format!("{} has not reached this node", r.name)))?;
                wanted.push((format!("{prefix}{i}"), r, base, bytes.clone()));
            }
        }
        drop(data);
        let dir = self.task_dir(&task.id);
        let size: usize = wanted.iter().map(|(_, _, _, b)| b.len() + 4096).sum();
        mount_tmpfs(&dir, size).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        let mut out = Vec::new();
        for (file, r, base, bytes) in wanted {
            let path = dir.join(&file);
            write_file(&path, &bytes, r.mode, r.uid, r.gid)
                .map_err(|e| fail(format!("{}: {e}", r.name)))?;
            out.push(FileMount {
                source: path,
                target: r.path(base),
            });
        }
        Ok(out)
    }

    /// Unmounts the task's tmpfs, if it has one: its files are gone.
    pub fn unmount(&self, task_id: &str) {
        let dir = self.task_dir(task_id);
        if !dir.exists() {
            return;
        }
        if let Err(e) = unmount_dir(&dir) {
            warn!(task = %task_id, error = %e, "cannot remove the task's secrets and configs");
        }
    }

    /// Unmounts the tmpfs of every task not in `keep` (gone while the
    /// daemon was down).
    pub fn unmount_others(&self, keep: &[String]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                self.unmount(&name);
            }
        }
    }
}

/// A tmpfs of at least `size` bytes at `dir` (made, 0700), unless one is
/// mounted there already: a task prepared again finds its files.
fn mount_tmpfs(dir: &Path, size: usize) -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if is_mount_point(dir)? {
        return Ok(());
    }
    let size = size.max(64 * 1024);
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("size={size},mode=0700").as_str()),
    )
    .map_err(std::io::Error::from)
}

fn is_mount_point(dir: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let here = std::fs::metadata(dir)?;
    let parent = std::fs::metadata(dir.join(".."))?;
    Ok(here.dev() != parent.dev())
}

fn write_file(path: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    std::fs::write(path, data)?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn unmount_dir(dir: &Path) -> std::io::Result<()> {
    if is_mount_point(dir)? {
        // Detached: a container still holding a file keeps it until it
        // goes, and nothing here waits for that.
        nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH).map_err(std::io::Error::from)?;
    }
    std::fs::remove_dir(dir)
}
