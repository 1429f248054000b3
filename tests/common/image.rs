//! Builds the tiny busybox image the integration tests load, with no
//! registry and no docker: one layer holding `bin/busybox` (a static
//! busybox, Debian's busybox-static by default), symlinks for common
//! applets, `/etc/passwd` and `/etc/group` with `root` and `app` (uid and
//! gid 1000, home /home/app), and a config with `Cmd ["sh"]` and
//! `Env [PATH, FOO=image, BAR=image]`.
//!
//! Two archive formats, as `shoal image load` takes them: an OCI layout
//! (gzip layer) and a `docker save` archive (plain layer), either one
//! optionally gzipped as a whole. Output is deterministic: the same busybox
//! gives the same digests.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Applets linked in /bin.
const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "id", "cat", "uname", "ls", "env", "pwd", "hostname", "true", "false",
    "kill", "ps", "wc", "head", "tail", "grep", "date", "printf", "test", "mkdir", "rm", "touch",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout.
    Oci,
    /// What `docker save` writes: manifest.json, `<id>/layer.tar`.
    DockerSave,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The name as a user would write it (`busybox`, `me/app:v1`).
    pub name: String,
    /// OCI arch: `amd64`, `arm64`, `arm`.
    pub arch: String,
    /// A statically linked busybox for `arch`.
    pub busybox: PathBuf,
    pub format: Format,
    /// Gzip the whole archive.
    pub gzip: bool,
    /// OCI only: also set `io.containerd.image.name` (the normalized name)
    /// beside `org.opencontainers.image.ref.name` (the name as given).
    pub containerd_name: bool,
    /// Set as `VERSION` in the image's env: images that differ only in it
    /// have different digests (a tag that moves to a new build).
    pub version: Option<String>,
    /// Adds `/filler`, this many bytes that do not compress: a large
    /// layer, for pulls that take a while.
    pub filler: usize,
    /// The config's `Healthcheck` (Docker's `HEALTHCHECK`), if any.
    pub healthcheck: Option<serde_json::Value>,
}

impl Options {
    pub fn new(name: &str, arch: &str, format: Format) -> Options {
        Options {
            name: name.to_string(),
            arch: arch.to_string(),
            busybox: PathBuf::from("/bin/busybox"),
            format,
            gzip: false,
            containerd_name: true,
            version: None,
            healthcheck: None,
            filler: 0,
        }
    }
}

/// An OCI-layout tarball of the busybox image named `name`, in `dir`.
pub fn build_busybox_image(dir: &Path, name: &str, arch: &str) -> PathBuf {
    build(dir, &Options::new(name, arch, Format::Oci))
}

/// The same image as a `docker save` tarball.
pub fn build_busybox_docker_archive(dir: &Path, name: &str, arch: &str) -> PathBuf {
    build(dir, &Options::new(name, arch, Format::DockerSave))
}

/// Builds the image as `opts` say and returns the tarball's path.
pub fn build(dir: &Path, opts: &Options) -> PathBuf {
    let busybox = fs::read(&opts.busybox).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (install Debian's busybox-static)",
            opts.busybox.display()
        )
    });
    let layer = layer_tar(&busybox, opts.filler);
    let diff_id = sha256(&layer);
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "FOO=image".to_string(),
        "BAR=image".to_string(),
    ];
    if let Some(v) = &opts.version {
        env.push(format!("VERSION={v}"));
    }
    let mut config = json!({
        "architecture": opts.arch,
        "os": "linux",
        "config": {
            "Env": env,
            "Cmd": ["sh"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    if let Some(h) = &opts.healthcheck {
        config["config"]["Healthcheck"] = h.clone();
    }
    let config = serde_json::to_vec(&config).unwrap();

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    match opts.format {
        Format::Oci => {
            let layer_gz = gzip(&layer);
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(&config),
                    "size": config.len(),
                },
                "layers": [{
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(&layer_gz),
                    "size": layer_gz.len(),
                }],
            }))
            .unwrap();
            let mut annotations = json!({"org.opencontainers.image.ref.name": opts.name});
            if opts.containerd_name {
                annotations["io.containerd.image.name"] =
                    json!(shoal::types::normalize_image(&opts.name).expect("valid image name"));
            }
            let index = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha256(&manifest),
                    "size": manifest.len(),
                    "annotations": annotations,
                    "platform": {"architecture": opts.arch, "os": "linux"},
                }],
            });
            files.push((
                "oci-layout".into(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ));
            for blob in [&config, &manifest, &layer_gz] {
                files.push((format!("blobs/sha256/{}", hex(blob)), blob.clone()));
            }
            files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
        }
        Format::DockerSave => {
            let id = hex(&layer);
            let tag = with_tag(&opts.name);
            let config_file = format!("{}.json", hex(&config));
            let manifest = json!([{
                "Config": config_file,
                "RepoTags": [tag],
                "Layers": [format!("{id}/layer.tar")],
            }]);
            files.push((config_file, config.clone()));
            files.push((format!("{id}/VERSION"), b"1.0".to_vec()));
            files.push((format!("{id}/json"), br#"{"id":"x"}"#.to_vec()));
            files.push((format!("{id}/layer.tar"), layer));
            files.push((
                "manifest.json".into(),
                serde_json::to_vec(&manifest).unwrap(),
            ));
        }
    }

    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in &files {
        append_file(&mut b, path, data, 0o644);
    }
    let mut archive = b.into_inner().unwrap();
    if opts.gzip {
        archive = gzip(&archive);
    }
    let safe: String = opts
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let kind = match opts.format {
        Format::Oci => "oci",
        Format::DockerSave => "docker",
    };
    let ext = if opts.gzip { "tar.gz" } else { "tar" };
    let version = opts.version.as_deref().unwrap_or("");
    let path = dir.join(format!("{safe}-{}-{version}{kind}.{ext}", opts.arch));
    fs::write(&path, archive).unwrap();
    path
}

/// The image's single layer, uncompressed.
fn layer_tar(busybox: &[u8], filler: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (dir, mode, owner) in [
        ("bin", 0o755, 0),
        ("etc", 0o755, 0),
        ("tmp", 0o1777, 0),
        ("root", 0o700, 0),
        ("home", 0o755, 0),
        ("home/app", 0o755, 1000),
    ] {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        h.set_uid(owner);
        h.set_gid(owner);
        h.set_cksum();
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())
            .unwrap();
    }
    append_file(&mut b, "bin/busybox", busybox, 0o755);
    for applet in APPLETS {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
    let group = "root:x:0:\napp:x:1000:\n";
    append_file(&mut b, "etc/passwd", passwd.as_bytes(), 0o644);
    append_file(&mut b, "etc/group", group.as_bytes(), 0o644);
    if filler > 0 {
        // SHA-256 in counter mode: deterministic, and gzip cannot shrink it.
        let mut data = Vec::with_capacity(filler + 32);
        let mut i = 0u64;
        while data.len() < filler {
            data.extend_from_slice(&Sha256::digest(i.to_le_bytes()));
            i += 1;
        }
        data.truncate(filler);
        append_file(&mut b, "filler", &data, 0o644);
    }
    b.into_inner().unwrap()
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    h.set_cksum();
    b.append_data(&mut h, path, data).unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(data))
}

/// `docker save` always writes a tag.
fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}
