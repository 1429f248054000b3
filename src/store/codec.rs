//! How values are stored on disk: sealed with the node's data key, around
//! a format byte and the value (`crate::format`). Every stored value (the
//! cluster state, the Raft log and snapshots, the agent's assignments)
//! passes through a `Codec`, so nothing a user wrote is ever on disk in
//! clear.

use serde::Serialize;

use super::StoreError;
use crate::format::{self, Versioned};
use crate::seal::{Purpose, SecretKey};

/// The format byte and the value, not yet sealed: values that the store
/// seals itself (its marks) or that travel inside TLS (snapshots).
pub fn encode_plain<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    format::encode(value)
}

/// Reads a value of any format this build knows (see `crate::format`).
pub fn decode_plain<T: Versioned>(plain: &[u8]) -> Result<T, StoreError> {
    format::decode(plain).map_err(|e| StoreError::Decode(e.to_string()))
}

/// Encodes and seals values with one node's data key.
#[derive(Clone, Debug)]
pub struct Codec {
    key: SecretKey,
}

impl Codec {
    pub fn new(key: SecretKey) -> Codec {
        Codec { key }
    }

    /// A codec with a fresh key, for stores that live only as long as the
    /// process (tests, the simulated benchmark).
    pub fn ephemeral() -> Codec {
        Codec::new(SecretKey::generate().expect("system random"))
    }

    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Vec<u8> {
        self.seal(&encode_plain(value))
    }

    pub fn decode<T: Versioned>(&self, bytes: &[u8]) -> Result<T, StoreError> {
        decode_plain(&self.open(bytes)?)
    }

    /// Seal bytes that are already encoded (a snapshot's values).
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        self.key.seal(Purpose::StoredValue, plain)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.key.open(Purpose::StoredValue, sealed).map_err(|_| {
            StoreError::Decode(
                "a stored value does not open with this node's data key (wrong key, or damaged data)"
                    .into(),
            )
        })
    }
}
