//! Join tokens: `SHOAL-1-<ca digest>-<secret>`.
//!
//! Both parts are lowercase base 36 with a fixed width, like Swarm's
//! `SWMTKN-1-…` tokens: the digest is the SHA-256 of the root CA's DER
//! (256 bits → 50 characters), the secret 128 random bits (→ 25
//! characters), 84 characters in all. Base 36 rather than hex keeps the
//! token short enough to type on a Pi's console. Inside, the digest is kept
//! as lowercase hex, the form `RootCa::digest()` and the bootstrap config use.
//!
//! A token does not say its role. The cluster keeps two (`JoinTokens`), one
//! for workers and one for managers; the role is the one whose secret
//! matches. Secrets are compared in constant time (`subtle`), and both are
//! always compared, so timing tells nothing about either.

use std::fmt;

use subtle::ConstantTimeEq;

use super::{Role, TlsError};

/// Every token starts with this; the `1` is the format version.
pub const TOKEN_PREFIX: &str = "SHOAL-1-";

const DIGEST_BYTES: usize = 32;
const DIGEST_CHARS: usize = 50;
const SECRET_BYTES: usize = 16;
const SECRET_CHARS: usize = 25;
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// One join token. `Display` prints the full token (it is meant to be
/// shown to the operator); `Debug` hides the secret, so logs never leak it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct JoinToken {
    ca_digest: [u8; DIGEST_BYTES],
    secret: [u8; SECRET_BYTES],
}

impl JoinToken {
    /// A new token for the CA with this digest (lowercase hex, as from
    /// `RootCa::digest()`), with a fresh random secret.
    pub fn generate(ca_digest_hex: &str) -> Result<JoinToken, TlsError> {
        Ok(JoinToken {
            ca_digest: digest_from_hex(ca_digest_hex)?,
            secret: rand::random(),
        })
    }

    /// Parses a token as a user typed or pasted it (surrounding whitespace
    /// and letter case are forgiven).
    pub fn parse(s: &str) -> Result<JoinToken, TlsError> {
        let s = s.trim();
        let rest = s
            .strip_prefix(TOKEN_PREFIX)
            .or_else(|| {
                // Forgive case in the prefix too (e.g. typed from a photo).
                s.get(..TOKEN_PREFIX.len())
                    .filter(|p| p.eq_ignore_ascii_case(TOKEN_PREFIX))
                    .map(|_| &s[TOKEN_PREFIX.len()..])
            })
            .ok_or(TlsError::MalformedToken("it does not start with SHOAL-1-"))?;
        let (digest, secret) = rest
            .split_once('-')
            .ok_or(TlsError::MalformedToken("the secret part is missing"))?;
        if digest.len() != DIGEST_CHARS {
            return Err(TlsError::MalformedToken(
                "the CA digest has the wrong length",
            ));
        }
        if secret.len() != SECRET_CHARS {
            return Err(TlsError::MalformedToken("the secret has the wrong length"));
        }
        Ok(JoinToken {
            ca_digest: base36_decode(digest).ok_or(TlsError::MalformedToken(
                "the CA digest is not valid base 36",
            ))?,
            secret: base36_decode(secret)
                .ok_or(TlsError::MalformedToken("the secret is not valid base 36"))?,
        })
    }

    /// The pinned root CA digest, lowercase hex (compare with
    /// `RootCa::digest()`, or pass to `bootstrap_client_config`).
    pub fn ca_digest(&self) -> String {
        hex::encode(self.ca_digest)
    }

    /// True if both tokens carry the same secret; constant time.
    fn secret_matches(&self, other: &JoinToken) -> subtle::Choice {
        self.secret.ct_eq(&other.secret)
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}{}-{}",
            base36_encode(&self.ca_digest, DIGEST_CHARS),
            base36_encode(&self.secret, SECRET_CHARS)
        )
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JoinToken({TOKEN_PREFIX}{}-<secret>)",
            base36_encode(&self.ca_digest, DIGEST_CHARS)
        )
    }
}

