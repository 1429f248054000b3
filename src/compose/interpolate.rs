//! Variables in compose files, as docker compose substitutes them: `$VAR`,
//! `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
//! `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}`, nested in the words
//! (`${A:-${B}}`), and `$$` for a `$`. Only string values are read, never
//! keys, each file on its own before the files are merged.

use std::collections::{BTreeMap, BTreeSet};

use yaml_serde::Value;

use super::locate::{Fail, KeyPath};
use super::yaml::key_text;

/// How deep `${A:-${B:-…}}` may nest: far beyond real files, and keeps
/// the recursion bounded on any input.
const MAX_DEPTH: usize = 16;

/// The most bytes all substituted values may add up to: a variable's value
/// repeated in many places could otherwise grow the files without bound.
const MAX_OUTPUT: usize = 64 << 20;

/// Why a string could not be expanded.
#[derive(Debug, PartialEq)]
enum Bad {
    /// Not the syntax above (`${`, `${A B}`, a lone `$`).
    Invalid,
    Deep,
    TooLong,
    /// `${VAR:?message}` with VAR unset (or empty).
    Required {
        name: String,
        message: String,
    },
}

/// The variables, and the unset ones used without a default.
pub struct Vars<'a> {
    env: &'a BTreeMap<String, String>,
    /// Each is warned about once, as docker compose does.
    pub unset: BTreeSet<String>,
    budget: usize,
}

impl<'a> Vars<'a> {
    pub fn new(env: &'a BTreeMap<String, String>) -> Vars<'a> {
        Vars {
            env,
            unset: BTreeSet::new(),
            budget: MAX_OUTPUT,
        }
    }

    /// Substitutes the variables of every string in `v` (at `path`).
    pub fn value(&mut self, v: &mut Value, path: &KeyPath) -> Result<(), Fail> {
        match v {
            Value::String(s) if s.contains('$') => {
                *s = self.text(s).map_err(|m| Fail::at(path, m))?;
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(item, &path.index(i))?;
                }
            }
            Value::Mapping(map) => {
                for (k, item) in map.iter_mut() {
                    self.value(item, &path.key(&key_text(k)))?;
                }
            }
            Value::Tagged(t) => self.value(&mut t.value, path)?,
            _ => {}
        }
        Ok(())
    }

    /// `s` with its variables substituted, or the error's message.
    pub fn text(&mut self, s: &str) -> Result<String, String> {
        let out = self.expand(s, 0).map_err(|bad| match bad {
            Bad::Invalid => format!(
                "invalid interpolation format in {s:?}: variables are $VAR or ${{VAR}} (with :-, -, :?, ?, :+ or +), and $$ is a literal $"
            ),
            Bad::Deep => format!("variables nested more than {MAX_DEPTH} deep in {s:?}"),
            Bad::TooLong => format!(
                "the values of variables add up to more than {} MiB",
                MAX_OUTPUT >> 20
            ),
            Bad::Required { name, message } if message.is_empty() => {
                format!("required variable {name} is missing a value")
            }
            Bad::Required { name, message } => {
                format!("required variable {name} is missing a value: {message}")
            }
        })?;
        self.budget = self.budget.checked_sub(out.len()).ok_or_else(|| {
            format!(
                "the values of variables add up to more than {} MiB",
                MAX_OUTPUT >> 20
            )
        })?;
        Ok(out)
    }

