//! A containerd of a test's own, apart from the machine's: for tests
//! that stop containerd under a node, and for nodes that must not share a
//! content store (containerd shares blobs across namespaces, which would
//! hide whether a node fetched an image at all).

use super::harness::{require_root_and_containerd, wait_until, WAIT};

/// A containerd of the test's own (its own root, state and socket), which
/// the test can kill and start again under a running shoal.
pub struct OwnContainerd {
    dir: tempfile::TempDir,
    pub socket: String,
    child: Option<std::process::Child>,
}

impl OwnContainerd {
    /// Its root and state live under this directory.
    pub fn dir_path(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn start() -> OwnContainerd {
        Self::start_with_disk(None)
    }

    /// With its root (content and snapshots) on a tmpfs of `mb` megabytes:
    /// a small disk that fills up, as an SD card does.
    pub fn start_on_tmpfs(mb: u64) -> OwnContainerd {
        Self::start_with_disk(Some(mb))
    }

    fn start_with_disk(tmpfs_mb: Option<u64>) -> OwnContainerd {
        require_root_and_containerd();
        let dir = tempfile::Builder::new()
            .prefix("shoal-containerd-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("c.sock").display().to_string();
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{1}\"\n[ttrpc]\n  address = \"{1}.ttrpc\"\n",
            dir.path().display(),
            socket
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("write the config");
        if let Some(mb) = tmpfs_mb {
            let root = dir.path().join("root");
            std::fs::create_dir_all(&root).expect("create the root");
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
                .arg(&root)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "cannot mount a tmpfs at {} (needs root)",
                root.display()
            );
        }
        let mut c = OwnContainerd {
            dir,
            socket,
            child: None,
        };
        c.up();
        c
    }

    /// Starts it (again) and waits until it answers.
    pub fn up(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("log"))
            .expect("open the log");
        self.child = Some(
            std::process::Command::new("containerd")
                .arg("--config")
                .arg(self.dir.path().join("config.toml"))
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start containerd"),
        );
        assert!(
            wait_until(WAIT, || std::process::Command::new("ctr")
                .args(["--address", &self.socket, "version"])
                .output()
                .is_ok_and(|o| o.status.success())),
            "the test's containerd did not come up"
        );
    }

    /// SIGKILL: containerd goes away; its shims keep the containers.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnContainerd {
    fn drop(&mut self) {
        self.kill();
        // The shims of its containers outlive it, and so do the rootfs
        // mounts of a test that failed while containerd was away.
        let _ = std::process::Command::new("pkill")
            .args(["-9", "-f", &format!("containerd-shim.*{}", self.socket)])
            .status();
        let root = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        for point in mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&root))
        {
            let _ = std::process::Command::new("umount")
                .args(["-l", point])
                .status();
        }
    }
}
