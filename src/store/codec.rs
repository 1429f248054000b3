//! How values are stored on disk: sealed with the node's data key, around
//! one format-version byte and postcard. Every stored value (the cluster
//! state, the Raft log and snapshots, the agent's assignments) passes
//! through a `Codec`, so nothing a user wrote is ever on disk in clear.

use serde::{de::DeserializeOwned, Serialize};

use super::StoreError;
use crate::seal::{Purpose, SecretKey};

/// Bump when a stored type changes shape, and teach `decode` the old one.
const FORMAT_VERSION: u8 = 1;

/// The version byte and postcard, not yet sealed: values that the store
/// seals itself (its marks) or that travel inside TLS (snapshots).
pub fn encode_plain<T: Serialize>(value: &T) -> Vec<u8> {
    let mut plain = vec![FORMAT_VERSION];
    // postcard only fails on writer errors, which a Vec never has.
    plain.extend(postcard::to_allocvec(value).expect("postcard encoding into a Vec"));
    plain
}

pub fn decode_plain<T: DeserializeOwned>(plain: &[u8]) -> Result<T, StoreError> {
    match plain.split_first() {
        Some((&FORMAT_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Decode(e.to_string()))
        }
        Some((v, _)) => Err(StoreError::Decode(format!(
            "unknown format version {v} (this shoal knows {FORMAT_VERSION})"
        ))),
        None => Err(StoreError::Decode("empty value".into())),
    }
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

    pub fn encode<T: Serialize>(&self, value: &T) -> Vec<u8> {
        self.seal(&encode_plain(value))
    }

    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, StoreError> {
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
