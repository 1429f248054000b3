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

    /// The subnet of the node's bridge, as the managers gave it: known
    /// after a restart before any manager answers, so that tasks that
    /// ended meanwhile can be given back their addresses.
    pub fn bridge_subnet(self) -> PathBuf {
        self.0.join("bridge-subnet")
    }

    /// The node's WireGuard private key (base64, mode 0600): made once, so
    /// that a restart keeps the public key the other nodes have.
    /// The node's named volumes: `volumes/NAME/_data` each.
    pub fn volumes(self) -> PathBuf {
        self.0.join("volumes")
    }

    pub fn overlay_key(self) -> PathBuf {
        self.0.join("overlay.key")
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

/// Open (or create) one of the data dir's redb files, checking every page
/// first. redb trusts a file it closed cleanly and may panic on one damaged
/// outside it (a bad SD card sector); checked, the damage is an error that
/// the caller can explain, and the daemon never aborts on it.
pub fn open_redb(path: &Path) -> Result<redb::Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_check_integrity_on_open(true)
        .create(path)
}

/// Whether an open failed because the file is damaged (as opposed to, say,
/// a permission or a full disk).
pub fn is_damaged(e: &redb::DatabaseError) -> bool {
    matches!(
        e,
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))
    )
}

/// What to do when a manager's copy of the cluster state is damaged. The
/// state is the cluster's, replicated on the other managers: this node gets
/// it back by joining again.
pub fn recovery(data_dir: &Path) -> String {
    format!(
        "To recover: on another manager, `shoal node rm --force` this node; then stop this daemon, move {} aside, start it and `shoal join` again. The only manager of a cluster keeps its state nowhere else: restore its data dir from a backup",
        data_dir.display()
    )
}