impl std::str::FromStr for JoinToken {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JoinToken::parse(s)
    }
}

impl From<JoinToken> for String {
    fn from(t: JoinToken) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for JoinToken {
    type Error = TlsError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        JoinToken::parse(&s)
    }
}

/// The cluster's two current tokens (part of the cluster object).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinTokens {
    pub worker: JoinToken,
    pub manager: JoinToken,
}

impl JoinTokens {
    /// Two fresh tokens for the CA with this digest (hex).
    pub fn generate(ca_digest_hex: &str) -> Result<JoinTokens, TlsError> {
        Ok(JoinTokens {
            worker: JoinToken::generate(ca_digest_hex)?,
            manager: JoinToken::generate(ca_digest_hex)?,
        })
    }

    /// The token for `role`.
    pub fn get(&self, role: Role) -> &JoinToken {
        match role {
            Role::Worker => &self.worker,
            Role::Manager => &self.manager,
        }
    }

    /// Replaces `role`'s token with a fresh secret; the old one stops
    /// working at once. Returns the new token.
    pub fn rotate(&mut self, role: Role) -> &JoinToken {
        let fresh = JoinToken {
            ca_digest: self.get(role).ca_digest,
            secret: rand::random(),
        };
        let slot = match role {
            Role::Worker => &mut self.worker,
            Role::Manager => &mut self.manager,
        };
        *slot = fresh;
        slot
    }

    /// The role a presented token grants, or why it grants none. Both
    /// secrets are compared in full, whatever the first comparison gave.
    pub fn check(&self, presented: &JoinToken) -> Result<Role, TlsError> {
        // The digest is public (it is the CA's hash), so a plain compare is
        // fine; it gives the clearer error for a token of another cluster.
        if presented.ca_digest != self.worker.ca_digest {
            return Err(TlsError::TokenWrongCluster);
        }
        let worker = self.worker.secret_matches(presented);
        let manager = self.manager.secret_matches(presented);
        if bool::from(worker) {
            Ok(Role::Worker)
        } else if bool::from(manager) {
            Ok(Role::Manager)
        } else {
            Err(TlsError::TokenRefused)
        }
    }
}

fn digest_from_hex(s: &str) -> Result<[u8; DIGEST_BYTES], TlsError> {
    let mut out = [0u8; DIGEST_BYTES];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| {
        TlsError::BadCert(format!("CA digest must be 64 hex characters, got {s:?}"))
    })?;
    Ok(out)
}

/// Big-endian bytes → exactly `width` base-36 digits (zero padded).
/// `width` must be enough for the byte count (50 for 32, 25 for 16).
fn base36_encode(bytes: &[u8], width: usize) -> String {
    let mut num = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        // num /= 36, keeping the remainder: schoolbook long division.
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 36) as u8;
            rem = acc % 36;
        }
        *slot = ALPHABET[rem as usize];
    }
    debug_assert!(num.iter().all(|&b| b == 0), "width too small");
    String::from_utf8(digits).expect("alphabet is ASCII")
}

