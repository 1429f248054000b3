//! Resource limits of a task's processes (`--ulimit nofile=1024:2048`), as
//! the kernel's rlimits.

use serde::{Deserialize, Serialize};

/// `RLIM_INFINITY`: what `-1` and `unlimited` stand for.
pub const UNLIMITED: u64 = u64::MAX;

/// The limits docker's `--ulimit` knows, without the `RLIMIT_` prefix.
const NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Lowercase, as docker writes it (`nofile`).
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

impl Ulimit {
    /// The runtime spec's name: `RLIMIT_NOFILE`.
    pub fn rlimit(&self) -> String {
        format!("RLIMIT_{}", self.name.to_ascii_uppercase())
    }
}

fn value(s: &str) -> Result<u64, String> {
    match s {
        "-1" | "unlimited" => Ok(UNLIMITED),
        _ => s
            .parse()
            .map_err(|_| format!("invalid ulimit value {s:?}: a number, or -1 for unlimited")),
    }
}

fn show(v: u64) -> String {
    if v == UNLIMITED {
        "-1".into()
    } else {
        v.to_string()
    }
}

impl std::str::FromStr for Ulimit {
    type Err = String;

    /// `NAME=SOFT[:HARD]` (HARD defaults to SOFT).
    fn from_str(s: &str) -> Result<Ulimit, String> {
        let (name, values) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid ulimit {s:?}: expected NAME=SOFT[:HARD]"))?;
        let name = name.trim().to_ascii_lowercase();
        if !NAMES.contains(&name.as_str()) {
            return Err(format!(
                "invalid ulimit {name:?}: one of {}",
                NAMES.join(", ")
            ));
        }
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (value(s)?, value(h)?),
            None => (value(values)?, value(values)?),
        };
        if soft > hard {
            return Err(format!(
                "invalid ulimit {s:?}: the soft limit is above the hard one"
            ));
        }
        Ok(Ulimit { name, soft, hard })
    }
}

impl std::fmt::Display for Ulimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}:{}", self.name, show(self.soft), show(self.hard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_s_ulimits() {
        let u: Ulimit = "nofile=1024:2048".parse().unwrap();
        assert_eq!(
            (u.soft, u.hard, u.rlimit().as_str()),
            (1024, 2048, "RLIMIT_NOFILE")
        );
        let u: Ulimit = "NPROC=64".parse().unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nproc", 64, 64));
        let u: Ulimit = "core=-1".parse().unwrap();
        assert_eq!(u.to_string(), "core=-1:-1");
        for bad in ["nofile", "files=1", "nofile=2:1", "nofile=x", "nofile=1:"] {
            assert!(bad.parse::<Ulimit>().is_err(), "{bad:?}");
        }
    }
}
