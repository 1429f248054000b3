//! Where a path of the merged files came from: the file (and its
//! directory, for relative paths in it) and the line, for errors as
//! `FILE:LINE: PATH: MESSAGE`.

use std::path::{Path, PathBuf};

use super::locate::{Fail, KeyPath, Lines};
use super::merge::Merged;
use super::Source;

pub struct Places<'a> {
    sources: &'a [Source],
    lines: Vec<Lines>,
    /// The project directory (the first file's), absolute where the
    /// current one is known.
    dir: PathBuf,
    merged: Merged,
}

impl<'a> Places<'a> {
    pub fn new(sources: &'a [Source], lines: Vec<Lines>, merged: Merged) -> Places<'a> {
        let cwd = std::env::current_dir().ok();
        let first = sources
            .first()
            .map_or(PathBuf::from("."), |s| s.dir.clone());
        let dir = match (&cwd, first.is_absolute()) {
            (Some(cwd), false) => cwd.join(first),
            _ => first,
        };
        Places {
            sources,
            lines,
            dir,
            merged,
        }
    }

    pub fn merged_mut(&mut self) -> &mut Merged {
        &mut self.merged
    }

    /// The file that last set `path` (the last file if none did) and the
    /// path in it.
    fn origin(&self, path: &KeyPath) -> (usize, KeyPath) {
        self.merged
            .origin(path)
            .unwrap_or((self.sources.len().saturating_sub(1), KeyPath::root()))
    }

    /// The directory relative paths start from: the project directory,
    /// the first file's, whichever file set the path (compose's rule, and
    /// `docker stack deploy`'s: an override file kept elsewhere still
    /// names the project's files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `f`, a problem with the merged value, as the user reads it.
    pub fn fail(&self, f: Fail) -> String {
        let (file, in_file) = self.origin(&f.path);
        let line = self.lines.get(file).map_or(1, |l| l.line(&in_file));
        let name = self.sources.get(file).map_or("-", |s| s.name.as_str());
        show(name, line, &f)
    }
}

/// `FILE:LINE: PATH: MESSAGE` (no `PATH: ` for the top of the file).
pub fn show(file: &str, line: usize, f: &Fail) -> String {
    match f.path.0.is_empty() {
        true => format!("{file}:{line}: {}", f.msg),
        false => format!("{file}:{line}: {}: {}", f.path, f.msg),
    }
}
