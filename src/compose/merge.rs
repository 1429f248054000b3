//! Several compose files merged into one value, in order, by the Compose
//! Specification's rules: mappings merge key by key, a later scalar wins,
//! lists are appended, except the service keys below. Each path of the
//! result remembers the file (and the path in it) that last set it, so an
//! error found in the merged value names that file's line.
//!
//! The service keys that take the two forms of a list or a mapping
//! (`environment`, `labels`, …) are made mappings here, in every file,
//! whether or not there is a second file: what follows sees one form.

use std::collections::HashMap;

use yaml_serde::{Mapping, Value};

use super::locate::{Fail, KeyPath, Seg};
use super::yaml::{key_text, kind};

/// How the value at a path merges.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// Mappings by key, lists appended, else the later value.
    Default,
    /// The later value replaces the earlier as a whole.
    Replace,
    /// A list of `KEY=VALUE` (or `KEY`) or a mapping: a mapping.
    Assign,
    /// `extra_hosts`: `HOST:IP` (or `HOST=IP`) or a mapping.
    Hosts,
    /// A list of names or a mapping of names: a mapping.
    Names,
    /// Appended, each item once.
    Unique,
    /// Appended, each item once; one string is a list of one.
    Union,
    /// A later item with the target of an earlier one replaces it.
    ByTarget(Target),
}

/// Whose default target applies to an item without one.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Volume,
    Secret,
    Config,
}

fn rule(at: &KeyPath) -> Rule {
    let mut keys = Vec::with_capacity(at.0.len());
    for seg in &at.0 {
        match seg {
            Seg::Key(k) => keys.push(k.as_str()),
            Seg::Index(_) => return Rule::Default,
        }
    }
    match keys.as_slice() {
        ["services", _, "command" | "entrypoint"] => Rule::Replace,
        ["services", _, "healthcheck", "test"] => Rule::Replace,
        ["services", _, "environment" | "labels" | "sysctls" | "annotations"] => Rule::Assign,
        ["services", _, "deploy", "labels"] => Rule::Assign,
        ["networks" | "volumes" | "secrets" | "configs", _, "labels"] => Rule::Assign,
        ["services", _, "extra_hosts"] => Rule::Hosts,
        ["services", _, "depends_on" | "networks"] => Rule::Names,
        ["services", _, "ports"] => Rule::Unique,
        ["services", _, "volumes"] => Rule::ByTarget(Target::Volume),
        ["services", _, "secrets"] => Rule::ByTarget(Target::Secret),
        ["services", _, "configs"] => Rule::ByTarget(Target::Config),
        ["services", _, "cap_add" | "cap_drop" | "devices" | "group_add"] => Rule::Union,
        ["services", _, "dns" | "dns_search" | "tmpfs" | "env_file"] => Rule::Union,
        ["services", _, "deploy", "placement", "constraints"] => Rule::Union,
        _ => Rule::Default,
    }
}

/// The files merged so far.
#[derive(Debug, Default)]
pub struct Merged {
    pub value: Value,
    /// Merged path → (file, path in that file) that last set it.
    origins: HashMap<Vec<Seg>, (usize, KeyPath)>,
}

impl Merged {
    /// Merges file number `file`'s top mapping over what is there. The
    /// error's path is one of that file's.
    pub fn add(&mut self, file: usize, top: Mapping) -> Result<(), Fail> {
        let mut value = std::mem::take(&mut self.value);
        let mut m = Merger {
            file,
            origins: &mut self.origins,
        };
        let result = m.merge(
            &mut value,
            Value::Mapping(top),
            &KeyPath::root(),
            &KeyPath::root(),
        );
        self.value = value;
        result
    }

    /// The file and path in it that last set `path`, or the nearest of
    /// its ancestors that one set.
    pub fn origin(&self, path: &KeyPath) -> Option<(usize, KeyPath)> {
        let mut p: &[Seg] = &path.0;
        loop {
            if let Some(o) = self.origins.get(p) {
                return Some(o.clone());
            }
            p = p.split_last()?.1;
        }
    }
}

struct Merger<'a> {
    file: usize,
    origins: &'a mut HashMap<Vec<Seg>, (usize, KeyPath)>,
}