    fn expand(&mut self, s: &str, depth: usize) -> Result<String, Bad> {
        let b = s.as_bytes();
        let mut out = String::new();
        // Only ASCII bytes are looked at, so each index is a char boundary.
        let (mut i, mut literal) = (0, 0);
        while i < b.len() {
            if b[i] != b'$' {
                i += 1;
                continue;
            }
            out.push_str(&s[literal..i]);
            match b.get(i + 1) {
                Some(b'$') => {
                    out.push('$');
                    i += 2;
                }
                Some(b'{') => {
                    let (value, end) = self.braced(s, i + 2, depth)?;
                    out.push_str(&value);
                    i = end;
                }
                Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                    let end = name_end(b, i + 1);
                    out.push_str(&self.plain(&s[i + 1..end]));
                    i = end;
                }
                _ => return Err(Bad::Invalid),
            }
            literal = i;
            if out.len() > self.budget {
                return Err(Bad::TooLong);
            }
        }
        out.push_str(&s[literal..]);
        Ok(out)
    }

    /// `${…}` whose name starts at `start`: its value and the index after
    /// its `}`.
    fn braced(&mut self, s: &str, start: usize, depth: usize) -> Result<(String, usize), Bad> {
        if depth >= MAX_DEPTH {
            return Err(Bad::Deep);
        }
        let b = s.as_bytes();
        if !b
            .get(start)
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        {
            return Err(Bad::Invalid);
        }
        let end = name_end(b, start);
        let name = &s[start..end];
        let (op, word_start) = match (b.get(end), b.get(end + 1)) {
            (Some(b'}'), _) => return Ok((self.plain(name), end + 1)),
            (Some(b':'), Some(op @ (b'-' | b'?' | b'+'))) => ((true, *op), end + 2),
            (Some(op @ (b'-' | b'?' | b'+')), _) => ((false, *op), end + 1),
            _ => return Err(Bad::Invalid),
        };
        let word_end = closing_brace(b, word_start).ok_or(Bad::Invalid)?;
        let word = &s[word_start..word_end];
        let value = self.env.get(name);
        // With a colon, an empty value counts as unset.
        let set = match op.0 {
            true => value.is_some_and(|v| !v.is_empty()),
            false => value.is_some(),
        };
        let out = match (op.1, set) {
            (b'-', true) | (b'?', true) => value.cloned().unwrap_or_default(),
            (b'-', false) | (b'+', true) => self.expand(word, depth + 1)?,
            (b'?', false) => {
                return Err(Bad::Required {
                    name: name.to_string(),
                    message: self.expand(word, depth + 1)?,
                })
            }
            _ => String::new(),
        };
        Ok((out, word_end + 1))
    }

    /// `$NAME` or `${NAME}`: unset is blank, and warned about.
    fn plain(&mut self, name: &str) -> String {
        match self.env.get(name) {
            Some(v) => v.clone(),
            None => {
                self.unset.insert(name.to_string());
                String::new()
            }
        }
    }
}

/// The end of the variable name that starts at `start`.
fn name_end(b: &[u8], start: usize) -> usize {
    let mut i = start;
    while b
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        i += 1;
    }
    i
}

