//! Image references and what a node reports about its local images.

use serde::{Deserialize, Serialize};

/// An image present on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageInfo {
    /// Normalized reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Digest of the image's manifest or index.
    pub digest: String,
    /// `os/arch` pairs the image can run on, arch normalized.
    pub platforms: Vec<String>,
    pub size_bytes: u64,
}

/// Normalize a reference as docker does: `busybox` becomes
/// `docker.io/library/busybox:latest`, `me/app` becomes
/// `docker.io/me/app:latest`, and a registry host (it has a `.` or `:`, or is
/// `localhost`) is kept. A digest reference keeps its digest and gets no tag.
pub fn normalize_image(reference: &str) -> Result<String, BadImageRef> {
    normalize(reference).map_err(BadImageRef)
}

/// An image reference that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadImageRef(String);

fn normalize(reference: &str) -> Result<String, String> {
    let r = reference.trim();
    if r.is_empty() {
        return Err("empty image reference".into());
    }
    if r.chars()
        .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
    {
        return Err(format!(
            "invalid image reference {reference:?}: must be lowercase, without spaces"
        ));
    }
    let (name, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = digest {
        check_digest(d).map_err(|why| format!("invalid image reference {reference:?}: {why}"))?;
    }
    // A tag is the part after the last ':' that has no '/' after it.
    let (repo, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    if repo.is_empty() || repo.starts_with('/') || repo.ends_with('/') || repo.contains("//") {
        return Err(format!("invalid image reference {reference:?}"));
    }
    let first = repo.split('/').next().unwrap_or("");
    let has_host =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_host {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    Ok(match (tag, digest) {
        (_, Some(d)) => format!("{full}@{d}"),
        (Some(t), None) if !t.is_empty() => format!("{full}:{t}"),
        (Some(_), None) => return Err(format!("invalid image reference {reference:?}: empty tag")),
        (None, None) => format!("{full}:latest"),
    })
}

/// `sha256:` and 64 lowercase hex digits (or `sha512:` and 128), as OCI
/// registries name content.
fn check_digest(d: &str) -> Result<(), String> {
    let (algo, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("digest {d:?} has no algorithm (expected sha256:…)"))?;
    let len = match algo {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "unsupported digest algorithm {algo:?} (expected sha256)"
            ))
        }
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format!("digest {d:?} is not {len} lowercase hex digits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalize_image as n;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(n("busybox").unwrap(), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36").unwrap(), "docker.io/library/busybox:1.36");
        assert_eq!(n("me/app").unwrap(), "docker.io/me/app:latest");
        assert_eq!(n("localhost:5000/app:v1").unwrap(), "localhost:5000/app:v1");
        assert_eq!(n("ghcr.io/a/b").unwrap(), "ghcr.io/a/b:latest");
        assert_eq!(
            n("docker.io/library/busybox:latest").unwrap(),
            "docker.io/library/busybox:latest"
        );
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            n(&format!("busybox@{digest}")).unwrap(),
            format!("docker.io/library/busybox@{digest}")
        );
    }

    #[test]
    fn rejects_bad_references() {
        assert!(n("").is_err());
        assert!(n("Busybox").is_err());
        assert!(n("bad image").is_err());
        assert!(n("busybox:").is_err());
        // Digests are sha256 (or sha512) and whole.
        for bad in [
            "busybox@sha256:zz",
            "busybox@sha256:abc",
            "busybox@md5:0123456789abcdef0123456789abcdef",
            "busybox@0123",
        ] {
            let err = n(bad).unwrap_err();
            assert!(err.to_string().contains("digest"), "{bad}: {err}");
        }
    }
}