impl Merger<'_> {
    /// Merges `o` (at `from` in the file) over `e` (at `at` in the result).
    fn merge(&mut self, e: &mut Value, o: Value, at: &KeyPath, from: &KeyPath) -> Result<(), Fail> {
        // A later `key:` with nothing after it leaves the earlier value.
        if o.is_null() && !e.is_null() {
            return Ok(());
        }
        self.origins.insert(at.0.clone(), (self.file, from.clone()));
        match (rule(at), o) {
            (Rule::Replace, o) => {
                *e = Value::Null;
                self.default(e, o, at, from)
            }
            (Rule::Assign | Rule::Hosts | Rule::Names, Value::Sequence(items)) => {
                let which = rule(at);
                let mut entries = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let (k, v) =
                        list_entry(which, item).map_err(|m| Fail::at(&from.index(i), m))?;
                    entries.push((k, v, from.index(i)));
                }
                self.entries(e, entries, at, which)
            }
            (Rule::Assign | Rule::Hosts | Rule::Names, Value::Mapping(map)) => {
                let entries = map
                    .into_iter()
                    .map(|(k, v)| {
                        let k = key_text(&k);
                        let f = from.key(&k);
                        (k, v, f)
                    })
                    .collect();
                self.entries(e, entries, at, rule(at))
            }
            (rule @ (Rule::Union | Rule::Unique), o @ (Value::String(_) | Value::Sequence(_))) => {
                let items = match o {
                    Value::Sequence(items) => items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (v, from.index(i)))
                        .collect(),
                    one => vec![(one, from.clone())],
                };
                // `dns: 1.1.1.1` is a list of one.
                if let (Rule::Union, Value::String(s)) = (rule, &mut *e) {
                    *e = Value::Sequence(vec![Value::String(std::mem::take(s))]);
                }
                self.append(e, items, at, |list, item| {
                    list.iter().position(|x| x == item).map(|_| usize::MAX)
                })
            }
            (Rule::ByTarget(t), Value::Sequence(items)) => {
                let items = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (v, from.index(i)))
                    .collect();
                self.append(e, items, at, |list, item| {
                    let target = target_of(t, item)?;
                    list.iter()
                        .position(|x| target_of(t, x).as_deref() == Some(target.as_str()))
                })
            }
            // Any other form is left for the typed read to refuse.
            (_, o) => self.default(e, o, at, from),
        }
    }

    fn default(
        &mut self,
        e: &mut Value,
        o: Value,
        at: &KeyPath,
        from: &KeyPath,
    ) -> Result<(), Fail> {
        match o {
            Value::Mapping(map) => {
                if !e.is_mapping() {
                    *e = Value::Mapping(Mapping::new());
                }
                let entries = map
                    .into_iter()
                    .map(|(k, v)| {
                        let f = from.key(&key_text(&k));
                        (k, v, f)
                    })
                    .collect::<Vec<_>>();
                let Value::Mapping(em) = e else { return Ok(()) };
                for (k, v, f) in entries {
                    let at_k = at.key(&key_text(&k));
                    let slot = em.entry(k).or_insert(Value::Null);
                    self.merge(slot, v, &at_k, &f)?;
                }
                Ok(())
            }
            Value::Sequence(items) => {
                let items = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (v, from.index(i)))
                    .collect();
                self.append(e, items, at, |_, _| None)
            }
            o => {
                *e = o;
                Ok(())
            }
        }
    }

    /// Mapping entries (from either form) merged key by key.
    fn entries(
        &mut self,
        e: &mut Value,
        entries: Vec<(String, Value, KeyPath)>,
        at: &KeyPath,
        rule: Rule,
    ) -> Result<(), Fail> {
        if !e.is_mapping() {
            *e = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(em) = e else { return Ok(()) };
        for (k, v, from) in entries {
            let at_k = at.key(&k);
            let slot = em.entry(Value::String(k)).or_insert(Value::Null);
            // An environment's `KEY` with no value replaces an earlier
            // value: it means "take it from the environment".
            if v.is_null() && rule == Rule::Assign {
                *slot = Value::Null;
                self.origins.insert(at_k.0.clone(), (self.file, from));
                continue;
            }
            self.merge(slot, v, &at_k, &from)?;
        }
        Ok(())
    }

    /// Items appended to the list `e`; `same` finds the index of an
    /// earlier item the new one replaces (usize::MAX: drop the new one).
    fn append(
        &mut self,
        e: &mut Value,
        items: Vec<(Value, KeyPath)>,
        at: &KeyPath,
        same: impl Fn(&[Value], &Value) -> Option<usize>,
    ) -> Result<(), Fail> {
        if !e.is_sequence() {
            *e = Value::Sequence(Vec::new());
        }
        let Value::Sequence(list) = e else {
            return Ok(());
        };
        for (item, from) in items {
            let i = match same(list, &item) {
                Some(usize::MAX) => continue,
                Some(i) if i < list.len() => {
                    list[i] = Value::Null;
                    i
                }
                _ => {
                    list.push(Value::Null);
                    list.len() - 1
                }
            };
            self.merge(&mut list[i], item, &at.index(i), &from)?;
        }
        Ok(())
    }
}

