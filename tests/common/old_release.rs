//! The shoal of an earlier release, as `bash tests/old-release.sh` builds it
//! from this repository's history, for the upgrade and mixed-version tests.

use std::path::PathBuf;

use super::harness::*;

/// The last release that spoke and stored format 1 (docs/formats.md).
pub const OLD_RELEASE: &str = "254a909";

/// The path of the old release's binary; fails the test, saying how to
/// build it, when it is missing or is another build.
pub fn old_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/old-release")
        .join(format!("shoal-{OLD_RELEASE}"));
    assert!(
        path.is_file(),
        "this test needs the {OLD_RELEASE} shoal at {}: run `bash tests/old-release.sh` \
         (`bash tests/run` does)",
        path.display()
    );
    let version = run(std::process::Command::new(&path).arg("--version"));
    assert!(
        stdout(&version).contains(OLD_RELEASE),
        "{} is not the {OLD_RELEASE} build: {}",
        path.display(),
        stdout(&version)
    );
    path
}

/// A daemon of the old release, driven by its own CLI, started, not yet
/// in a cluster.
pub fn old_daemon() -> Daemon {
    require_root_and_containerd();
    let mut d = Daemon::new(CONTAINERD_SOCKET);
    d.binary = old_binary();
    d.cli_binary = d.binary.clone();
    d.start_again();
    d
}
