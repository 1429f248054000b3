//! The warnings of a load: each ignored key said once for all the
//! services (networks, …) that have it, then the other notes, each once.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Notes {
    /// (kind, key) → the objects of that kind with it, and why it is
    /// ignored.
    ignored: BTreeMap<(String, String), (BTreeSet<String>, String)>,
    other: Vec<String>,
}

impl Notes {
    /// Key `key` of `kind` (`services`, `networks`, …) `name` is ignored,
    /// for `reason`.
    pub fn ignore(&mut self, kind: &str, name: &str, key: &str, reason: &str) {
        self.ignored
            .entry((kind.to_string(), key.to_string()))
            .or_insert_with(|| (BTreeSet::new(), reason.to_string()))
            .0
            .insert(name.to_string());
    }

    /// Whether `ignore` was told of this key of this object.
    pub fn ignored(&self, kind: &str, name: &str, key: &str) -> bool {
        self.ignored
            .get(&(kind.to_string(), key.to_string()))
            .is_some_and(|(names, _)| names.contains(name))
    }

    pub fn say(&mut self, msg: String) {
        if !self.other.contains(&msg) {
            self.other.push(msg);
        }
    }

    /// `ignoring KEY (KIND a, b): REASON`, by kind and key, then the rest.
    pub fn into_warnings(self) -> Vec<String> {
        let mut out: Vec<String> = self
            .ignored
            .into_iter()
            .map(|((kind, key), (names, reason))| {
                let names: Vec<String> = names.into_iter().collect();
                format!("ignoring {key} ({kind} {}): {reason}", names.join(", "))
            })
            .collect();
        out.extend(self.other);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_key() {
        let mut n = Notes::default();
        n.ignore("services", "web", "build", "shoal runs images");
        n.ignore("services", "api", "build", "shoal runs images");
        n.ignore("networks", "front", "internal", "not supported");
        n.say("x".into());
        n.say("x".into());
        assert!(n.ignored("services", "api", "build"));
        assert!(!n.ignored("services", "db", "build"));
        assert_eq!(
            n.into_warnings(),
            vec![
                "ignoring internal (networks front): not supported",
                "ignoring build (services api, web): shoal runs images",
                "x",
            ]
        );
    }
}
