//! Compose files, read natively (the Compose Specification): the CLI
//! turns `stack deploy -c FILE…` into one `StackDeploy` that it sends to
//! the managers. Everything here runs in the CLI, never in a daemon.
//!
//! The steps, each its own module:
//! - `read`: the files (bounded), `.env`, and `load_files`;
//! - `yaml`: text to a YAML value, anchors and merge keys resolved;
//!   `locate`: the line of each key path, for errors;
//! - `interpolate`: `${VAR}`s, in each file;
//! - `merge`: the files merged in order (`places`: which file and line
//!   each merged path came from);
//! - `tidy`: `x-` keys dropped, ignored keys warned about (`notes`);
//! - `model` (with `scalar`, `units`): the typed read, unknown keys refused;
//! - `convert` (with `service`, `deploy`, `ports`, `mounts`, `files`,
//!   `envfile`): the model to a `StackDeploy`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use yaml_serde::Value;

use crate::api::stack_types::StackDeploy;

mod convert;
mod deploy;
mod envfile;
mod files;
mod interpolate;
mod locate;
mod merge;
mod model;
mod mounts;
mod notes;
mod places;
mod ports;
mod read;
mod scalar;
mod service;
mod tidy;
mod units;
mod yaml;

#[cfg(test)]
mod stack_tests;
#[cfg(test)]
mod tests;

pub use read::load_files;

use locate::{Fail, KeyPath, Lines, Seg};
use notes::Notes;
use places::Places;

/// One compose file's text, and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// As the user named it (`compose.yml`, `-` for stdin): errors say it.
    pub name: String,
    /// The directory relative paths in it are taken from (`env_file`,
    /// `file:` of secrets and configs, bind sources).
    pub dir: PathBuf,
    pub text: String,
}

/// A stack as the files describe it, and what the user should know.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub deploy: StackDeploy,
    /// One per ignored key, unset variable, … (printed by the CLI).
    pub warnings: Vec<String>,
}

/// What converting needs besides the model.
pub(crate) struct Ctx<'a> {
    pub stack: &'a str,
    pub env: &'a BTreeMap<String, String>,
    pub places: &'a Places<'a>,
    pub notes: &'a mut Notes,
}

/// Reads, interpolates (with `env`), merges in order and converts the
/// files of stack `stack`. The error names the file, the line and the key.
pub fn load(
    sources: &[Source],
    stack: &str,
    env: &BTreeMap<String, String>,
) -> Result<Loaded, String> {
    if sources.is_empty() {
        return Err("no compose file given".into());
    }
    if sources.len() > read::MAX_FILES {
        return Err(format!(
            "at most {} compose files can be merged",
            read::MAX_FILES
        ));
    }
    let mut vars = interpolate::Vars::new(env);
    let mut merged = merge::Merged::default();
    let mut lines = Vec::with_capacity(sources.len());
    for (i, src) in sources.iter().enumerate() {
        if src.text.len() > read::MAX_FILE_BYTES {
            return Err(format!("{}: larger than 1 MiB", src.name));
        }
        // Indexed first: it also counts the values with aliases expanded,
        // which yaml_serde would expand without a bound.
        let index = Lines::index(&src.text);
        if index.values > locate::MAX_VALUES {
            return Err(format!(
                "{}: more than {} values with its aliases expanded",
                src.name,
                locate::MAX_VALUES
            ));
        }
        let top = yaml::parse(&src.name, &src.text)?;
        let in_file = |f: Fail| places::show(&src.name, index.line(&f.path), &f);
        let mut value = Value::Mapping(top);
        vars.value(&mut value, &KeyPath::root()).map_err(in_file)?;
        if let Value::Mapping(top) = value {
            merged.add(i, top).map_err(in_file)?;
        }
        lines.push(index);
    }
    let mut places = Places::new(sources, lines, merged);
    let mut notes = Notes::default();
    let mut value = std::mem::take(&mut places.merged_mut().value);
    tidy::tidy(&mut value, &mut notes).map_err(|f| places.fail(f))?;
    let model = typed(value).map_err(|f| places.fail(f))?;
    let mut cx = Ctx {
        stack,
        env,
        places: &places,
        notes: &mut notes,
    };
    let deploy = convert::stack(model, &mut cx).map_err(|f| places.fail(f))?;
    let mut warnings: Vec<String> = vars
        .unset
        .iter()
        .map(|v| format!("The \"{v}\" variable is not set. Defaulting to a blank string."))
        .collect();
    warnings.extend(notes.into_warnings());
    Ok(Loaded { deploy, warnings })
}

/// The merged value read into the model; the error at its key path.
fn typed(value: Value) -> Result<model::Compose, Fail> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = KeyPath::root();
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => path.0.push(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => path.0.push(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => {
                    path.0.push(Seg::Key(variant.clone()))
                }
                serde_path_to_error::Segment::Unknown => break,
            }
        }
        let msg = e.inner().to_string();
        Fail {
            path,
            msg: plain_words(&msg),
        }
    })
}

/// serde's `unknown field` and `missing field` in the words of compose
/// files (keys), with the key that was probably meant.
fn plain_words(msg: &str) -> String {
    let quoted =
        |s: &str| -> Vec<String> { s.split('`').skip(1).step_by(2).map(String::from).collect() };
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let names = quoted(rest);
        let (Some(given), candidates) = (names.first(), names.get(1..).unwrap_or(&[])) else {
            return "unknown key".into();
        };
        let best = candidates
            .iter()
            .map(|c| (strsim::damerau_levenshtein(given, c), c))
            .min();
        return match best {
            Some((d, c)) if d <= 2 || (d <= 3 && given.len() > 8) => {
                format!("unknown key (did you mean {c}?)")
            }
            _ => "unknown key".into(),
        };
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        if let Some(name) = quoted(rest).first() {
            return format!("missing key {name}");
        }
    }
    msg.to_string()
}
