//! Sizes and CPU shares as users write them (`64M`, `1.5G`, `0.5`) and as
//! messages show them (`64 MiB`). Binary units, as docker's flags use.

const UNITS: [(&str, u64); 5] = [
    ("b", 1),
    ("k", 1 << 10),
    ("m", 1 << 20),
    ("g", 1 << 30),
    ("t", 1 << 40),
];

/// `64M`, `64MiB`, `64mb`, `1.5G`, `512k` or plain bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?}: expected a number with a unit, e.g. 64M or 1.5G");
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| {
            t.strip_suffix('b')
                .filter(|r| r.ends_with(|c: char| c.is_ascii_alphabetic()))
        })
        .unwrap_or(&t);
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor = match unit {
        "" => 1,
        u => UNITS.iter().find(|(n, _)| *n == u).ok_or_else(bad)?.1,
    };
    let n: f64 = number.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    let bytes = n * factor as f64;
    if bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("invalid size {s:?}: too large"));
    }
    Ok(bytes.round() as u64)
}

/// CPUs as a decimal (`0.5`, `2`) in billionths of a CPU.
pub fn parse_cpus(s: &str) -> Result<u64, String> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid CPU count {s:?}: expected a number such as 0.5 or 2"))?;
    if !n.is_finite() || !(0.0..=1e6).contains(&n) {
        return Err(format!("invalid CPU count {s:?}: expected 0 or more"));
    }
    Ok((n * 1e9).round() as u64)
}

/// `64 MiB`, `1.5 GiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    let (name, factor) = UNITS
        .iter()
        .rev()
        .find(|(_, f)| n >= *f)
        .copied()
        .unwrap_or(("b", 1));
    if factor == 1 {
        return format!("{n} B");
    }
    let v = n as f64 / factor as f64;
    let unit = format!("{}iB", name.to_ascii_uppercase());
    if v.fract() == 0.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

/// `0.5`, `2`: CPUs from billionths.
pub fn human_cpus(nano: u64) -> String {
    let v = nano as f64 / 1e9;
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_writes_them() {
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("64mb"), Ok(64 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("64X").is_err());
        assert!(parse_bytes("-1M").is_err());
        assert!(parse_bytes("M").is_err());
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert!(parse_cpus("-1").is_err());
        assert_eq!(human_cpus(1_500_000_000), "1.5");
    }
}
