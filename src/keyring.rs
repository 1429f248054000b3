//! A node's keys at rest, in `<data dir>/keys.pem`.
//!
//! Every node has a data key: every value it stores (cluster state, Raft
//! log and snapshots, the agent's assignments) is sealed with it. The file
//! holds it in one of two forms:
//! - `SHOAL DATA KEY`: the key itself (0600), as Swarm keeps its raft key
//!   beside the TLS key. Encryption is always on; this protects a copy of
//!   the store that is taken without the key file.
//! - `SHOAL SEALED KEYS`: when the cluster is autolocked, the data key and
//!   the node's TLS key, sealed together with the cluster's unlock key. The
//!   plain `tls/node.key` is then removed, so a stolen SD card holds
//!   nothing usable, and the restarted manager waits for `shoal unlock`.
//!
//! Both keys live in one file so that every change (lock, rotate, unlock)
//! is one atomic rename: a crash never leaves them sealed with two
//! different unlock keys.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::seal::{Purpose, SecretKey, UnlockKey, KEY_LEN};
use crate::store::Codec;
use crate::tls::{write_file_atomic, NodeKey};

const PLAIN_TAG: &str = "SHOAL DATA KEY";
const SEALED_TAG: &str = "SHOAL SEALED KEYS";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Io(String),
    #[error("{path} is damaged: {detail}")]
    Damaged { path: String, detail: String },
    #[error("wrong unlock key: it does not open this manager's keys")]
    WrongKey,
}

/// What the sealed form holds.
#[derive(Serialize, Deserialize)]
struct SealedKeys {
    data_key: [u8; KEY_LEN],
    /// The node's TLS key, PKCS#8 PEM, if it had one when sealed.
    node_key_pem: Option<String>,
}

/// The keys file as found on disk at start.
pub enum Opened {
    Ready(Keyring),
    /// Sealed: nothing can be read until the unlock key is given.
    Locked(Locked),
}

pub struct Locked {
    data_dir: PathBuf,
    sealed: Vec<u8>,
}

impl Locked {
    pub fn unlock(&self, key: &UnlockKey) -> Result<Keyring, KeyError> {
        let plain = key
            .0
            .open(Purpose::KeyFile, &self.sealed)
            .map_err(|_| KeyError::WrongKey)?;
        let keys: SealedKeys = postcard::from_bytes(&plain).map_err(|e| KeyError::Damaged {
            path: keys_path(&self.data_dir).display().to_string(),
            detail: e.to_string(),
        })?;
        let ring = Keyring {
            data_dir: self.data_dir.clone(),
            data: SecretKey::from_bytes(keys.data_key),
            state: Mutex::new(State {
                unlock: Some(key.clone()),
                node_key_pem: keys.node_key_pem,
            }),
        };
        // A crash between sealing the keys and removing the plain TLS key
        // leaves both; finish the job.
        if ring.state.lock().unwrap().node_key_pem.is_some() {
            remove_if_there(&node_key_path(&self.data_dir))?;
        }
        Ok(ring)
    }
}

struct State {
    /// The key the file is sealed with; None when it is plain.
    unlock: Option<UnlockKey>,
    /// The TLS key, when it lives sealed in the keys file rather than in
    /// `tls/node.key`.
    node_key_pem: Option<String>,
}

pub struct Keyring {
    data_dir: PathBuf,
    data: SecretKey,
    state: Mutex<State>,
}

fn keys_path(data_dir: &Path) -> PathBuf {
    crate::data_dir::DataDir::at(data_dir).keys()
}

/// Where the node's TLS key is kept while the cluster is not autolocked;
/// when it is, the key lives sealed in the keys file instead, and this file
/// is removed. The keyring decides which, so it owns the path (`pki` reads
/// and writes the key there).
pub fn node_key_path(data_dir: &Path) -> PathBuf {
    crate::data_dir::DataDir::at(data_dir).node_key()
}

