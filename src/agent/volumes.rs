//! The node's named volumes: `<data dir>/volumes/NAME/_data`, with the
//! volume's labels and creation time beside it (`meta.json`). Made by
//! `volume create` or by the first task that mounts one, kept when tasks
//! go; removed only when a manager, which knows what uses it, asks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::types::{check_volume_name, now_ms, VolumeInfo};

/// The most files a size count walks: a bound on its work.
const SIZE_WALK_MAX: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {0} not found on this node")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("volume {name}: {error}")]
    Io { name: String, error: std::io::Error },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    created_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Volumes {
    root: PathBuf,
}

impl Volumes {
    pub fn at(data_dir: &Path) -> Volumes {
        Volumes {
            root: crate::data_dir::DataDir::at(data_dir).volumes(),
        }
    }

    fn dir(&self, name: &str) -> Result<PathBuf, VolumeError> {
        check_volume_name(name).map_err(VolumeError::Invalid)?;
        Ok(self.root.join(name))
    }

    fn io(name: &str) -> impl Fn(std::io::Error) -> VolumeError + '_ {
        move |error| VolumeError::Io {
            name: name.to_string(),
            error,
        }
    }

    /// The names of the volumes here, sorted.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("_data").is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| check_volume_name(n).is_ok())
            .collect();
        names.sort();
        names
    }

    pub fn get(&self, name: &str) -> Result<VolumeInfo, VolumeError> {
        let dir = self.dir(name)?;
        let data = dir.join("_data");
        if !data.is_dir() {
            return Err(VolumeError::NotFound(name.into()));
        }
        // A missing or damaged meta.json loses labels, never the volume.
        let meta: Meta = std::fs::read(dir.join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(VolumeInfo {
            name: name.into(),
            driver: "local".into(),
            labels: meta.labels,
            created_ms: meta.created_ms,
            mountpoint: data.display().to_string(),
            size_bytes: size_of(&data),
        })
    }

    pub fn list(&self) -> Vec<VolumeInfo> {
        self.names()
            .iter()
            .filter_map(|n| self.get(n).ok())
            .collect()
    }

    /// Makes the volume, or finds it made (its labels then stay).
    pub fn create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<VolumeInfo, VolumeError> {
        let dir = self.dir(name)?;
        if !dir.join("_data").is_dir() {
            let io = Self::io(name);
            std::fs::create_dir_all(&self.root).map_err(&io)?;
            // Made aside and renamed in: a crash leaves no half volume.
            let tmp = self.root.join(format!(".{name}.new"));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(tmp.join("_data")).map_err(&io)?;
            let meta = Meta {
                labels,
                created_ms: now_ms(),
            };
            let json =
                serde_json::to_vec(&meta).map_err(|e| VolumeError::Invalid(e.to_string()))?;
            std::fs::write(tmp.join("meta.json"), json).map_err(&io)?;
            std::fs::rename(&tmp, &dir).map_err(&io)?;
        }
        self.get(name)
    }

    /// The data directory of the volume a task mounts, made if missing.
    pub fn ensure(&self, name: &str) -> Result<PathBuf, VolumeError> {
        let info = self.create(name, BTreeMap::new())?;
        Ok(PathBuf::from(info.mountpoint))
    }

    /// Removes the volume and its data. The caller has checked that no
    /// task uses it.
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        let dir = self.dir(name)?;
        if !dir.join("_data").is_dir() {
            return Err(VolumeError::NotFound(name.into()));
        }
        // Renamed out first: a crash midway leaves no volume that is half
        // there, only a dot-dir the next removal cleans.
        let gone = self.root.join(format!(".{name}.removing"));
        let _ = std::fs::remove_dir_all(&gone);
        std::fs::rename(&dir, &gone).map_err(Self::io(name))?;
        std::fs::remove_dir_all(&gone).map_err(Self::io(name))
    }
}

impl Volumes {
    /// What a manager asked (`crate::rpc::messages::VolumesOp`), then the
    /// volumes that are here.
    pub fn apply(
        &self,
        op: &crate::rpc::messages::VolumesOp,
    ) -> Result<crate::rpc::messages::VolumesReply, VolumeError> {
        let mut removed = Vec::new();
        if let Some(name) = &op.create {
            self.create(name, op.labels.clone())?;
        }
        if let Some(name) = &op.remove {
            self.remove(name)?;
            removed.push(name.clone());
        }
        if op.prune {
            for name in self.names() {
                if !op.keep.contains(&name) {
                    self.remove(&name)?;
                    removed.push(name);
                }
            }
        }
        Ok(crate::rpc::messages::VolumesReply {
            volumes: self.list(),
            removed,
        })
    }
}

/// What the files under `dir` take, counted up to a bound.
fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    let mut seen = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > SIZE_WALK_MAX {
                return total;
            }
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_made_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volumes::at(dir.path());
        assert!(v.names().is_empty());
        let labels = BTreeMap::from([("app".to_string(), "db".to_string())]);
        let info = v.create("pgdata", labels.clone()).unwrap();
        assert_eq!(info.labels, labels);
        std::fs::write(Path::new(&info.mountpoint).join("f"), b"12345").unwrap();
        // Made again: the same volume, its data and labels kept.
        let again = v.create("pgdata", BTreeMap::new()).unwrap();
        assert_eq!((again.labels, again.size_bytes), (labels, 5));
        assert_eq!(
            v.ensure("cache").unwrap(),
            dir.path().join("volumes/cache/_data")
        );
        assert_eq!(v.names(), ["cache", "pgdata"]);
        v.remove("pgdata").unwrap();
        assert!(matches!(v.remove("pgdata"), Err(VolumeError::NotFound(_))));
        assert!(matches!(
            v.create("../x", BTreeMap::new()),
            Err(VolumeError::Invalid(_))
        ));
        assert_eq!(v.names(), ["cache"]);
    }
}
