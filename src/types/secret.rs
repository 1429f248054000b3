//! Secrets and configs: named data that tasks get as files. A config is
//! stored as a secret is (the same shape, a kind of its own); only what
//! the API shows of it differs: a secret's data is never shown.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Meta;

/// The most a secret holds (Swarm's limit).
pub const MAX_SECRET_BYTES: usize = 500 * 1024;
/// The most a config holds (Swarm's limit).
pub const MAX_CONFIG_BYTES: usize = 1000 * 1024;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Immutable: a new value is a new secret (rotation is by name).
    pub data: Bytes,
}

/// Its data never shows in a log or a panic message.
impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSpec")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub id: String,
    pub meta: Meta,
    pub spec: SecretSpec,
}

/// A config: a secret's shape, stored as a kind of its own.
pub type Config = Secret;

/// No release before this one stored secrets or configs, so no value of
/// this type is ever in format 1; the frozen form is today's.
impl crate::format::Versioned for Secret {
    type V1 = Secret;
}

/// A task's use of a secret or a config: which one, and the file it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The secret's (config's) id: a secret removed and created again
    /// under its name is another one.
    pub id: String,
    /// Its name, as the user gave it (shown, and the default target).
    pub name: String,
    /// Where the file is in the container: an absolute path, or a name
    /// under `/run/secrets` (secrets).
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    /// File mode, e.g. 0o444.
    pub mode: u32,
}

impl FileRef {
    /// The file's path in the container: `target` if absolute, else under
    /// `base` (`/run/secrets` for secrets, `/` for configs).
    pub fn path(&self, base: &str) -> String {
        if self.target.starts_with('/') {
            self.target.clone()
        } else {
            format!("{}/{}", base.trim_end_matches('/'), self.target)
        }
    }
}

/// Where a task's secrets are, when their target is not absolute.
pub const SECRETS_DIR: &str = "/run/secrets";

/// The data of a secret or a config, as the managers send it to a node
/// that runs a task using it, inside the node's mTLS session.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileData {
    pub id: String,
    pub data: Bytes,
}

impl std::fmt::Debug for FileData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileData({}, <{} bytes>)", self.id, self.data.len())
    }
}