/// The `}` that closes a word starting at `start`, past nested `${…}`
/// and `$$`.
fn closing_brace(b: &[u8], start: usize) -> Option<usize> {
    let mut nest = 0usize;
    let mut i = start;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'$', Some(b'$')) => i += 2,
            (b'$', Some(b'{')) => {
                nest += 1;
                i += 2;
            }
            (b'}', _) if nest == 0 => return Some(i),
            (b'}', _) => {
                nest -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("A".to_string(), "a".to_string()),
            ("EMPTY".to_string(), String::new()),
            ("B_2".to_string(), "b".to_string()),
        ])
    }

    fn run(s: &str) -> (Result<String, String>, Vec<String>) {
        let env = env();
        let mut vars = Vars::new(&env);
        let out = vars.text(s);
        (out, vars.unset.into_iter().collect())
    }

    fn ok(s: &str) -> String {
        run(s).0.unwrap()
    }

    #[test]
    fn plain_forms() {
        assert_eq!(ok("x$A-${B_2}y"), "xa-by");
        assert_eq!(ok("$A$B_2"), "ab");
        assert_eq!(ok("no variables"), "no variables");
        assert_eq!(ok("$$A costs $$5"), "$A costs $5");
        assert_eq!(ok("ünïcode ${A} ✓"), "ünïcode a ✓");
    }

    #[test]
    fn unset_is_blank_and_warned_once() {
        let (out, unset) = run("${NOPE}/$NOPE/${A}");
        assert_eq!(out.unwrap(), "//a");
        assert_eq!(unset, vec!["NOPE"]);
    }

    #[test]
    fn defaults() {
        assert_eq!(ok("${NOPE:-d}"), "d");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${A:-d}"), "a");
        assert_eq!(ok("${NOPE-d}"), "d");
        assert_eq!(ok("${EMPTY-d}"), "");
        assert_eq!(ok("${NOPE:-}"), "");
        // A default is not warned about, nor is what it does not use.
        let (out, unset) = run("${A:-${NOPE}}${NOPE2-x}");
        assert_eq!(out.unwrap(), "ax");
        assert!(unset.is_empty(), "{unset:?}");
    }

    #[test]
    fn nested_defaults() {
        assert_eq!(ok("${NOPE:-${A}}"), "a");
        assert_eq!(ok("${NOPE:-${NOPE2:-${B_2}-x}}"), "b-x");
        assert_eq!(ok("${NOPE:-$${A}}"), "${A}");
        assert_eq!(ok("${NOPE:-{a}}"), "{a}");
        let (out, unset) = run("${NOPE:-${MISSING}}");
        assert_eq!(out.unwrap(), "");
        assert_eq!(unset, vec!["MISSING"]);
    }

    #[test]
    fn alternatives() {
        assert_eq!(ok("${A:+alt}"), "alt");
        assert_eq!(ok("${EMPTY:+alt}"), "");
        assert_eq!(ok("${EMPTY+alt}"), "alt");
        assert_eq!(ok("${NOPE+alt}"), "");
        assert_eq!(ok("${A+${B_2}}"), "b");
    }

    #[test]
    fn required() {
        assert_eq!(ok("${A:?set it}"), "a");
        assert_eq!(ok("${EMPTY?set it}"), "");
        assert_eq!(
            run("${EMPTY:?set it}").0.unwrap_err(),
            "required variable EMPTY is missing a value: set it"
        );
        assert_eq!(
            run("${NOPE?}").0.unwrap_err(),
            "required variable NOPE is missing a value"
        );
        assert_eq!(
            run("${NOPE:?need ${A}}").0.unwrap_err(),
            "required variable NOPE is missing a value: need a"
        );
    }

    #[test]
    fn invalid_syntax() {
        for s in [
            "${", "${A", "${A B}", "${}", "a $ b", "$", "${1A}", "${A:x}", "${A:-x",
        ] {
            let err = run(s).0.unwrap_err();
            assert!(
                err.starts_with("invalid interpolation format in "),
                "{s}: {err}"
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}x{}", "${NOPE:-".repeat(40), "}".repeat(40));
        assert!(run(&deep).0.unwrap_err().contains("nested more than"));
        let fine = format!("{}x{}", "${NOPE:-".repeat(10), "}".repeat(10));
        assert_eq!(ok(&fine), "x");
    }

    #[test]
    fn output_is_bounded() {
        let big = BTreeMap::from([("BIG".to_string(), "x".repeat(1 << 20))]);
        let mut vars = Vars::new(&big);
        let text = "$BIG".repeat(100);
        assert!(vars
            .text(&text)
            .unwrap_err()
            .contains("add up to more than"));
    }

    #[test]
    fn values_not_keys() {
        let env = env();
        let mut vars = Vars::new(&env);
        let mut v: Value =
            yaml_serde::from_str("$A: $A\nlist: [$B_2, 1, {k: '${A}'}]\nn: 5\n").unwrap();
        vars.value(&mut v, &KeyPath::root()).unwrap();
        let want: Value = yaml_serde::from_str("$A: a\nlist: [b, 1, {k: a}]\nn: 5\n").unwrap();
        assert_eq!(v, want);
        let mut bad: Value = yaml_serde::from_str("s:\n  web:\n    image: '${'\n").unwrap();
        let err = vars.value(&mut bad, &KeyPath::root()).unwrap_err();
        assert_eq!(err.path.to_string(), "s.web.image");
    }
}
