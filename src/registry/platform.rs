//! Image platforms with their variants (`linux/arm/v7` on a 32-bit Pi),
//! and the choice of a manifest from an index for a node.

use serde::Deserialize;

use super::RegistryError;
use crate::types::normalize_arch;

/// `os/arch[/variant]`, arch normalized as docker does. The variant is
/// kept for 32-bit arm only (v6, v7), where it decides what runs; arm64's
/// v8 and amd64's levels are left out so they compare equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImagePlatform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl ImagePlatform {
    pub fn new(os: &str, arch: &str, variant: &str) -> ImagePlatform {
        let arch = normalize_arch(arch).to_string();
        let variant = (arch == "arm" && !variant.is_empty()).then(|| variant.to_string());
        ImagePlatform {
            os: os.to_string(),
            arch,
            variant,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<ImagePlatform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(ImagePlatform::new(os, arch, ""))
            }
            [os, arch, v] if !os.is_empty() && !arch.is_empty() => {
                Ok(ImagePlatform::new(os, arch, v))
            }
            _ => Err(format!(
                "invalid platform {s:?}: expected os/arch[/variant], e.g. linux/arm64 or linux/arm/v7"
            )),
        }
    }

    /// This machine: 32-bit arm builds are armv7 (shoal's armv7 target).
    pub fn local() -> ImagePlatform {
        let p = crate::types::Platform::local();
        let variant = if p.arch == "arm" { "v7" } else { "" };
        ImagePlatform::new(&p.os, &p.arch, variant)
    }

    /// Whether an image of platform `self` runs on a node of `node`: same
    /// os and arch; on arm a v6 image runs on v7 but not the reverse, and
    /// an image that names no variant runs anywhere.
    pub fn runs_on(&self, node: &ImagePlatform) -> bool {
        if self.os != node.os || self.arch != node.arch {
            return false;
        }
        match (&self.variant, &node.variant) {
            (None, _) | (_, None) => true,
            (Some(i), Some(n)) => variant_level(i) <= variant_level(n),
        }
    }
}

fn variant_level(v: &str) -> u32 {
    v.trim_start_matches('v').parse().unwrap_or(u32::MAX)
}

impl std::fmt::Display for ImagePlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One manifest of an index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub platform: ImagePlatform,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    platform: Option<PlatformJson>,
}

#[derive(Deserialize)]
struct PlatformJson {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: String,
}

/// The runnable manifests of an index (attestations, `unknown/unknown`,
/// and entries with no platform are left out).
pub fn platforms_of_index(bytes: &[u8]) -> Result<Vec<IndexEntry>, RegistryError> {
    let index: Index = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError(format!("unreadable image index: {e}")))?;
    Ok(index
        .manifests
        .into_iter()
        .filter_map(|m| {
            let p = m.platform?;
            (p.os != "unknown" && !p.os.is_empty()).then(|| IndexEntry {
                digest: m.digest,
                media_type: m.media_type,
                size: m.size,
                platform: ImagePlatform::new(&p.os, &p.architecture, &p.variant),
            })
        })
        .collect())
}

/// The manifest of an index for `node`: an exact variant first, then the
/// highest one that runs there.
pub fn pick<'a>(entries: &'a [IndexEntry], node: &ImagePlatform) -> Option<&'a IndexEntry> {
    entries.iter().find(|e| &e.platform == node).or_else(|| {
        entries
            .iter()
            .filter(|e| e.platform.runs_on(node))
            .max_by_key(|e| e.platform.variant.as_deref().map_or(0, variant_level))
    })
}

/// The platform an image config says it is.
pub fn manifest_platform(config: &[u8]) -> Result<ImagePlatform, RegistryError> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        variant: String,
    }
    let c: Config = serde_json::from_slice(config)
        .map_err(|e| RegistryError(format!("unreadable image config: {e}")))?;
    Ok(ImagePlatform::new(&c.os, &c.architecture, &c.variant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImagePlatform {
        ImagePlatform::parse(s).unwrap()
    }

    fn entry(s: &str) -> IndexEntry {
        IndexEntry {
            digest: s.into(),
            media_type: String::new(),
            size: 0,
            platform: p(s),
        }
    }

    #[test]
    fn variants_decide_on_32_bit_arm_only() {
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64");
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm/v7").to_string(), "linux/arm/v7");
        assert!(p("linux/arm/v6").runs_on(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v7").runs_on(&p("linux/arm/v6")));
        assert!(p("linux/arm").runs_on(&p("linux/arm/v7")));
        assert!(!p("linux/arm64").runs_on(&p("linux/amd64")));
        assert!(ImagePlatform::parse("linux").is_err());
        assert!(ImagePlatform::parse("/amd64").is_err());
    }

    #[test]
    fn picks_the_best_manifest_of_an_index() {
        let list = [
            entry("linux/arm/v6"),
            entry("linux/arm/v7"),
            entry("linux/arm64/v8"),
            entry("linux/amd64"),
        ];
        assert_eq!(
            pick(&list, &p("linux/amd64")).unwrap().digest,
            "linux/amd64"
        );
        assert_eq!(
            pick(&list, &p("linux/arm64")).unwrap().digest,
            "linux/arm64/v8"
        );
        assert_eq!(
            pick(&list, &p("linux/arm/v7")).unwrap().digest,
            "linux/arm/v7"
        );
        // A v6-only index still runs on a v7 Pi; a v7 one not on a v6.
        assert_eq!(
            pick(&list[..1], &p("linux/arm/v7")).unwrap().digest,
            "linux/arm/v6"
        );
        assert!(pick(&list[1..2], &p("linux/arm/v6")).is_none());
        assert!(pick(&list, &p("linux/riscv64")).is_none());
    }

    #[test]
    fn attestations_are_not_platforms() {
        let index = br#"{"manifests":[
            {"digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"amd64"}},
            {"digest":"sha256:b","size":1,"platform":{"os":"unknown","architecture":"unknown"}},
            {"digest":"sha256:c","size":1}
        ]}"#;
        let e = platforms_of_index(index).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].platform.to_string(), "linux/amd64");
    }
}