/// One item of the list form as a mapping's entry.
fn list_entry(rule: Rule, item: Value) -> Result<(String, Value), String> {
    let text = match item {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(match rule {
                Rule::Names => format!("expected a name, not {}", kind(&other)),
                Rule::Hosts => format!("expected HOST:IP, not {}", kind(&other)),
                _ => format!("expected KEY=VALUE, not {}", kind(&other)),
            })
        }
    };
    let split = match rule {
        Rule::Names => None,
        Rule::Hosts => text.split_once('=').or_else(|| text.split_once(':')),
        _ => text.split_once('='),
    };
    Ok(match split {
        Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
        None => (text, Value::Null),
    })
}

/// Where a service's volume, secret or config goes in its containers,
/// as far as merging needs it: the target given, or its default.
fn target_of(t: Target, item: &Value) -> Option<String> {
    match (t, item) {
        (Target::Volume, Value::String(s)) => {
            let mut parts = s.split(':');
            let first = parts.next()?;
            Some(parts.next().unwrap_or(first).to_string())
        }
        (_, Value::Mapping(m)) => match (m.get("target"), m.get("source")) {
            (Some(Value::String(t)), _) => Some(t.clone()),
            (_, Some(Value::String(s))) if t == Target::Config => Some(format!("/{s}")),
            (_, Some(Value::String(s))) if t == Target::Secret => Some(s.clone()),
            _ => None,
        },
        (Target::Secret, Value::String(s)) => Some(s.clone()),
        (Target::Config, Value::String(s)) => Some(format!("/{s}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Mapping {
        match yaml_serde::from_str(s).unwrap() {
            Value::Mapping(m) => m,
            _ => panic!("not a mapping"),
        }
    }

    fn merged(files: &[&str]) -> Merged {
        let mut m = Merged::default();
        for (i, f) in files.iter().enumerate() {
            m.add(i, yaml(f)).unwrap();
        }
        m
    }

    fn same(files: &[&str], want: &str) {
        let m = merged(files);
        let want: Value = yaml_serde::from_str(want).unwrap();
        assert_eq!(
            m.value,
            want,
            "\n{}",
            yaml_serde::to_string(&m.value).unwrap()
        );
    }

    #[test]
    fn mappings_merge_and_later_scalars_win() {
        same(
            &[
                "services: {web: {image: a, deploy: {replicas: 1, mode: replicated}}}\nx: 1",
                "services: {web: {image: b, deploy: {replicas: 3}}, db: {image: p}}",
            ],
            "services: {web: {image: b, deploy: {replicas: 3, mode: replicated}}, db: {image: p}}\nx: 1",
        );
    }

    #[test]
    fn commands_are_replaced_other_lists_appended() {
        same(
            &[
                "services: {w: {command: [a, b], entrypoint: [e], healthcheck: {test: [CMD, x]}, deploy: {placement: {preferences: [{spread: a}]}}}}",
                "services: {w: {command: [c], entrypoint: sh, healthcheck: {test: [CMD, y]}, deploy: {placement: {preferences: [{spread: b}]}}}}",
            ],
            "services: {w: {command: [c], entrypoint: sh, healthcheck: {test: [CMD, y]}, deploy: {placement: {preferences: [{spread: a}, {spread: b}]}}}}",
        );
    }

    #[test]
    fn list_forms_become_mappings() {
        same(
            &[
                "services: {w: {environment: [A=1, B, C=x=y], labels: [l=1], depends_on: [db], networks: [front], deploy: {labels: [d=1]}, extra_hosts: ['h:1.2.3.4']}}\nnetworks: {front: {labels: [n=1]}}",
            ],
            "services: {w: {environment: {A: '1', B: null, C: x=y}, labels: {l: '1'}, depends_on: {db: null}, networks: {front: null}, deploy: {labels: {d: '1'}}, extra_hosts: {h: 1.2.3.4}}}\nnetworks: {front: {labels: {n: '1'}}}",
        );
        same(
            &[
                "services: {w: {environment: {A: 1, B: 2}, depends_on: {db: {condition: service_healthy}}}}",
                "services: {w: {environment: [B=3, C], depends_on: [cache]}}",
                "services: {w: {environment: {C: 4}}}",
            ],
            "services: {w: {environment: {A: 1, B: '3', C: 4}, depends_on: {db: {condition: service_healthy}, cache: null}}}",
        );
    }

    #[test]
    fn ports_appended_once_sets_unioned() {
        same(
            &[
                "services: {w: {ports: ['80:80', '443:443'], cap_add: [A, B], dns: 1.1.1.1, tmpfs: /a, deploy: {placement: {constraints: [x==1]}}}}",
                "services: {w: {ports: ['80:80', '81:81'], cap_add: [B, C], dns: [8.8.8.8, 1.1.1.1], tmpfs: [/b], deploy: {placement: {constraints: [x==1, y==2]}}}}",
            ],
            "services: {w: {ports: ['80:80', '443:443', '81:81'], cap_add: [A, B, C], dns: [1.1.1.1, 8.8.8.8], tmpfs: [/a, /b], deploy: {placement: {constraints: [x==1, y==2]}}}}",
        );
    }

    #[test]
    fn mounts_and_files_merge_by_target() {
        same(
            &[
                "services: {w: {volumes: ['data:/data', './a:/a:ro'], secrets: [pw, {source: k, target: /k}], configs: [c]}}",
                "services: {w: {volumes: [{type: volume, source: other, target: /data}, '/b:/b'], secrets: [{source: pw2, target: pw}, k2], configs: [{source: c2, target: /c}]}}",
            ],
            "services: {w: {volumes: [{type: volume, source: other, target: /data}, './a:/a:ro', '/b:/b'], secrets: [{source: pw2, target: pw}, {source: k, target: /k}, k2], configs: [{source: c2, target: /c}]}}",
        );
    }

    #[test]
    fn null_keeps_the_earlier_value() {
        same(
            &[
                "services: {w: {image: a}}\nvolumes: {data: {driver: local}}",
                "services: {w: {image: }}\nvolumes: {data: }",
            ],
            "services: {w: {image: a}}\nvolumes: {data: {driver: local}}",
        );
    }

    #[test]
    fn origins_name_the_last_file_and_its_path() {
        let m = merged(&[
            "services: {w: {image: a, environment: [A=1], ports: ['80:80']}}",
            "services: {w: {environment: [B=2], ports: ['81:81']}}",
        ]);
        let p = |s: &[&str]| KeyPath::of(s);
        assert_eq!(
            m.origin(&p(&["services", "w", "image"])),
            Some((0, p(&["services", "w", "image"])))
        );
        assert_eq!(
            m.origin(&p(&["services", "w"])),
            Some((1, p(&["services", "w"])))
        );
        assert_eq!(
            m.origin(&p(&["services", "w", "environment", "A"])),
            Some((0, p(&["services", "w", "environment"]).index(0)))
        );
        assert_eq!(
            m.origin(&p(&["services", "w", "environment", "B"])),
            Some((1, p(&["services", "w", "environment"]).index(0)))
        );
        assert_eq!(
            m.origin(&p(&["services", "w", "ports"]).index(1)),
            Some((1, p(&["services", "w", "ports"]).index(0)))
        );
        // An unknown path: its nearest ancestor's.
        assert_eq!(
            m.origin(&p(&["services", "w", "image", "deeper"])),
            Some((0, p(&["services", "w", "image"])))
        );
    }

    #[test]
    fn bad_list_items_name_the_files_path() {
        let mut m = Merged::default();
        let err = m
            .add(0, yaml("services: {w: {environment: [A=1, {B: 2}]}}"))
            .unwrap_err();
        assert_eq!(err.path.to_string(), "services.w.environment[1]");
        assert_eq!(err.msg, "expected KEY=VALUE, not a mapping");
    }
}
