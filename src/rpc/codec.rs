//! The gRPC codecs of shoal's own services: messages are our serde types,
//! so node-to-node traffic needs no second copy of the domain types in
//! protobuf. tonic does the framing, HTTP/2 and streaming; these only turn
//! a message into bytes and back, in one of two formats (docs/formats.md):
//! - `V2Codec` (`shoal.v2` services): MessagePack with field names, so a
//!   node reads messages that have fields it does not know, or lack some;
//! - `V1Codec` (`shoal.v1` services): postcard of the frozen 254a909 types,
//!   for nodes of that release, which speak nothing else.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use serde::Serialize;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use crate::format::{self, Versioned};

/// Which format a peer speaks, named by the package of its services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `shoal.v1`: postcard, 254a909 and earlier.
    V1,
    /// `shoal.v2`: MessagePack with field names.
    V2,
}

impl Proto {
    pub fn encode<T: Serialize + Versioned>(self, item: &T) -> Result<Vec<u8>, Status> {
        match self {
            Proto::V2 => Ok(format::to_msgpack(item)),
            Proto::V1 => {
                // A value the old release cannot express (a new enum
                // variant) fails here, before anything is sent.
                let old: T::V1 = format::transcode(item).map_err(|e| {
                    Status::failed_precondition(format!(
                        "the peer runs an older shoal that cannot take this message: {e}"
                    ))
                })?;
                postcard::to_allocvec(&old).map_err(|e| Status::internal(format!("encode: {e}")))
            }
        }
    }

    pub fn decode<U: Versioned>(self, bytes: &[u8]) -> Result<U, Status> {
        let decoded = match self {
            Proto::V2 => format::from_msgpack(bytes),
            Proto::V1 => postcard::from_bytes::<U::V1>(bytes)
                .map_err(|e| e.to_string())
                .and_then(|old| format::transcode(&old).map_err(|e| e.to_string()))
                .map_err(format::FormatError::from),
        };
        decoded.map_err(|e| Status::invalid_argument(format!("cannot decode a message: {e}")))
    }
}

/// The format a codec type stands for.
pub trait WireFormat: Send + Sync + 'static {
    const PROTO: Proto;
}

pub struct FormatV1;
pub struct FormatV2;

impl WireFormat for FormatV1 {
    const PROTO: Proto = Proto::V1;
}
impl WireFormat for FormatV2 {
    const PROTO: Proto = Proto::V2;
}

/// Named in build.rs as the codec of every method of a package.
pub struct WireCodec<F, T, U>(PhantomData<(F, T, U)>);
pub type V1Codec<T, U> = WireCodec<FormatV1, T, U>;
pub type V2Codec<T, U> = WireCodec<FormatV2, T, U>;

impl<F, T, U> Default for WireCodec<F, T, U> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

impl<F, T, U> Codec for WireCodec<F, T, U>
where
    F: WireFormat,
    T: Serialize + Versioned + Send + 'static,
    U: Versioned + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = WireEncoder<F, T>;
    type Decoder = WireDecoder<F, U>;

    fn encoder(&mut self) -> Self::Encoder {
        WireEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder(PhantomData)
    }
}

pub struct WireEncoder<F, T>(PhantomData<(F, T)>);

impl<F: WireFormat, T: Serialize + Versioned> Encoder for WireEncoder<F, T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&F::PROTO.encode(&item)?);
        Ok(())
    }
}

pub struct WireDecoder<F, U>(PhantomData<(F, U)>);

impl<F: WireFormat, U: Versioned> Decoder for WireDecoder<F, U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        F::PROTO.decode(&bytes).map(Some)
    }
}
