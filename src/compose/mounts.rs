//! A service's `volumes` and `tmpfs` as mounts. Short form:
//! `NAME:/path[:ro]` (a volume declared at the top level), `/abs:/path`,
//! `./rel:/path`, `../x:/p` or `~/x:/p` (binds; relative to the project
//! directory, the first file's, or the home directory). Long form: `type`, `source`,
//! `target`, `read_only`, `tmpfs`. A path alone is an anonymous volume,
//! which a cluster cannot find again: it is refused, with the fix.

use std::path::Path;

use crate::api::spec::MountBody;

use super::convert::Declared;
use super::locate::{Fail, KeyPath};
use super::model::{set_keys, Mount};
use super::read::join;
use super::scalar::StrOr;
use super::{units, Ctx};

/// Short-form options that change nothing on shoal (SELinux labels,
/// consistency, propagation, nocopy).
const IGNORED_OPTIONS: &[&str] = &[
    "z",
    "Z",
    "nocopy",
    "consistent",
    "cached",
    "delegated",
    "rprivate",
    "private",
    "rshared",
    "shared",
    "rslave",
    "slave",
];

/// tmpfs options shoal has no use for.
const IGNORED_TMPFS: &[&str] = &["noexec", "exec", "nosuid", "suid", "nodev", "dev"];

pub fn mounts(
    volumes: Option<Vec<StrOr<Mount>>>,
    tmpfs: Option<Vec<String>>,
    name: &str,
    service: &KeyPath,
    decl: &Declared,
    cx: &mut Ctx,
) -> Result<Vec<MountBody>, Fail> {
    let mut out: Vec<MountBody> = Vec::new();
    for (i, v) in volumes.unwrap_or_default().into_iter().enumerate() {
        let at = service.key("volumes").index(i);
        let m = match v {
            StrOr::Str(s) => short(&s, name, &at, decl, cx)?,
            StrOr::Long(l) => long(l, name, &at, decl, cx)?,
        };
        push(&mut out, m, &at)?;
    }
    for (i, t) in tmpfs.unwrap_or_default().into_iter().enumerate() {
        let at = service.key("tmpfs").index(i);
        let m = tmpfs_item(&t, name, &at, cx)?;
        push(&mut out, m, &at)?;
    }
    Ok(out)
}

fn push(out: &mut Vec<MountBody>, m: MountBody, at: &KeyPath) -> Result<(), Fail> {
    if out.iter().any(|o| o.target == m.target) {
        return Err(Fail::at(
            at,
            format!("two mounts have the target {}", m.target),
        ));
    }
    out.push(m);
    Ok(())
}

fn mount(kind: &str, source: String, target: &str, readonly: bool) -> MountBody {
    MountBody {
        kind: kind.into(),
        source,
        target: target.to_string(),
        readonly,
        tmpfs_size: 0,
        tmpfs_mode: None,
        volume_driver: None,
    }
}

fn anonymous(target: &str, at: &KeyPath) -> Fail {
    Fail::at(
        at,
        format!("anonymous volume {target}: name it (NAME:{target}) and declare NAME in the top-level volumes, so its data is found again"),
    )
}

/// `SOURCE:TARGET[:OPTIONS]`.
fn short(
    s: &str,
    name: &str,
    at: &KeyPath,
    decl: &Declared,
    cx: &mut Ctx,
) -> Result<MountBody, Fail> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [t] if t.starts_with('/') => return Err(anonymous(t, at)),
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => {
            return Err(Fail::at(
                at,
                format!("invalid volume {s:?}: expected SOURCE:TARGET[:ro]"),
            ))
        }
    };
    let mut readonly = false;
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            o if IGNORED_OPTIONS.contains(&o) => cx.notes.ignore(
                "services",
                name,
                &format!("volumes option {o}"),
                "shoal mounts without it",
            ),
            o => {
                return Err(Fail::at(
                    at,
                    format!("invalid volume option {o:?}: expected ro or rw"),
                ))
            }
        }
    }
    if is_host_path(source) {
        let source = host_path(source, at, cx)?;
        return Ok(mount("bind", source, target, readonly));
    }
    let source = volume(source, at, decl)?;
    Ok(mount("volume", source, target, readonly))
}