/// Base-36 digits (either case) → exactly N big-endian bytes; None on a bad
/// character or a value that does not fit in N bytes.
fn base36_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    for c in s.bytes() {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            b'A'..=b'Z' => c - b'A' + 10,
            _ => return None,
        };
        // out = out * 36 + d
        let mut carry = u32::from(d);
        for b in out.iter_mut().rev() {
            let acc = u32::from(*b) * 36 + carry;
            *b = acc as u8;
            carry = acc >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn generate_display_parse_round_trip() {
        let t = JoinToken::generate(DIGEST).unwrap();
        let s = t.to_string();
        assert!(s.starts_with(TOKEN_PREFIX));
        assert_eq!(
            s.len(),
            TOKEN_PREFIX.len() + DIGEST_CHARS + 1 + SECRET_CHARS
        );
        let back = JoinToken::parse(&s).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.ca_digest(), DIGEST);
        // Pasted with a newline, or in capitals.
        assert_eq!(JoinToken::parse(&format!("  {s}\n")).unwrap(), t);
        assert_eq!(JoinToken::parse(&s.to_uppercase()).unwrap(), t);
    }

    #[test]
    fn base36_round_trips_extremes() {
        for bytes in [[0u8; 32], [0xff; 32]] {
            let s = base36_encode(&bytes, DIGEST_CHARS);
            assert_eq!(s.len(), DIGEST_CHARS);
            assert_eq!(base36_decode::<32>(&s), Some(bytes));
        }
        assert_eq!(base36_encode(&[0, 35], 3), "00z");
        // 50 z's is more than 2^256 - 1.
        assert_eq!(base36_decode::<32>(&"z".repeat(50)), None);
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let good = JoinToken::generate(DIGEST).unwrap().to_string();
        let (head, secret) = good.rsplit_once('-').unwrap();
        let cases = [
            ("", "does not start with SHOAL-1-"),
            ("SWMTKN-1-abc-def", "does not start with SHOAL-1-"),
            ("SHOAL-1-abc", "secret part is missing"),
            (
                &format!("SHOAL-1-abc-{secret}"),
                "CA digest has the wrong length",
            ),
            (&format!("{head}-abc"), "secret has the wrong length"),
            (
                &format!("{head}-{}!", &secret[1..]),
                "secret is not valid base 36",
            ),
            (
                &format!("SHOAL-1-{}-{secret}", "z".repeat(50)),
                "CA digest is not valid base 36",
            ),
        ];
        for (input, want) in cases {
            let err = JoinToken::parse(input).unwrap_err().to_string();
            assert!(
                err.starts_with("malformed join token: expected SHOAL-1-"),
                "{err}"
            );
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = JoinToken::generate(DIGEST).unwrap();
        let s = t.to_string();
        let secret = s.rsplit_once('-').unwrap().1;
        assert!(!format!("{t:?}").contains(secret));
        let tokens = JoinTokens::generate(DIGEST).unwrap();
        let dbg = format!("{tokens:?}");
        assert!(!dbg.contains(tokens.worker.to_string().rsplit_once('-').unwrap().1));
    }

    #[test]
    fn check_gives_the_role_of_the_matching_secret() {
        let tokens = JoinTokens::generate(DIGEST).unwrap();
        assert_ne!(tokens.worker, tokens.manager);
        assert_eq!(tokens.check(&tokens.worker.clone()).unwrap(), Role::Worker);
        assert_eq!(
            tokens.check(&tokens.manager.clone()).unwrap(),
            Role::Manager
        );
    }

    #[test]
    fn wrong_rotated_and_foreign_tokens_are_refused() {
        let mut tokens = JoinTokens::generate(DIGEST).unwrap();
        let wrong = JoinToken::generate(DIGEST).unwrap();
        assert!(matches!(tokens.check(&wrong), Err(TlsError::TokenRefused)));

        let old = tokens.worker.clone();
        let new = tokens.rotate(Role::Worker).clone();
        assert_ne!(old, new);
        assert!(matches!(tokens.check(&old), Err(TlsError::TokenRefused)));
        assert_eq!(tokens.check(&new).unwrap(), Role::Worker);
        // Rotating workers leaves the manager token alone.
        assert_eq!(
            tokens.check(&tokens.manager.clone()).unwrap(),
            Role::Manager
        );

        let other = JoinToken::generate(&"00".repeat(32)).unwrap();
        let err = tokens.check(&other).unwrap_err();
        assert!(err.to_string().contains("another cluster"), "{err}");
    }

    #[test]
    fn serde_uses_the_token_string() {
        let t = JoinToken::generate(DIGEST).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{t}\""));
        assert_eq!(serde_json::from_str::<JoinToken>(&json).unwrap(), t);
        assert!(serde_json::from_str::<JoinToken>("\"nope\"").is_err());
    }

    #[test]
    fn generate_refuses_a_bad_digest() {
        assert!(JoinToken::generate("abc").is_err());
    }
}
