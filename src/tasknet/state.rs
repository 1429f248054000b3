//! The state dir of a node's task networks, and the record of each task:
//!
//! ```text
//! STATE_DIR/
//!   netns/           a mount point of its own (see netns.rs)
//!     TASK_ID        the task's netns, bind-mounted
//!   tasks/
//!     TASK_ID/
//!       state        address=10.20.3.5, veth=vsh…, complete=true|false
//!       hosts        bind-mounted at /etc/hosts
//!       resolv.conf  bind-mounted at /etc/resolv.conf
//!       hostname     bind-mounted at /etc/hostname
//! ```
//!
//! The record is written before anything is created (so a crash leaves a
//! trace that names the address and the veth to clean) and rewritten with
//! `complete=true` after the last step. Files are replaced by rename, so a
//! reader never sees half of one.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::NetError;

/// Where a temporary file is written before it is renamed into place.
const TMP_SUFFIX: &str = ".tmp";

#[derive(Debug, Clone)]
pub(super) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(super) fn new(root: PathBuf) -> Self {
        Layout { root }
    }

    pub(super) fn netns_dir(&self) -> PathBuf {
        self.root.join("netns")
    }

    pub(super) fn tasks_dir(&self) -> PathBuf {
        self.root.join("tasks")
    }

    pub(super) fn netns(&self, task: &str) -> PathBuf {
        self.netns_dir().join(task)
    }

    pub(super) fn task_dir(&self, task: &str) -> PathBuf {
        self.tasks_dir().join(task)
    }

    pub(super) fn record(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("state")
    }

    pub(super) fn hosts(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("hosts")
    }

    pub(super) fn resolv_conf(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("resolv.conf")
    }

    pub(super) fn hostname(&self, task: &str) -> PathBuf {
        self.task_dir(task).join("hostname")
    }

    /// The task ids that have anything in the state dir: a task dir or a
    /// netns file. Both count, so that leftovers of an interrupted attach
    /// are listed and can be detached.
    pub(super) fn tasks(&self) -> std::io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for dir in [self.tasks_dir(), self.netns_dir()] {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let name = entry?.file_name();
                if let Some(name) = name.to_str() {
                    // Temporary files live inside a task's dir, never here.
                    if super::names::check_task_id(name).is_ok() {
                        ids.push(name.to_string());
                    }
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// What the state dir remembers of a task's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TaskRecord {
    pub address: Ipv4Addr,
    /// The host end of its veth, as created (names.rs derives the same
    /// name, but the record is what was really used).
    pub veth: String,
    /// Every step of the attach is done.
    pub complete: bool,
}

impl TaskRecord {
    pub(super) fn render(&self) -> String {
        format!(
            "address={}\nveth={}\ncomplete={}\n",
            self.address, self.veth, self.complete
        )
    }

    pub(super) fn parse(text: &str) -> Result<TaskRecord, String> {
        let (mut address, mut veth, mut complete) = (None, None, None);
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {line:?} is not key=value"))?;
            match key {
                "address" => {
                    address = Some(
                        value
                            .parse::<Ipv4Addr>()
                            .map_err(|_| format!("address {value:?} is not IPv4"))?,
                    )
                }
                "veth" => veth = Some(value.to_string()),
                "complete" => complete = Some(value == "true"),
                // Unknown keys: written by a newer release; keep going.
                _ => {}
            }
        }
        Ok(TaskRecord {
            address: address.ok_or("no address")?,
            veth: veth.ok_or("no veth")?,
            complete: complete.unwrap_or(false),
        })
    }
}

/// The task's record; None when it has none. A record that cannot be
/// read back is an error naming the file.
pub(super) fn read_record(path: &Path) -> Result<Option<TaskRecord>, NetError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NetError::file("cannot read", path)(e)),
    };
    TaskRecord::parse(&text)
        .map(Some)
        .map_err(|reason| NetError::File {
            what: "corrupt task network record",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
        })
}

/// Writes `contents` to `path` through a temporary file and a rename, and
/// syncs it: a record must survive a power cut once attach has returned.
pub(super) fn write_atomic(path: &Path, contents: &str) -> Result<(), NetError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(NetError::file("cannot write", path))
}

/// Like `write_atomic`, for a secret: readable by root only, from the
/// moment it is created.
pub(super) fn write_private(path: &Path, contents: &str) -> Result<(), NetError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(NetError::file("cannot write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back() {
        let r = TaskRecord {
            address: Ipv4Addr::new(10, 20, 3, 5),
            veth: "vsh0123456789".into(),
            complete: true,
        };
        assert_eq!(TaskRecord::parse(&r.render()).unwrap(), r);
        let partial = TaskRecord::parse("address=10.20.3.6\nveth=vshx\nlater=1\n").unwrap();
        assert!(!partial.complete);
        assert!(TaskRecord::parse("veth=vshx\n").is_err());
        assert!(TaskRecord::parse("address=10.20.3\nveth=v\n").is_err());
        assert!(TaskRecord::parse("garbage").is_err());
    }

    #[test]
    fn tasks_are_listed_from_both_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path().to_path_buf());
        assert!(l.tasks().unwrap().is_empty(), "no dirs yet");
        std::fs::create_dir_all(l.task_dir("a")).unwrap();
        std::fs::create_dir_all(l.task_dir("b")).unwrap();
        std::fs::create_dir_all(l.netns_dir()).unwrap();
        std::fs::write(l.netns("b"), "").unwrap();
        std::fs::write(l.netns("c"), "").unwrap();
        std::fs::write(l.netns_dir().join(".hidden"), "").unwrap();
        assert_eq!(l.tasks().unwrap(), vec!["a", "b", "c"]);
    }

    #[test]
    fn files_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        write_atomic(&p, "one").unwrap();
        write_atomic(&p, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(read_record(&dir.path().join("none")).unwrap().is_none());
        assert!(read_record(&p).is_err());
    }
}
