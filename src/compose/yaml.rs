//! A compose file's text to a YAML value (yaml_serde), with its anchors,
//! aliases and merge keys (`<<: *base`) resolved, and the small helpers
//! every later step uses on such values.

use yaml_serde::{Mapping, Value};

/// The top mapping of file `name`, or `NAME:LINE: message`.
pub fn parse(name: &str, text: &str) -> Result<Mapping, String> {
    let mut value: Value = yaml_serde::from_str(text).map_err(|e| syntax(name, &e))?;
    // Merge keys are YAML 1.1, which yaml_serde leaves to its callers.
    value
        .apply_merge()
        .map_err(|e| format!("{name}: merge key (<<): {e}"))?;
    match value {
        Value::Mapping(m) if !m.is_empty() => Ok(m),
        Value::Null => Err(format!("{name}:1: empty compose file")),
        Value::Mapping(_) => Err(format!("{name}:1: empty compose file")),
        other => Err(format!(
            "{name}:1: a compose file is a mapping (services:, networks:, …), not {}",
            kind(&other)
        )),
    }
}

/// A syntax error as `NAME:LINE: message`, the message without the
/// position libyaml puts in it.
fn syntax(name: &str, e: &yaml_serde::Error) -> String {
    let text = e.to_string();
    match e.location() {
        Some(at) => {
            let mark = format!(" at line {} column {}", at.line(), at.column());
            format!("{name}:{}: {}", at.line(), text.replacen(&mark, "", 1))
        }
        None => format!("{name}: {text}"),
    }
}

/// A mapping key as a key path shows it: keys are strings in compose
/// files, but YAML lets `80:` or `true:` be other scalars.
pub fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        _ => "?".into(),
    }
}

/// What a value is, for messages: `a mapping`, `a list`, ….
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let m = parse(
            "a.yml",
            "x-base: &base {image: busybox, user: nobody}\nservices:\n  web:\n    <<: *base\n    user: root\n  db: *base\n",
        )
        .unwrap();
        let want: Value = yaml_serde::from_str(
            "x-base: {image: busybox, user: nobody}\nservices:\n  web: {user: root, image: busybox}\n  db: {image: busybox, user: nobody}\n",
        )
        .unwrap();
        assert_eq!(Value::Mapping(m), want);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        assert_eq!(
            parse("a.yml", "services:\n  web:\n    image: [x\n").unwrap_err(),
            "a.yml:4: did not find expected ',' or ']', while parsing a flow sequence at line 3 column 12"
        );
        assert_eq!(
            parse("b.yml", "a: 1\nb: c: d\n").unwrap_err(),
            "b.yml:2: mapping values are not allowed in this context"
        );
        assert_eq!(
            parse("c.yml", "").unwrap_err(),
            "c.yml:1: empty compose file"
        );
        assert_eq!(
            parse("d.yml", "- a\n").unwrap_err(),
            "d.yml:1: a compose file is a mapping (services:, networks:, …), not a list"
        );
        assert!(parse("e.yml", "a: &x [1]\nb:\n  <<: *x\n")
            .unwrap_err()
            .starts_with("e.yml: merge key (<<): "));
    }
}