fn long(
    l: Mount,
    name: &str,
    at: &KeyPath,
    decl: &Declared,
    cx: &mut Ctx,
) -> Result<MountBody, Fail> {
    for k in set_keys(&[
        ("bind", l.bind.is_some()),
        ("volume", l.volume.is_some()),
        ("consistency", l.consistency.is_some()),
    ]) {
        cx.notes.ignore(
            "services",
            name,
            &format!("volumes.{k}"),
            "shoal mounts without these options",
        );
    }
    let readonly = l.read_only.is_some_and(|r| r.0);
    let source = l.source.filter(|s| !s.is_empty());
    match (l.kind.as_str(), source) {
        ("volume", None) => Err(anonymous(&l.target, at)),
        ("volume", Some(s)) => {
            let s = volume(&s, &at.key("source"), decl)?;
            Ok(mount("volume", s, &l.target, readonly))
        }
        ("bind", None) => Err(Fail::at(at, "a bind needs a source")),
        ("bind", Some(s)) => {
            let s = host_path(&s, &at.key("source"), cx)?;
            Ok(mount("bind", s, &l.target, readonly))
        }
        ("tmpfs", Some(_)) => Err(Fail::at(&at.key("source"), "a tmpfs has no source")),
        ("tmpfs", None) => {
            let mut m = mount("tmpfs", String::new(), &l.target, readonly);
            if let Some(t) = l.tmpfs {
                m.tmpfs_size = t.size.map_or(0, |b| b.0);
                m.tmpfs_mode = t.mode.map(|m| m.0);
            }
            Ok(m)
        }
        (other, _) => Err(Fail::at(
            &at.key("type"),
            format!("invalid type {other:?}: expected volume, bind or tmpfs"),
        )),
    }
}

/// `/path` or `/path:size=64m,mode=1777,ro`.
fn tmpfs_item(s: &str, name: &str, at: &KeyPath, cx: &mut Ctx) -> Result<MountBody, Fail> {
    let (target, options) = s.split_once(':').unwrap_or((s, ""));
    let mut m = mount("tmpfs", String::new(), target, false);
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => {
                m.tmpfs_size = units::size_bytes(v).map_err(|e| Fail::at(at, e))?;
            }
            Some(("mode", v)) => {
                let mode = u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        Fail::at(
                            at,
                            format!("invalid tmpfs mode {v:?}: expected octal, as 1777"),
                        )
                    })?;
                m.tmpfs_mode = Some(mode);
            }
            None if o == "ro" => m.readonly = true,
            None if o == "rw" => m.readonly = false,
            None if IGNORED_TMPFS.contains(&o) => cx.notes.ignore(
                "services",
                name,
                &format!("tmpfs option {o}"),
                "shoal mounts a tmpfs without it",
            ),
            _ => {
                return Err(Fail::at(
                    at,
                    format!("invalid tmpfs option {o:?}: expected size=, mode=, ro or rw"),
                ))
            }
        }
    }
    Ok(m)
}

fn is_host_path(s: &str) -> bool {
    s.starts_with('/')
        || s == "."
        || s == ".."
        || s == "~"
        || s.starts_with("./")
        || s.starts_with("../")
        || s.starts_with("~/")
}

/// A declared volume's real name.
fn volume(key: &str, at: &KeyPath, decl: &Declared) -> Result<String, Fail> {
    match decl.volumes.contains_key(key) {
        true => Ok(decl.volume(key)),
        false => Err(Fail::at(
            at,
            format!("volume {key} is not declared in the top-level volumes"),
        )),
    }
}

/// A bind source as an absolute path: relative ones from the project
/// directory (the first file's), `~` the home directory.
fn host_path(s: &str, at: &KeyPath, cx: &Ctx) -> Result<String, Fail> {
    let (dir, rel) = match s.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let Some(home) = cx.env.get("HOME").filter(|h| !h.is_empty()) else {
                return Err(Fail::at(at, format!("{s}: HOME is not set")));
            };
            (Path::new(home.as_str()), rest.trim_start_matches('/'))
        }
        _ => (cx.places.dir(), s),
    };
    let full = join(dir, Path::new(rel));
    full.to_str()
        .map(String::from)
        .ok_or_else(|| Fail::at(at, format!("{} is not UTF-8", full.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths() {
        assert!(is_host_path("./x") && is_host_path("~") && is_host_path("/x"));
        assert!(!is_host_path("data") && !is_host_path(".data"));
    }
}
