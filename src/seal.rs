//! Authenticated encryption for data at rest: ChaCha20-Poly1305 from ring
//! (already linked for TLS, so no second crypto crate). A sealed value is
//! `nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//!
//! Nonces are random. With 96-bit nonces the chance of a repeat stays
//! below 2^-32 for the first 2^32 values sealed under one key, far more
//! than a node writes in its life.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the value cannot be opened: wrong key, or the data is damaged")]
    Open,
    #[error("the system random number generator failed")]
    Random,
}

/// What a key is used for. Sealing binds the purpose in as associated
/// data, so a value sealed for one purpose never opens as another (the
/// unlock key seals only keys; the data key seals only stored values).
#[derive(Clone, Copy)]
pub enum Purpose {
    StoredValue,
    KeyFile,
}

impl Purpose {
    fn aad(self) -> Aad<&'static [u8]> {
        Aad::from(match self {
            Purpose::StoredValue => b"shoal stored value v1".as_slice(),
            Purpose::KeyFile => b"shoal key file v1".as_slice(),
        })
    }
}

/// A 256-bit symmetric key.
#[derive(Clone)]
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for SecretKey {
    // Never print a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").finish_non_exhaustive()
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.bytes.ct_eq(&other.bytes).into()
    }
}

impl SecretKey {
    pub fn generate() -> Result<SecretKey, SealError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Random)?;
        Ok(SecretKey::from_bytes(bytes))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .expect("a 32-byte key is valid for ChaCha20-Poly1305");
        SecretKey {
            bytes,
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
        }
    }

    /// The raw key, for writing it into a key file. Secret.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    pub fn seal(&self, purpose: Purpose, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // ring's SystemRandom reads getrandom(2); it does not fail on Linux
        // once the kernel's pool is ready, which it is long before we run.
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("getrandom failed");
        // One buffer, nonce then body then tag: every stored value passes
        // here, and copies of it are what sealing cost besides the cipher.
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + self.key.algorithm().tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                purpose.aad(),
                &mut out[NONCE_LEN..],
            )
            .expect("sealing in place cannot fail");
        out.extend_from_slice(tag.as_ref());
        out
    }

    pub fn open(&self, purpose: Purpose, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut body = body.to_vec();
        let plain_len = self
            .key
            .open_in_place(nonce, purpose.aad(), &mut body)
            .map_err(|_| SealError::Open)?
            .len();
        body.truncate(plain_len);
        Ok(body)
    }
}

/// The key that seals a manager's keys when the cluster is autolocked,
/// shown to the operator as `SHOALKEY-1-<64 hex digits>`.
#[derive(Clone, Debug, PartialEq)]
pub struct UnlockKey(pub SecretKey);

const UNLOCK_PREFIX: &str = "SHOALKEY-1-";

impl UnlockKey {
    pub fn generate() -> Result<UnlockKey, SealError> {
        SecretKey::generate().map(UnlockKey)
    }

    pub fn parse(text: &str) -> Result<UnlockKey, String> {
        let text = text.trim();
        let hex_part = text.strip_prefix(UNLOCK_PREFIX).ok_or_else(|| {
            format!("an unlock key starts with {UNLOCK_PREFIX}; this one does not")
        })?;
        let bytes = hex::decode(hex_part)
            .ok()
            .and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok())
            .ok_or_else(|| {
                format!("an unlock key is {UNLOCK_PREFIX} and 64 hex digits; this one is not")
            })?;
        Ok(UnlockKey(SecretKey::from_bytes(bytes)))
    }

    /// The key as the operator sees it. Secret.
    pub fn display(&self) -> String {
        format!("{UNLOCK_PREFIX}{}", hex::encode_upper(self.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_purpose() {
        let key = SecretKey::generate().unwrap();
        let sealed = key.seal(Purpose::StoredValue, b"web-frontend");
        assert!(!sealed.windows(12).any(|w| w == b"web-frontend"));
        assert_eq!(
            key.open(Purpose::StoredValue, &sealed).unwrap(),
            b"web-frontend"
        );
        assert!(key.open(Purpose::KeyFile, &sealed).is_err());
        let other = SecretKey::generate().unwrap();
        assert!(other.open(Purpose::StoredValue, &sealed).is_err());
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(key.open(Purpose::StoredValue, &damaged).is_err());
        assert!(key.open(Purpose::StoredValue, &[1, 2]).is_err());
        // Two seals of one value differ (fresh nonces).
        assert_ne!(sealed, key.seal(Purpose::StoredValue, b"web-frontend"));
    }

    #[test]
    fn unlock_keys_round_trip_and_bad_ones_are_named() {
        let key = UnlockKey::generate().unwrap();
        let text = key.display();
        assert!(text.starts_with("SHOALKEY-1-"));
        assert_eq!(UnlockKey::parse(&format!(" {text}\n")).unwrap(), key);
        assert!(UnlockKey::parse("SWMKEY-1-abc")
            .unwrap_err()
            .contains("starts with"));
        assert!(UnlockKey::parse("SHOALKEY-1-abc")
            .unwrap_err()
            .contains("64 hex digits"));
    }
}
