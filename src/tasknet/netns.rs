//! Network namespaces as files, the way `ip netns` keeps them: a netns is
//! created on a thread of its own with unshare(CLONE_NEWNET), and kept
//! alive after that thread ends by bind-mounting the thread's
//! /proc/thread-self/ns/net onto an empty file. No process is forked.
//!
//! Namespace changes stick to the thread that makes them, so they are only
//! ever made on a dedicated std thread that ends right after: never on a
//! tokio worker or blocking-pool thread, which would go on running other
//! work in the task's netns.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};

use super::NetError;

/// How many mounts `remove` takes off one netns file at most.
const MAX_STACKED_MOUNTS: usize = 8;

/// Makes `dir` (the state dir's netns dir) a mount point with shared
/// propagation, as iproute2 does for /run/netns: bind it onto itself when
/// it is not a mount point yet, then make it shared. Shared, so that a
/// netns file unmounted here is unmounted in every mount namespace that
/// copied it (a container's, a service's PrivateTmp), and the netns is
/// freed rather than held by a forgotten copy. Runs once per open.
pub(super) fn prepare_dir(dir: &Path) -> Result<(), NetError> {
    std::fs::create_dir_all(dir).map_err(NetError::file("cannot create", dir))?;
    // iproute2 takes this lock because two racing setups can stack
    // recursive bind mounts until the machine locks up; on failure it
    // goes on without it, and so do we.
    let _lock = File::open(dir)
        .ok()
        .and_then(|f| Flock::lock(f, FlockArg::LockExclusive).ok());
    let mut made_mount_point = false;
    loop {
        match mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            // EINVAL: not a mount point yet.
            Err(Errno::EINVAL) if !made_mount_point => {
                mount(
                    Some(dir),
                    dir,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(NetError::io(format!("mount --bind {0} {0}", dir.display())))?;
                made_mount_point = true;
            }
            Err(e) => {
                return Err(NetError::io(format!(
                    "mount --make-rshared {}",
                    dir.display()
                ))(e))
            }
        }
    }
}

/// Undoes `prepare_dir` when the node leaves: unmounts the dir (lazily:
/// nothing should be using it) and removes it if empty.
pub(super) fn release_dir(dir: &Path) -> Result<(), NetError> {
    match umount2(dir, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point; ENOENT: not there.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(NetError::io(format!("umount {}", dir.display()))(e)),
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::file("cannot remove", dir)(e)),
    }
}

/// Whether `path` is a bind-mounted netns (and not just the empty file
/// that an interrupted create leaves).
pub(super) fn is_netns(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Creates a new netns and mounts it at `path`.
pub(super) async fn create(path: &Path) -> Result<(), NetError> {
    let path = path.to_path_buf();
    on_own_thread("shoal-netns-new", move || {
        // An empty file to mount onto; mode 0 as iproute2 (only root
        // enters a netns anyway).
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o000)
            .open(&path)
            .map_err(NetError::file("cannot create", &path))?;
        let made = unshare(CloneFlags::CLONE_NEWNET)
            .map_err(NetError::io("unshare(CLONE_NEWNET)"))
            .and_then(|()| {
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(NetError::io(format!(
                    "bind-mount the new netns on {}",
                    path.display()
                )))
            });
        if made.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        made
    })
    .await
}

/// Unmounts and deletes the netns file at `path`; Ok when it is not there.
/// The netns itself goes when nothing else holds it (a container's
/// processes may still).
pub(super) fn remove(path: &Path) -> Result<(), NetError> {
    // More than one mount can be stacked on the file when a cancelled
    // attach's thread finished its mount after the next attach started;
    // unmount until it is a plain file again (EINVAL).
    for _ in 0..MAX_STACKED_MOUNTS {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(NetError::io(format!("umount {}", path.display()))(e)),
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::file("cannot remove", path)(e)),
    }
}

/// Runs `f` on a thread of its own that has entered the netns at `path`.
/// A netlink socket that `f` opens belongs to that netns for its life.
pub(super) async fn run_inside<T, F>(path: &Path, f: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, NetError> + Send + 'static,
{
    let path: PathBuf = path.to_path_buf();
    on_own_thread("shoal-netns-in", move || {
        let ns = File::open(&path).map_err(NetError::file("cannot open netns", &path))?;
        setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(NetError::io(format!("setns into {}", path.display())))?;
        f()
    })
    .await
}

/// Runs `f` on a new std thread, which ends with it, and awaits its result
/// without blocking the runtime.
async fn on_own_thread<T, F>(name: &'static str, f: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, NetError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            // The receiver is gone only if the caller gave up; nothing to do.
            let _ = tx.send(f());
        })
        .map_err(NetError::io(format!("spawn thread {name}")))?;
    rx.await.map_err(|_| NetError::Thread(name))?
}
