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
pub fn normalize_image(reference: &str) -> Result<String, String> {
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
        assert_eq!(
            n("busybox@sha256:abc").unwrap(),
            "docker.io/library/busybox@sha256:abc"
        );
    }

    #[test]
    fn rejects_bad_references() {
        assert!(n("").is_err());
        assert!(n("Busybox").is_err());
        assert!(n("bad image").is_err());
        assert!(n("busybox:").is_err());
    }
}
