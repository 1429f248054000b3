//! Reading a file of a container's root filesystem before it runs, to
//! resolve a user name from the image's /etc/passwd and /etc/group.
//!
//! Instead of mounting the snapshot, the layer directories named in its
//! overlayfs mount options are searched top-down, as overlayfs would. This
//! needs no mount privilege or cleanup, and nothing in the image can point
//! us at a host file: symlinks are never followed (a symlinked /etc/passwd
//! is treated as absent, which makes a user name fail to resolve clearly).
//! Whiteouts (a 0:0 character device) and opaque directories end the search.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use containerd_client::types::Mount;

/// Larger files than this are not a plausible /etc/passwd.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// The directories of an overlayfs (or bind) snapshot mount, top first.
pub(super) fn layer_dirs(mounts: &[Mount]) -> Result<Vec<PathBuf>, String> {
    let m = mounts
        .first()
        .ok_or_else(|| "the snapshot has no mounts".to_string())?;
    match m.r#type.as_str() {
        "bind" | "rbind" => Ok(vec![PathBuf::from(&m.source)]),
        "overlay" => {
            let mut dirs = Vec::new();
            let opt = |name: &str| {
                m.options
                    .iter()
                    .find_map(|o| o.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            };
            if let Some(upper) = opt("upperdir") {
                dirs.push(PathBuf::from(upper));
            }
            if let Some(lower) = opt("lowerdir") {
                dirs.extend(lower.split(':').map(PathBuf::from));
            }
            Ok(dirs)
        }
        other => Err(format!("cannot read a snapshot mounted as {other:?}")),
    }
}

/// The content of `/etc/<name>` as the container will see it, or None.
pub(super) fn read_etc(layers: &[PathBuf], name: &str) -> Option<String> {
    for layer in layers {
        let etc = layer.join("etc");
        let Ok(meta) = fs::symlink_metadata(&etc) else {
            continue;
        };
        if is_whiteout(&meta) || !meta.is_dir() {
            return None;
        }
        let file = etc.join(name);
        match fs::symlink_metadata(&file) {
            Ok(m) if m.is_file() => return read_small(&file),
            Ok(_) => return None,
            Err(_) if is_opaque(&etc) => return None,
            Err(_) => continue,
        }
    }
    None
}

fn read_small(path: &Path) -> Option<String> {
    let mut s = String::new();
    fs::File::open(path)
        .ok()?
        .take(MAX_FILE)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// overlayfs marks a deleted file with a 0:0 character device.
fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// overlayfs marks a directory that hides the layers below it with the
/// `trusted.overlay.opaque=y` xattr.
fn is_opaque(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 1];
    // SAFETY: valid NUL-terminated strings and a buffer of the given size.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_topmost_copy_and_honours_whiteouts() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        let mid = tmp.path().join("mid");
        let low = tmp.path().join("low");
        for d in [&upper, &mid, &low] {
            fs::create_dir_all(d.join("etc")).unwrap();
        }
        fs::write(low.join("etc/passwd"), "low").unwrap();
        fs::write(low.join("etc/group"), "lowgroup").unwrap();
        fs::write(mid.join("etc/passwd"), "mid").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", upper.join("etc/shadow")).unwrap();
        let m = Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                "index=off".into(),
                format!("workdir={}", tmp.path().join("work").display()),
                format!("upperdir={}", upper.display()),
                format!("lowerdir={}:{}", mid.display(), low.display()),
            ],
        };
        let layers = layer_dirs(&[m]).unwrap();
        assert_eq!(layers, vec![upper.clone(), mid, low]);
        assert_eq!(read_etc(&layers, "passwd").as_deref(), Some("mid"));
        assert_eq!(read_etc(&layers, "group").as_deref(), Some("lowgroup"));
        assert_eq!(
            read_etc(&layers, "shadow"),
            None,
            "symlinks are not followed"
        );
        assert_eq!(read_etc(&layers, "missing"), None);
    }
}
