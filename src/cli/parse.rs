//! Parsers for flag values, each with an error a user can act on.

use std::time::Duration;

/// A duration in whole milliseconds, saturating: a duration too long for a
/// u64 of milliseconds is still refused by the daemon's bounds, never
/// wrapped into a short one.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|_| {
        format!("invalid duration {s:?}: expected a number with a unit, e.g. 500ms, 5s, 1m30s")
    })
}

/// A count that must be zero or more. Parsed by hand so that `-1` gets a
/// clear word rather than a parse error.
pub fn count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n as u64),
        Ok(n) => Err(format!("{n} is negative: expected 0 or more")),
        Err(_) => Err(format!(
            "invalid number {s:?}: expected a whole number, 0 or more"
        )),
    }
}

pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("invalid {s:?}: expected KEY=VALUE")),
    }
}

/// `web=5` for `service scale`.
pub fn scale(s: &str) -> Result<(String, u64), String> {
    let bad = || format!("invalid scale {s:?}: expected NAME=N, with N a whole number 0 or more");
    let (name, n) = s.split_once('=').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    let n = n.trim().parse::<u64>().map_err(|_| bad())?;
    Ok((name.to_string(), n))
}

pub fn signal(s: &str) -> Result<String, String> {
    crate::types::parse_signal(s)
        .map(|_| s.to_string())
        .ok_or_else(|| format!("invalid signal {s:?}: expected e.g. SIGTERM, TERM or 15"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(duration("abc").is_err());
        assert!(duration("5").is_err());
    }

    #[test]
    fn counts_and_scales() {
        assert_eq!(count("3").unwrap(), 3);
        assert!(count("-1").unwrap_err().contains("negative"));
        assert_eq!(scale("web=5").unwrap(), ("web".into(), 5));
        assert!(scale("web=x").is_err());
        assert!(scale("web").is_err());
        assert!(scale("=3").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(key_value("A=1=2").unwrap(), ("A".into(), "1=2".into()));
        assert!(key_value("=1").is_err());
        assert!(key_value("A").is_err());
    }
}
