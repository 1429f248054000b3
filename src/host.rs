//! What this machine is: its hostname, platform, size and local images, as
//! a node describes itself to the managers (at `init`, at `join`, and at
//! the start of every session).

use tracing::warn;

use crate::executor::ImageStore;
use crate::types::{NodeDescription, Platform};

/// The machine's hostname; "localhost" when it has none that is UTF-8.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// What this machine is: hostname, platform, size, local images, devices
/// and named volumes (those under `data_dir`). An
/// image store that cannot be read gives no images rather than no
/// description: the node still joins, and is refreshed later.
pub async fn describe(images: &dyn ImageStore, data_dir: &std::path::Path) -> NodeDescription {
    let (images, runtime_error) = match images.images().await {
        Ok(i) => (i, None),
        Err(e) => {
            warn!(error = %e, "cannot list images");
            (Vec::new(), Some(e.to_string()))
        }
    };
    NodeDescription {
        hostname: hostname(),
        platform: Platform::local(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_bytes: memory_bytes(),
        images,
        runtime_error,
        level: crate::LEVEL,
        // The agent adds it once its overlay is up.
        overlay: None,
        devices: crate::devices::scan(std::path::Path::new("/dev")),
        volumes: crate::agent::volumes::Volumes::at(data_dir).names(),
    }
}

fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}
