//! How objects are encoded on disk: one format-version byte, then postcard.
//! Every stored value passes through here, so encryption at rest can be
//! added in this one place.

use serde::{de::DeserializeOwned, Serialize};

use super::StoreError;

/// Bump when a stored type changes shape, and teach `decode` the old one.
const FORMAT_VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // postcard only fails on writer errors, which a Vec never has.
    out.extend(postcard::to_allocvec(value).expect("postcard encoding into a Vec"));
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Decode(e.to_string()))
        }
        Some((v, _)) => Err(StoreError::Decode(format!(
            "unknown format version {v} (this shoal knows {FORMAT_VERSION})"
        ))),
        None => Err(StoreError::Decode("empty value".into())),
    }
}
