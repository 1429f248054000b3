//! Where each key of a compose file is: a key path (`services.web.deploy`)
//! to the line it starts on, read from the YAML parser's events
//! (saphyr-parser), so that an error found later, in values that no longer
//! carry positions (a wrong type, an undeclared network), can name its line.
//! Also the path type every error of `compose` is given with.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser};

/// One step of a key path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A key path as errors show it: `services.web.ports[0].target`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    /// This path, one key further.
    pub fn key(&self, k: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    /// This path, one sequence item further.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// From a dotted path of plain keys (`services.web`), for callers
    /// that build them from known names.
    pub fn of(keys: &[&str]) -> KeyPath {
        KeyPath(keys.iter().map(|k| Seg::Key(k.to_string())).collect())
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A problem with the value at a key path (of a file, or of the merged
/// files): `compose::load` turns it into `FILE:LINE: PATH: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub path: KeyPath,
    pub msg: String,
}

impl Fail {
    pub fn at(path: &KeyPath, msg: impl Into<String>) -> Fail {
        Fail {
            path: path.clone(),
            msg: msg.into(),
        }
    }
}

/// The most values a file may have with its aliases expanded: far more
/// than any real file, and few enough that a file of aliases of aliases
/// (a "billion laughs") is refused before it is expanded.
pub const MAX_VALUES: usize = 1_000_000;

/// The line of each key path of one file.
#[derive(Debug, Default)]
pub struct Lines {
    lines: HashMap<Vec<Seg>, usize>,
    /// How many values the file has with its aliases expanded (at most
    /// just over MAX_VALUES: counting stops there).
    pub values: usize,
}

/// A collection being read, and the path of its next item.
enum Frame {
    /// `key`: the key just read, whose value comes next; None: a key
    /// comes next.
    Map {
        path: Vec<Seg>,
        key: Option<String>,
    },
    Seq {
        path: Vec<Seg>,
        next: usize,
    },
    /// Inside a complex key (a mapping or sequence used as a key): not
    /// indexed.
    Skip,
}

impl Lines {
    /// Indexes `text`. Only the keys before a syntax error, if any, are
    /// indexed: yaml_serde reports that error, this only locates.
    /// Content that comes from an alias or a merge key (`<<: *base`) has
    /// no position of its own here; `line` answers its nearest ancestor's.
    pub fn index(text: &str) -> Lines {
        let mut lines = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        // Values counted with aliases expanded: each anchor's size, and
        // the count where each open collection (and its anchor) began.
        let mut values = 0usize;
        let mut sizes: HashMap<usize, usize> = HashMap::new();
        let mut open: Vec<(usize, usize)> = Vec::new();
        // The parser repeats its error forever: the first one ends it.
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            match &event {
                Event::Scalar(_, _, anchor, _) => {
                    values += 1;
                    if *anchor > 0 {
                        sizes.insert(*anchor, 1);
                    }
                }
                Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                    open.push((*anchor, values));
                    values += 1;
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    if let Some((anchor, start)) = open.pop().filter(|(a, _)| *a > 0) {
                        sizes.insert(anchor, values - start);
                    }
                }
                Event::Alias(anchor) => {
                    values = values.saturating_add(sizes.get(anchor).copied().unwrap_or(1));
                }
                _ => {}
            }
            if values > MAX_VALUES {
                break;
            }
            let line = span.start.line();
            let opens = matches!(event, Event::MappingStart(..) | Event::SequenceStart(..));
            let node = opens || matches!(event, Event::Scalar(..) | Event::Alias(_));
            if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
                stack.pop();
                continue;
            }
            if !node {
                continue;
            }
            // The path of this node, or None when it is a mapping's key
            // (recorded here) or inside a complex key.
            let path: Option<Vec<Seg>> = match stack.last_mut() {
                None => Some(Vec::new()),
                Some(Frame::Skip) => None,
                Some(Frame::Seq { path, next }) => {
                    let mut p = path.clone();
                    p.push(Seg::Index(*next));
                    *next += 1;
                    Some(p)
                }
                Some(Frame::Map { path, key }) => match key.take() {
                    Some(k) => {
                        let mut p = path.clone();
                        p.push(Seg::Key(k));
                        Some(p)
                    }
                    None => {
                        match &event {
                            Event::Scalar(text, ..) => {
                                let mut p = path.clone();
                                p.push(Seg::Key(text.to_string()));
                                lines.entry(p).or_insert(line);
                                *key = Some(text.to_string());
                            }
                            // A key that is itself a collection or an
                            // alias: its value is not indexed.
                            _ => *key = Some(String::from("\u{0}")),
                        }
                        if opens {
                            stack.push(Frame::Skip);
                        }
                        continue;
                    }
                },
            };
            let Some(path) = path else {
                if opens {
                    stack.push(Frame::Skip);
                }
                continue;
            };
            lines.entry(path.clone()).or_insert(line);
            match event {
                Event::MappingStart(..) => stack.push(Frame::Map { path, key: None }),
                Event::SequenceStart(..) => stack.push(Frame::Seq { path, next: 0 }),
                _ => {}
            }
        }
        Lines { lines, values }
    }

    /// The line of `path`, or of its nearest ancestor that has one (1 at
    /// worst: the top of the file).
    pub fn line(&self, path: &KeyPath) -> usize {
        let mut p: &[Seg] = &path.0;
        loop {
            if let Some(l) = self.lines.get(p) {
                return *l;
            }
            match p.split_last() {
                Some((_, rest)) => p = rest,
                None => return 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> KeyPath {
        // Test paths: dots between keys, a number alone is an index.
        KeyPath(
            s.split('.')
                .filter(|k| !k.is_empty())
                .map(|k| match k.parse() {
                    Ok(n) => Seg::Index(n),
                    Err(_) => Seg::Key(k.to_string()),
                })
                .collect(),
        )
    }

    const TEXT: &str = "\
version: '3.8'
x-base: &base
  image: busybox
services:
  web:
    <<: *base
    ports:
      - \"80:80\"
      - target: 443
        published: 8443
    deploy:
      replicas: 2
  db: {image: postgres, environment: [A=1, B]}
";

    #[test]
    fn keys_and_items_have_their_lines() {
        let l = Lines::index(TEXT);
        assert_eq!(l.line(&p("version")), 1);
        assert_eq!(l.line(&p("x-base.image")), 3);
        assert_eq!(l.line(&p("services.web")), 5);
        assert_eq!(l.line(&p("services.web.ports")), 7);
        assert_eq!(l.line(&p("services.web.ports.0")), 8);
        assert_eq!(l.line(&p("services.web.ports.1")), 9);
        assert_eq!(l.line(&p("services.web.ports.1.published")), 10);
        assert_eq!(l.line(&p("services.web.deploy.replicas")), 12);
        assert_eq!(l.line(&p("services.db.environment.1")), 13);
    }

    #[test]
    fn merged_and_unknown_paths_fall_back_to_an_ancestor() {
        let l = Lines::index(TEXT);
        // `image` of web comes from the merge key: web's line.
        assert_eq!(l.line(&p("services.web.image")), 5);
        assert_eq!(l.line(&p("services.web.deploy.nothing.deeper")), 11);
        assert_eq!(l.line(&p("nowhere")), 1);
        assert_eq!(l.line(&KeyPath::root()), 1);
    }

    #[test]
    fn a_syntax_error_keeps_what_came_before() {
        let l = Lines::index("a:\n  b: 1\n  c: [x\nd: 2\n");
        assert_eq!(l.line(&p("a.b")), 2);
        assert_eq!(l.line(&p("d")), 1);
    }

    #[test]
    fn values_are_counted_with_aliases_expanded() {
        assert_eq!(Lines::index("a: [1, 2]\n").values, 5);
        assert_eq!(
            Lines::index("a: &x [1, 2]\nb: *x\nc: [*x, *x]\n").values,
            17
        );
        // Ten levels of ten aliases each: 10^10 values, refused early.
        let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "l{i}: &l{i} [{}]\n",
                vec![format!("*l{p}"); 10].join(", ")
            ));
        }
        assert!(Lines::index(&text).values > MAX_VALUES);
    }

    #[test]
    fn complex_keys_are_skipped() {
        let l = Lines::index("? [a, b]\n: {x: 1}\nc: 2\n");
        assert_eq!(l.line(&p("c")), 3);
    }

    #[test]
    fn paths_show_as_errors_say_them() {
        let path = KeyPath::of(&["services", "web", "ports"])
            .index(0)
            .key("target");
        assert_eq!(path.to_string(), "services.web.ports[0].target");
        assert_eq!(KeyPath::root().to_string(), "");
    }
}
