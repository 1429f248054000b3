//! Every file and folder of a node's data dir, named once. A leaf module:
//! the store, Raft, the agent, the keys and the daemon all ask it for
//! their paths, so a file is never spelled in two places.

use std::path::{Path, PathBuf};

/// A node's data dir (`--data-dir`, default `/var/lib/shoal`).
#[derive(Debug, Clone, Copy)]
pub struct DataDir<'a>(&'a Path);

impl<'a> DataDir<'a> {
    pub fn at(root: &'a Path) -> DataDir<'a> {
        DataDir(root)
    }

    /// The cluster state (redb), on managers; present but unused on workers.
    pub fn state(self) -> PathBuf {
        self.0.join("state.redb")
    }

    /// The Raft log and vote (redb): only managers have one.
    pub fn raft_log(self) -> PathBuf {
        self.0.join("raft.redb")
    }

    /// The last Raft snapshot, one file replaced atomically.
    pub fn raft_snapshot(self) -> PathBuf {
        self.0.join("raft-snapshot")
    }

    /// The agent's last assignments (redb), to re-adopt containers.
    pub fn agent(self) -> PathBuf {
        self.0.join("agent.redb")
    }

    /// Which cluster this node is in, and as what (JSON).
    pub fn identity(self) -> PathBuf {
        self.0.join("identity.json")
    }

    /// The managers a worker reconnects to (JSON).
    pub fn managers(self) -> PathBuf {
        self.0.join("managers.json")
    }

    /// The data key, plain or sealed with the unlock key (PEM).
    pub fn keys(self) -> PathBuf {
        self.0.join("keys.pem")
    }

    /// The node's certificate, the CA's, and (unless autolocked) its key.
    pub fn tls(self) -> PathBuf {
        self.0.join("tls")
    }

    /// The node's TLS key while the cluster is not autolocked; when it is,
    /// the key lives sealed in `keys` and this file is removed.
    pub fn node_key(self) -> PathBuf {
        self.tls().join("node.key")
    }
}
