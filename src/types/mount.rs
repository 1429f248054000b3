//! What a task mounts besides its image: host paths (bind), memory
//! (tmpfs) and named volumes of its node.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A path of the node, allowed only under the cluster's bind prefixes
    /// (`cluster update --bind-allow`): a bind of `/` is root on the node.
    Bind,
    /// Memory of the node, gone with the task.
    Tmpfs,
    /// A named volume of the node (its `source`), made on first use and
    /// kept when the task goes; tasks that use one are placed on the node
    /// that has it.
    Volume,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Volume => "volume",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Bind: the node's path. Volume: its name. Tmpfs: empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Where it is in the container (absolute).
    pub target: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
    /// Tmpfs: its size in bytes; 0: the kernel's default (half the
    /// node's memory).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tmpfs_size: u64,
    /// Tmpfs: the mode of its root; None: 1777, as docker's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whether `path` is `prefix` or under it, component by component
/// (`/srv/data` is under `/srv`, `/srvx` is not). Both absolute and
/// normalized (see `clean_path`).
pub fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `path` if it is absolute and has no `.`, `..` or empty component (a
/// trailing `/` is dropped), else why not.
pub fn clean_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let bad = trimmed
        .split('/')
        .skip(1)
        .any(|c| c.is_empty() && trimmed != "/" || c == "." || c == "..");
    if bad || trimmed.contains('\0') {
        return Err(format!("{path:?} has an empty, '.' or '..' component"));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_under_prefixes_by_component() {
        assert!(path_under("/srv/data", "/srv"));
        assert!(path_under("/srv", "/srv/"));
        assert!(!path_under("/srvx", "/srv"));
        assert!(path_under("/anything", "/"));
        assert_eq!(clean_path("/srv/data/").unwrap(), "/srv/data");
        assert_eq!(clean_path("/").unwrap(), "/");
        assert!(clean_path("/srv/../etc").is_err());
        assert!(clean_path("srv").is_err());
        assert!(clean_path("/srv//x").is_err());
    }
}
