//! `KEY=VALUE` files: the `.env` beside the first compose file (variables
//! for interpolation) and a service's `env_file`s, and a service's
//! environment made of those and its `environment`.
//!
//! A line is `KEY=VALUE` (an `export ` before it is allowed), `KEY` alone,
//! a `#` comment or blank. A value wholly in matching single or double
//! quotes loses them; nothing else in it is special (no inline comments,
//! no escapes), as with docker's `--env-file`.

use std::collections::BTreeMap;
use std::path::Path;

use super::locate::{Fail, KeyPath};
use super::model::{Assigns, EnvFile};
use super::read::{join, read_text};
use super::scalar::StrOr;
use super::Ctx;

/// The most bytes an env file may have.
pub const MAX_ENV_FILE: usize = 1 << 20;

/// The entries of an env file, in order: `KEY` alone has no value. The
/// error is `LINE: message`.
pub fn parse(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(unquote(v.trim()))),
            None => (line, None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!(
                "{}: invalid line {raw:?}: expected KEY=VALUE",
                i + 1
            ));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// The variables of the `.env` file in `dir`, if there is one.
pub fn dot_env(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let path = dir.join(".env");
    if !path.is_file() {
        return Ok(BTreeMap::new());
    }
    let shown = path.display();
    let text = read_text(&path, MAX_ENV_FILE).map_err(|e| format!("{shown}: {e}"))?;
    let entries = parse(&text).map_err(|e| format!("{shown}:{e}"))?;
    Ok(entries
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect())
}

/// A service's `KEY=VALUE`s: its env files in order, then `environment`,
/// a later one of a key winning. A key without a value takes the
/// variable's value, and is left out when that is unset, as docker does.
pub fn service_env(
    name: &str,
    environment: Option<Assigns>,
    env_file: Option<Vec<StrOr<EnvFile>>>,
    path: &KeyPath,
    cx: &mut Ctx,
) -> Result<Vec<String>, Fail> {
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (i, entry) in env_file.unwrap_or_default().into_iter().enumerate() {
        let at = path.key("env_file").index(i);
        let (file, required) = match entry {
            StrOr::Str(f) => (f, true),
            StrOr::Long(long) => {
                if long.format.is_some() {
                    cx.notes.ignore(
                        "services",
                        name,
                        "env_file.format",
                        "env files are read as KEY=VALUE lines",
                    );
                }
                (long.path, long.required.is_none_or(|r| r.0))
            }
        };
        let full = join(cx.places.dir(), Path::new(&file));
        if !required && !full.is_file() {
            continue;
        }
        let text = read_text(&full, MAX_ENV_FILE)
            .map_err(|e| Fail::at(&at, format!("{}: {e}", full.display())))?;
        let entries = parse(&text).map_err(|e| Fail::at(&at, format!("{file}:{e}")))?;
        env.extend(entries);
    }
    for (k, v) in environment.unwrap_or_default() {
        env.insert(k, v.map(|t| t.0));
    }
    let mut out = Vec::with_capacity(env.len());
    for (k, v) in env {
        if k.is_empty() || k.contains('=') {
            return Err(Fail::at(
                &path.key("environment"),
                format!("invalid variable name {k:?}"),
            ));
        }
        match v.or_else(|| cx.env.get(&k).cloned()) {
            Some(v) => out.push(format!("{k}={v}")),
            None => continue,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let text = "# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='x'\nE\nF=a=b\nG=\"unbalanced\n";
        let got = parse(text).unwrap();
        let want: Vec<(String, Option<String>)> = [
            ("A", Some("1")),
            ("B", Some("two words")),
            ("C", Some("quoted # not a comment")),
            ("D", Some("x")),
            ("E", None),
            ("F", Some("a=b")),
            ("G", Some("\"unbalanced")),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(String::from)))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_lines_name_their_number() {
        assert_eq!(
            parse("A=1\nNOT A LINE\n").unwrap_err(),
            "2: invalid line \"NOT A LINE\": expected KEY=VALUE"
        );
        assert!(parse("=1").is_err());
    }

    #[test]
    fn dot_env_reads_values_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(dot_env(dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join(".env"), "A=1\nB\n").unwrap();
        let env = dot_env(dir.path()).unwrap();
        assert_eq!(env, BTreeMap::from([("A".to_string(), "1".to_string())]));
        std::fs::write(dir.path().join(".env"), "A 1\n").unwrap();
        let err = dot_env(dir.path()).unwrap_err();
        assert!(
            err.ends_with(".env:1: invalid line \"A 1\": expected KEY=VALUE"),
            "{err}"
        );
    }
}
