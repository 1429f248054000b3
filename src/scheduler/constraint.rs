//! Placement constraints: `node.labels.zone==a`, `node.role!=manager`, …
//! on `node.id`, `node.hostname`, `node.role`, `node.platform.os`,
//! `node.platform.arch` and `node.labels.<key>`, as Swarm has them.

use crate::types::{normalize_arch, Node};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    key: String,
    equal: bool,
    value: String,
}

/// A constraint that cannot be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid constraint {expr:?}: {why}")]
pub struct BadConstraint {
    expr: String,
    why: String,
}

impl Constraint {
    pub fn parse(expr: &str) -> Result<Constraint, BadConstraint> {
        let bad = |why: String| BadConstraint {
            expr: expr.to_string(),
            why,
        };
        let (key, equal, value) = if let Some((k, v)) = expr.split_once("==") {
            (k, true, v)
        } else if let Some((k, v)) = expr.split_once("!=") {
            (k, false, v)
        } else {
            return Err(bad("expected KEY==VALUE or KEY!=VALUE".into()));
        };
        let key = key.trim().to_string();
        let known = matches!(
            key.as_str(),
            "node.id" | "node.hostname" | "node.role" | "node.platform.os" | "node.platform.arch"
        ) || key
            .strip_prefix("node.labels.")
            .is_some_and(|l| !l.is_empty());
        if !known {
            return Err(bad(format!(
                "unknown key {key:?} (use node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<key>)"
            )));
        }
        let value = value.trim().to_string();
        if value.is_empty() {
            return Err(bad("empty value".into()));
        }
        Ok(Constraint { key, equal, value })
    }

    pub fn matches(&self, node: &Node) -> bool {
        let actual: Option<String> = match self.key.as_str() {
            "node.id" => Some(node.id.clone()),
            "node.hostname" => Some(node.description.hostname.clone()),
            "node.role" => Some(node.spec.role.as_str().to_string()),
            "node.platform.os" => Some(node.description.platform.os.clone()),
            "node.platform.arch" => Some(node.description.platform.arch.clone()),
            k => k
                .strip_prefix("node.labels.")
                .and_then(|l| node.spec.labels.get(l).cloned()),
        };
        let same = match (&actual, self.key.as_str()) {
            // `aarch64` and `arm64` are one arch.
            (Some(a), "node.platform.arch") => normalize_arch(a) == normalize_arch(&self.value),
            (Some(a), _) => a.eq_ignore_ascii_case(&self.value),
            (None, _) => false,
        };
        same == self.equal
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.equal { "==" } else { "!=" };
        write!(f, "{}{op}{}", self.key, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;

    fn node() -> Node {
        Node {
            id: "n1".into(),
            meta: Meta::default(),
            spec: NodeSpec {
                role: NodeRole::Worker,
                availability: Availability::Active,
                labels: [("zone".to_string(), "a".to_string())].into(),
            },
            description: NodeDescription {
                hostname: "pi1".into(),
                platform: Platform {
                    os: "linux".into(),
                    arch: "arm64".into(),
                },
                ..Default::default()
            },
            status: NodeStatus::default(),
            version: String::new(),
            bridge_subnet: None,
        }
    }

    #[test]
    fn constraints_match_like_swarm() {
        let n = node();
        let m = |e: &str| Constraint::parse(e).unwrap().matches(&n);
        assert!(m("node.labels.zone==a"));
        assert!(!m("node.labels.zone==b"));
        assert!(m("node.labels.zone!=b"));
        assert!(
            !m("node.labels.rack==1"),
            "a missing label matches no value"
        );
        assert!(m("node.labels.rack!=1"));
        assert!(m("node.role==worker") && m("node.role!=manager"));
        assert!(m("node.platform.arch==aarch64"), "aarch64 is arm64");
        assert!(m("node.hostname==pi1") && m("node.id==n1"));
    }

    #[test]
    fn bad_constraints_are_refused() {
        assert!(Constraint::parse("node.labels.zone=a").is_err());
        assert!(Constraint::parse("node.colour==red").is_err());
        assert!(Constraint::parse("node.labels.==x").is_err());
        assert!(Constraint::parse("node.role==").is_err());
    }
}