fn remove_if_there(path: &Path) -> Result<(), KeyError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(KeyError::Io(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

fn write(path: &Path, tag: &str, contents: Vec<u8>) -> Result<(), KeyError> {
    let text = pem::encode(&pem::Pem::new(tag, contents));
    write_file_atomic(path, text.as_bytes(), 0o600).map_err(|e| KeyError::Io(e.to_string()))
}

impl Keyring {
    /// Reads the keys file, or creates a data key on first start.
    pub fn open(data_dir: &Path) -> Result<Opened, KeyError> {
        let path = keys_path(data_dir);
        let damaged = |detail: String| KeyError::Damaged {
            path: path.display().to_string(),
            detail,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let data = SecretKey::generate().map_err(|e| KeyError::Io(e.to_string()))?;
                write(&path, PLAIN_TAG, data.as_bytes().to_vec())?;
                return Ok(Opened::Ready(Keyring::plain(data_dir, data)));
            }
            Err(e) => return Err(KeyError::Io(format!("cannot read {}: {e}", path.display()))),
        };
        let block = pem::parse(&text).map_err(|e| damaged(e.to_string()))?;
        match block.tag() {
            PLAIN_TAG => {
                let bytes = <[u8; KEY_LEN]>::try_from(block.contents())
                    .map_err(|_| damaged("the data key is not 32 bytes".into()))?;
                Ok(Opened::Ready(Keyring::plain(
                    data_dir,
                    SecretKey::from_bytes(bytes),
                )))
            }
            SEALED_TAG => Ok(Opened::Locked(Locked {
                data_dir: data_dir.to_path_buf(),
                sealed: block.contents().to_vec(),
            })),
            other => Err(damaged(format!("unknown block {other}"))),
        }
    }

    fn plain(data_dir: &Path, data: SecretKey) -> Keyring {
        Keyring {
            data_dir: data_dir.to_path_buf(),
            data,
            state: Mutex::new(State {
                unlock: None,
                node_key_pem: None,
            }),
        }
    }

    /// The codec that seals this node's stored values.
    pub fn codec(&self) -> Codec {
        Codec::new(self.data.clone())
    }

    /// The key the files are sealed with now, if any.
    pub fn unlock_key(&self) -> Option<UnlockKey> {
        self.state.lock().unwrap().unlock.clone()
    }

    /// The node's TLS key: from the sealed keys when locked, else from
    /// `tls/node.key`.
    pub fn node_key(&self) -> Result<NodeKey, crate::tls::TlsError> {
        match &self.state.lock().unwrap().node_key_pem {
            Some(pem) => NodeKey::from_pem(pem),
            None => NodeKey::load(&node_key_path(&self.data_dir)),
        }
    }

    /// Seal the keys with `key`, or with None write them in the clear
    /// again. A no-op when they are already so.
    pub fn seal_with(&self, key: Option<&UnlockKey>) -> Result<(), KeyError> {
        let mut state = self.state.lock().unwrap();
        if state.unlock.as_ref() == key {
            return Ok(());
        }
        let path = keys_path(&self.data_dir);
        let tls_path = node_key_path(&self.data_dir);
        match key {
            Some(key) => {
                let node_key_pem = match &state.node_key_pem {
                    Some(pem) => Some(pem.clone()),
                    None => match std::fs::read_to_string(&tls_path) {
                        Ok(pem) => Some(pem),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(e) => {
                            return Err(KeyError::Io(format!(
                                "cannot read {}: {e}",
                                tls_path.display()
                            )))
                        }
                    },
                };
                let plain = postcard::to_allocvec(&SealedKeys {
                    data_key: *self.data.as_bytes(),
                    node_key_pem: node_key_pem.clone(),
                })
                .expect("postcard into a Vec");
                write(&path, SEALED_TAG, key.0.seal(Purpose::KeyFile, &plain))?;
                // Only once the sealed copy is durable.
                remove_if_there(&tls_path)?;
                *state = State {
                    unlock: Some(key.clone()),
                    node_key_pem,
                };
            }
            None => {
                // The TLS key goes back first: a crash before the keys file
                // is rewritten still finds it sealed there too.
                if let Some(pem) = &state.node_key_pem {
                    write_file_atomic(&tls_path, pem.as_bytes(), 0o600)
                        .map_err(|e| KeyError::Io(e.to_string()))?;
                }
                write(&path, PLAIN_TAG, self.data.as_bytes().to_vec())?;
                *state = State {
                    unlock: None,
                    node_key_pem: None,
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(dir: &Path) -> Keyring {
        match Keyring::open(dir).unwrap() {
            Opened::Ready(k) => k,
            Opened::Locked(_) => panic!("locked"),
        }
    }

    #[test]
    fn sealing_locks_the_keys_and_only_the_unlock_key_opens_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tls")).unwrap();
        let node_key = NodeKey::generate().unwrap();
        node_key.save(&node_key_path(dir.path())).unwrap();
        let ring = ready(dir.path());
        let sealed = ring.codec().encode(&"web-frontend");

        let key = UnlockKey::generate().unwrap();
        ring.seal_with(Some(&key)).unwrap();
        assert!(!node_key_path(dir.path()).exists(), "plain TLS key left");
        let Opened::Locked(locked) = Keyring::open(dir.path()).unwrap() else {
            panic!("not locked after sealing");
        };
        let wrong = UnlockKey::generate().unwrap();
        assert!(matches!(locked.unlock(&wrong), Err(KeyError::WrongKey)));
        let ring = locked.unlock(&key).unwrap();
        assert_eq!(
            ring.codec().decode::<String>(&sealed).unwrap(),
            "web-frontend"
        );
        assert_eq!(
            ring.node_key().unwrap().public_key_raw(),
            node_key.public_key_raw()
        );

        // Rotate, then unseal: the plain files are back and open as before.
        let new = UnlockKey::generate().unwrap();
        ring.seal_with(Some(&new)).unwrap();
        let Opened::Locked(locked) = Keyring::open(dir.path()).unwrap() else {
            panic!("not locked after rotation");
        };
        assert!(locked.unlock(&key).is_err(), "the old key still opens");
        let ring = locked.unlock(&new).unwrap();
        ring.seal_with(None).unwrap();
        let ring = ready(dir.path());
        assert_eq!(
            ring.codec().decode::<String>(&sealed).unwrap(),
            "web-frontend"
        );
        assert_eq!(
            NodeKey::load(&node_key_path(dir.path()))
                .unwrap()
                .public_key_raw(),
            node_key.public_key_raw()
        );
    }

    #[test]
    fn a_damaged_keys_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(keys_path(dir.path()), "not a pem").unwrap();
        let err = Keyring::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("keys.pem is damaged"), "{err}");
    }
}
