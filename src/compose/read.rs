//! Reading the files a stack is made of, each bounded: the compose files
//! (`-`: stdin), env files, and the files of secrets and configs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::{envfile, load, Loaded, Source};

/// The most compose files one deploy merges.
pub const MAX_FILES: usize = 16;

/// The most bytes of one compose file.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// `rel` from `dir` (`rel` as is if absolute), without `.` and `..`
/// components: not resolving links, as a bind's path is a node's, which
/// need not be this machine's, and errors show the path plainly.
pub fn join(dir: &Path, rel: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dir.join(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The bytes of `path`, or why not (`larger than N KiB`, the OS's words).
pub fn read_bytes(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    bounded(file, max)
}

/// The text of `path`, or why not.
pub fn read_text(path: &Path, max: usize) -> Result<String, String> {
    String::from_utf8(read_bytes(path, max)?).map_err(|_| "not UTF-8 text".to_string())
}

fn bounded(r: impl Read, max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    // One byte more than allowed tells a file at the limit from a longer one.
    r.take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() > max {
        return Err(match max % (1 << 20) {
            0 => format!("larger than {} MiB", max >> 20),
            _ => format!("larger than {} KiB", max >> 10),
        });
    }
    Ok(out)
}

// Until the CLI calls it instead of its own stopgap (src/cli/stack.rs).
/// Reads the compose files `paths` (`-`: stdin) and loads stack `stack`
/// from them, its variables taken from the process's environment and,
/// where that has not got them, the `.env` file beside the first file.
pub fn load_files(paths: &[String], stack: &str) -> Result<Loaded, String> {
    if paths.is_empty() {
        return Err("no compose file given".into());
    }
    if paths.len() > MAX_FILES {
        return Err(format!("at most {MAX_FILES} compose files can be merged"));
    }
    if paths.iter().filter(|p| *p == "-").count() > 1 {
        return Err("stdin (-) can be read only once".into());
    }
    let mut sources = Vec::with_capacity(paths.len());
    for p in paths {
        let (bytes, dir) = match p.as_str() {
            "-" => (
                bounded(std::io::stdin().lock(), MAX_FILE_BYTES),
                PathBuf::from("."),
            ),
            _ => {
                let path = Path::new(p);
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                (read_bytes(path, MAX_FILE_BYTES), dir)
            }
        };
        let text = bytes
            .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8 text".to_string()))
            .map_err(|e| format!("{p}: {e}"))?;
        sources.push(Source {
            name: p.clone(),
            dir,
            text,
        });
    }
    let env = environment(&sources[0].dir)?;
    load(&sources, stack, &env)
}

/// The variables: `.env` in `dir`, overridden by the process's own.
fn environment(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut env = envfile::dot_env(dir)?;
    // A variable whose name or value is not UTF-8 cannot be in a YAML file.
    env.extend(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    );
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_plain() {
        let j = |d: &str, r: &str| join(Path::new(d), Path::new(r));
        assert_eq!(j("/a/b", "./../c/"), PathBuf::from("/a/c"));
        assert_eq!(j("/a", "../../x"), PathBuf::from("/x"));
        assert_eq!(j("/a", "/etc/x"), PathBuf::from("/etc/x"));
    }

    #[test]
    fn reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, vec![b'a'; 2048]).unwrap();
        assert_eq!(read_bytes(&f, 2048).unwrap().len(), 2048);
        assert_eq!(read_bytes(&f, 2047).unwrap_err(), "larger than 1 KiB");
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert_eq!(read_text(&f, 10).unwrap_err(), "not UTF-8 text");
        assert!(read_bytes(&dir.path().join("none"), 10)
            .unwrap_err()
            .contains("No such file"));
    }
}
