//! Named local volumes: a directory of one node's (under its data dir)
//! that outlives the tasks that mount it (`--mount type=volume`). A
//! volume lives on one node; tasks that use it are placed where it is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A volume as its node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    /// `local`: the only driver.
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When the node made it (ms since epoch).
    pub created_ms: i64,
    /// Where its data is on the node.
    pub mountpoint: String,
    /// What its files take on the node's disk, at the time asked.
    #[serde(default)]
    pub size_bytes: u64,
}

/// Whether `name` can name a volume: docker's rule (a letter or digit,
/// then letters, digits, `_`, `.` or `-`), at most 64 characters.
pub fn check_volume_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid volume name {name:?}: 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::check_volume_name;

    #[test]
    fn volume_names_follow_docker() {
        assert!(check_volume_name("pgdata").is_ok());
        assert!(check_volume_name("shop_db-1.0").is_ok());
        for bad in ["", "-x", "a/b", "..", "a b", &"v".repeat(65)] {
            assert!(check_volume_name(bad).is_err(), "{bad:?}");
        }
    }
}
