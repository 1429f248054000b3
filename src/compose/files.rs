//! Secrets and configs: a service's use of one (`- NAME`, or `source`,
//! `target`, `uid`, `gid`, `mode`) and the top-level declaration the
//! stack creates it from (`file:`, `environment:`, `content:` for
//! configs) or finds it by (`external: true`).
//!
//! A use without a target gets docker's default, from the key in the
//! file, not the created object's `STACK_NAME`: `/run/secrets/db_pw`,
//! `/db_conf`, as programs written for docker stacks expect.

use std::path::Path;

use base64::Engine;

use crate::api::spec::FileRefBody;
use crate::api::stack_types::{StackFile, NAMESPACE_LABEL};
use crate::types::{MAX_CONFIG_BYTES, MAX_SECRET_BYTES};

use super::convert::{labels, real_name, Declared, Used};
use super::locate::{Fail, KeyPath};
use super::model::{set_keys, FileDecl, FileRef};
use super::read::{join, read_bytes};
use super::scalar::{StrOr, Text};
use super::Ctx;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::Config => "configs",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    fn max(self) -> usize {
        match self {
            Kind::Secret => MAX_SECRET_BYTES,
            Kind::Config => MAX_CONFIG_BYTES,
        }
    }
}

/// A service's secrets or configs.
pub fn refs(
    kind: Kind,
    list: Option<Vec<StrOr<FileRef>>>,
    service: &KeyPath,
    decl: &Declared,
    used: &mut Used,
    cx: &Ctx,
) -> Result<Vec<FileRefBody>, Fail> {
    let declared = match kind {
        Kind::Secret => &decl.secrets,
        Kind::Config => &decl.configs,
    };
    let mut out = Vec::new();
    for (i, item) in list.unwrap_or_default().into_iter().enumerate() {
        let at = service.key(kind.key()).index(i);
        let r = match item {
            StrOr::Str(s) => FileRef {
                source: s,
                target: None,
                uid: None,
                gid: None,
                mode: None,
            },
            StrOr::Long(r) => r,
        };
        let Some(d) = declared.get(&r.source) else {
            return Err(Fail::at(
                &at,
                format!(
                    "{} {} is not declared in the top-level {}",
                    kind.word(),
                    r.source,
                    kind.key()
                ),
            ));
        };
        let target = r.target.unwrap_or_else(|| match kind {
            Kind::Secret => r.source.clone(),
            Kind::Config => format!("/{}", r.source),
        });
        let external = d.external.as_ref().is_some_and(|e| e.on);
        out.push(FileRefBody {
            source: real_name(cx.stack, &r.source, external, d.name.as_deref()),
            target,
            uid: id(r.uid, &at.key("uid"))?,
            gid: id(r.gid, &at.key("gid"))?,
            mode: r.mode.map_or(0o444, |m| m.0),
            id: String::new(),
        });
        let set = match kind {
            Kind::Secret => &mut used.secrets,
            Kind::Config => &mut used.configs,
        };
        set.insert(r.source);
    }
    Ok(out)
}

/// A uid or gid: compose writes them as strings.
fn id(t: Option<Text>, at: &KeyPath) -> Result<u32, Fail> {
    match t {
        None => Ok(0),
        Some(Text(s)) => s
            .trim()
            .parse()
            .map_err(|_| Fail::at(at, format!("invalid id {s:?}: expected a number"))),
    }
}

/// Top-level secret or config `key` as the stack creates (or finds) it.
pub fn stack_file(kind: Kind, key: &str, d: &FileDecl, cx: &mut Ctx) -> Result<StackFile, Fail> {
    let path = KeyPath::of(&[kind.key(), key]);
    let external = d.external.as_ref().is_some_and(|e| e.on);
    let name = real_name(cx.stack, key, external, d.name.as_deref());
    for k in set_keys(&[
        ("driver", d.driver.is_some()),
        ("driver_opts", d.driver_opts.is_some()),
        ("template_driver", d.template_driver.is_some()),
    ]) {
        cx.notes.ignore(
            kind.key(),
            key,
            k,
            "shoal keeps them in its own store, as given",
        );
    }
    let sources = set_keys(&[
        ("file", d.file.is_some()),
        ("environment", d.environment.is_some()),
        ("content", d.content.is_some()),
    ]);
    if external {
        if let Some(k) = sources
            .first()
            .copied()
            .or(d.labels.as_ref().map(|_| "labels"))
        {
            return Err(Fail::at(
                &path.key(k),
                format!(
                    "an external {} is only named: shoal does not create it",
                    kind.word()
                ),
            ));
        }
        return Ok(StackFile {
            name,
            external: true,
            ..StackFile::default()
        });
    }
    if sources.len() != 1 {
        return Err(Fail::at(
            &path,
            format!(
                "a {} is made from one of file:, environment:{} (or is external: true)",
                kind.word(),
                match kind {
                    Kind::Secret => "",
                    Kind::Config => ", content:",
                }
            ),
        ));
    }
    let data: Vec<u8> = if let Some(f) = &d.file {
        let at = path.key("file");
        let full = join(cx.places.dir(), Path::new(f));
        read_bytes(&full, kind.max())
            .map_err(|e| Fail::at(&at, format!("{}: {e}", full.display())))?
    } else if let Some(var) = &d.environment {
        let at = path.key("environment");
        let Some(v) = cx.env.get(var) else {
            return Err(Fail::at(&at, format!("variable {var} is not set")));
        };
        v.clone().into_bytes()
    } else {
        if kind == Kind::Secret {
            return Err(Fail::at(
                &path.key("content"),
                "content: is for configs: a secret comes from file: or environment:",
            ));
        }
        d.content.clone().unwrap_or_default().into_bytes()
    };
    if data.len() > kind.max() {
        return Err(Fail::at(
            &path,
            format!("larger than {} KiB", kind.max() >> 10),
        ));
    }
    let mut labels = labels(d.labels.clone());
    labels.insert(NAMESPACE_LABEL.into(), cx.stack.to_string());
    Ok(StackFile {
        name,
        external: false,
        labels,
        data: base64::engine::general_purpose::STANDARD.encode(data),
    })
}
