//! Registries: how the cluster reaches one (credentials, trust, mirrors),
//! and the policy that says when a task pulls its image.

use serde::{Deserialize, Serialize};

/// How to reach one registry. `registry login` and `registry add` keep it
/// in the cluster object (sealed at rest with the rest of the store); a
/// node is sent the ones its tasks' images need, with those tasks, and
/// keeps them in memory only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RegistryAccess {
    /// `host[:port]` as it appears in image references: `docker.io`,
    /// `registry.example:5000`.
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Plain HTTP allowed: an admin listed it (`registry add --insecure`).
    /// Registries on loopback need no listing.
    #[serde(default)]
    pub insecure: bool,
    /// A private CA the registry's certificate is checked against, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Hosts tried before this one (a LAN mirror of `docker.io`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
}

/// Never prints the password.
impl std::fmt::Debug for RegistryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAccess")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("insecure", &self.insecure)
            .field("ca_pem", &self.ca_pem.is_some())
            .field("mirrors", &self.mirrors)
            .finish()
    }
}

/// When a task pulls its image (`--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull only when the node does not have the image.
    #[default]
    Missing,
    /// Pull at every start (a tag that moves is followed).
    Always,
    /// Never pull: the image must be on the node (`image load`).
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        }
    }

    pub fn is_missing(&self) -> bool {
        *self == PullPolicy::Missing
    }
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            _ => Err(format!(
                "invalid pull policy {s:?}: use missing, always or never"
            )),
        }
    }
}

/// The registry host of a normalized reference (`docker.io/library/x:1`
/// → `docker.io`).
pub fn registry_host(normalized: &str) -> &str {
    normalized.split('/').next().unwrap_or("")
}

/// The repository path of a normalized reference, without host, tag or
/// digest (`docker.io/library/x:1` → `library/x`).
pub fn repository(normalized: &str) -> &str {
    let rest = normalized.split_once('/').map_or("", |(_, r)| r);
    let rest = rest.split('@').next().unwrap_or(rest);
    match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => &rest[..i],
        _ => rest,
    }
}

/// The tag of a normalized reference, if it has one.
pub fn tag(normalized: &str) -> Option<&str> {
    let name = normalized.split('@').next().unwrap_or(normalized);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => Some(&name[i + 1..]),
        _ => None,
    }
}

/// `sha256:` and 64 lowercase hex digits: the blobs nodes share.
pub fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Whether `host` is on loopback, where plain HTTP is allowed (docker
/// allows 127.0.0.0/8 the same way).
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        let r = "127.0.0.1:5000/team/web:1.4";
        assert_eq!(registry_host(r), "127.0.0.1:5000");
        assert_eq!(repository(r), "team/web");
        assert_eq!(tag(r), Some("1.4"));
        let d = format!("docker.io/library/x@sha256:{}", "a".repeat(64));
        assert_eq!(repository(&d), "library/x");
        assert_eq!(tag(&d), None);
    }

    #[test]
    fn only_loopback_is_loopback() {
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("127.3.4.5"));
        assert!(is_loopback_host("localhost:5000"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("registry.example:5000"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
        assert!(!is_loopback_host("docker.io"));
    }

    #[test]
    fn debug_hides_the_password() {
        let a = RegistryAccess {
            host: "h".into(),
            password: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
