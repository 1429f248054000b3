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

/// When a node removes images no container uses (image garbage
/// collection): once the disk that holds its images is `high_percent`
/// full, it removes unused images, least recently used first, until the
/// disk is below `low_percent` (the kubelet's 85%/80%). An image younger
/// than `min_age_ms` on the node is kept, so that an image loaded or
/// pulled for a service about to be created is not taken first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageGc {
    pub high_percent: u8,
    pub low_percent: u8,
    pub min_age_ms: u64,
}

impl Default for ImageGc {
    fn default() -> Self {
        ImageGc {
            high_percent: 85,
            low_percent: 80,
            min_age_ms: 120_000,
        }
    }
}

impl ImageGc {
    /// The policy as `cluster update` may set it.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.high_percent) {
            return Err("the image GC high-water mark must be between 1% and 100%".into());
        }
        if self.low_percent >= self.high_percent {
            return Err(format!(
                "the image GC low-water mark ({}%) must be below the high-water mark ({}%)",
                self.low_percent, self.high_percent
            ));
        }
        if self.min_age_ms > 7 * 24 * 3_600_000 {
            return Err("the image GC minimum age must be at most 7 days".into());
        }
        Ok(())
    }
}

/// The filesystem that holds a node's images (containerd's content store
/// and snapshots; the fuller one where they are two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DiskUsage {
    pub used_bytes: u64,
    pub total_bytes: u64,
}

impl DiskUsage {
    /// How full the disk is, in percent (0 for a disk of no size).
    pub fn percent(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.used_bytes as f64 * 100.0 / self.total_bytes as f64
        }
    }
}

/// An image on a node, and whether a container or an assigned task uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeImage {
    #[serde(flatten)]
    pub info: ImageInfo,
    pub in_use: bool,
}

/// A node's images, its image disk, and what an `image rm` or `prune`
/// removed there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagesOnNode {
    pub images: Vec<NodeImage>,
    #[serde(default)]
    pub disk: Option<DiskUsage>,
    #[serde(default)]
    pub removed: Vec<String>,
    /// How much the image disk shrank.
    #[serde(default)]
    pub freed_bytes: u64,
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
