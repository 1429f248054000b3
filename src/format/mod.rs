//! How shoal encodes what it stores, and how those encodings evolve
//! (docs/formats.md says it in full).
//!
//! Every stored value starts with one format byte:
//! - `2` (written today): MessagePack with named fields. A reader ignores
//!   fields it does not know and takes a missing `Option` as `None` (other
//!   new fields need `#[serde(default)]`), so adding an optional field
//!   needs no migration and no version step.
//! - `1` (written by 254a909 and earlier): postcard, which is not
//!   self-describing. It is read through frozen copies of the types as they
//!   were then (`v1`), then carried into today's types by field name, the
//!   same way as an old `2` value.
//!
//! This module knows no other part of shoal: the types that are stored say
//! which frozen type reads their `1` form (`Versioned`), next to their
//! definitions.

pub mod v1;

use serde::{de::DeserializeOwned, Serialize};

/// The format byte of values written by this build.
pub const CURRENT: u8 = 2;
/// The postcard format of 254a909 and earlier.
pub const POSTCARD_V1: u8 = 1;

/// A value that is stored, or sent, and may have been written by an older
/// shoal. `V1` is the frozen copy of the type as 254a909 defined it.
pub trait Versioned: DeserializeOwned {
    type V1: DeserializeOwned + Serialize;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(String);

impl From<String> for FormatError {
    fn from(e: String) -> Self {
        FormatError(e)
    }
}

/// The format byte and the value, as MessagePack with named fields.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![CURRENT];
    // Encoding into a Vec fails only for types MessagePack cannot express
    // (maps with unencodable keys), and none of ours is one; the tests
    // encode every stored type.
    rmp_serde::encode::write_named(&mut out, value).expect("MessagePack encoding into a Vec");
    out
}

/// Reads a value written by this build or by any older one.
pub fn decode<T: Versioned>(bytes: &[u8]) -> Result<T, FormatError> {
    match bytes.split_first() {
        Some((&CURRENT, rest)) => from_msgpack(rest),
        Some((&POSTCARD_V1, rest)) => {
            let old: T::V1 = postcard::from_bytes(rest)
                .map_err(|e| FormatError(format!("a value of format 1: {e}")))?;
            transcode(&old)
        }
        Some((v, _)) => Err(FormatError(format!(
            "unknown format {v}: written by a newer shoal (this one reads formats 1 to {CURRENT})"
        ))),
        None => Err(FormatError("empty value".into())),
    }
}

/// How long `encode(value)` is, without keeping the bytes: the size check
/// of a write, before it is sent, costs no copy of the write.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(1);
    rmp_serde::encode::write_named(&mut count, value).expect("MessagePack encoding");
    count.0
}

/// Encodes `value` without the format byte, for messages whose format is
/// known from where they travel.
pub fn to_msgpack<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("MessagePack encoding into a Vec")
}

pub fn from_msgpack<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FormatError> {
    rmp_serde::from_slice(bytes).map_err(|e| FormatError(e.to_string()))
}

/// Carries a value into another type with the same field names: the
/// fields both have are kept, new optional fields are left empty, and
/// fields only `A` has are dropped.
pub fn transcode<A: Serialize, B: DeserializeOwned>(value: &A) -> Result<B, FormatError> {
    from_msgpack(&to_msgpack(value))
        .map_err(|e| FormatError(format!("carrying a value into this version's type: {e}")))
}

/// Types whose `1` form is themselves: leaf types that no release changed.
macro_rules! unchanged {
    ($($t:ty),* $(,)?) => {$(
        impl Versioned for $t {
            type V1 = $t;
        }
    )*};
}
unchanged!(String, u64, i64, Vec<u8>);

impl<T: Versioned> Versioned for Option<T> {
    type V1 = Option<T::V1>;
}

#[cfg(test)]
mod tests;
