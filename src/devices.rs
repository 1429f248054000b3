//! The node's device files: those it reports (so that tasks asking for a
//! device are placed where it is), and what one is (its type and numbers)
//! for a task's runtime spec and cgroup rule.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::types::MAX_REPORTED_DEVICES;

/// Where /dev keeps what is not a device of the machine: skipped.
const SKIP: &[&str] = &[
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/dev/hugepages",
    "/dev/fd",
];

/// How deep under /dev a device is looked for (`/dev/bus/usb/001/002`
/// is 4 deep; `/dev/serial/by-id/…` 3).
const MAX_DEPTH: usize = 5;

/// A character or block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevNode {
    /// Its path on the node.
    pub path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices under `root` (the node's /dev), and links to devices
/// there, sorted, at most `MAX_REPORTED_DEVICES`.
pub fn scan(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, 0, &mut out);
    out.sort();
    if out.len() > MAX_REPORTED_DEVICES {
        tracing::warn!(
            found = out.len(),
            "more devices than a node reports: the first {MAX_REPORTED_DEVICES} are"
        );
        out.truncate(MAX_REPORTED_DEVICES);
    }
    out
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        // A bound on the work, whatever /dev holds.
        if out.len() > 4 * MAX_REPORTED_DEVICES {
            return;
        }
        let path = e.path();
        let Some(name) = path.to_str() else { continue };
        if SKIP.contains(&name) {
            continue;
        }
        let Ok(own) = e.file_type() else { continue };
        if own.is_dir() {
            if depth < MAX_DEPTH {
                walk(&path, depth + 1, out);
            }
            continue;
        }
        // A link counts when it leads to a device (never followed into a
        // directory: no loops).
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_char_device() || ft.is_block_device() {
            out.push(name.to_string());
        }
    }
}

/// The device at `path` (a link is followed), or every device under it
/// when it is a directory (at most `MAX_REPORTED_DEVICES`, as reported):
/// each with the node's path it was found at.
pub fn lookup(path: &str) -> Result<Vec<DevNode>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("device {path} on this node: {e}"))?;
    if meta.is_dir() {
        let found: Vec<DevNode> = scan(Path::new(path))
            .iter()
            .filter_map(|p| one(p).ok())
            .collect();
        if found.is_empty() {
            return Err(format!("{path} on this node holds no device"));
        }
        return Ok(found);
    }
    Ok(vec![one(path)?])
}

fn one(path: &str) -> Result<DevNode, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("device {path} on this node: {e}"))?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return Err(format!("{path} on this node is not a device"));
    };
    let rdev = meta.rdev();
    Ok(DevNode {
        path: path.to_string(),
        kind,
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_null_is_a_character_device_and_reported() {
        let null = lookup("/dev/null").unwrap();
        assert_eq!((null[0].kind, null[0].major, null[0].minor), ('c', 1, 3));
        assert!(scan(Path::new("/dev")).contains(&"/dev/null".to_string()));
        let e = lookup("/etc/hostname").unwrap_err();
        assert!(e.contains("not a device"), "{e}");
        assert!(lookup("/dev/shoal-no-such").is_err());
    }
}
