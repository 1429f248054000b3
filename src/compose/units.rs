//! Durations and byte sizes as compose files write them.
//!
//! Durations are Go's (`time.ParseDuration`, which docker compose uses):
//! `1m30s`, `10s`, `500ms`, `1.5h`, `2h30m`; units `ns`, `us` (`µs`), `ms`,
//! `s`, `m`, `h`. A bare number other than 0 is refused, as compose refuses
//! it: `10` could mean seconds or nanoseconds, and a wrong guess is a
//! silent 10^9 factor.
//!
//! Sizes are docker's (`RAMInBytes`): a number, optionally fractional,
//! then an optional `b`, `k`, `m`, `g`, `t` or `p` (powers of 1024, either
//! case), optionally followed by `i` and/or `b`: `512M`, `1g`, `100k`,
//! `1.5G`, `64mb`, `1024` (bytes).

/// Nanoseconds per unit, longest unit names first so `ms` is not `m`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The longest duration taken: a year, far past any timeout or delay.
const MAX_NANOS: u128 = 366 * 24 * 3_600_000_000_000;

/// `text` in milliseconds (a fraction of a millisecond is dropped).
pub fn duration_ms(text: &str) -> Result<u64, String> {
    let bad = |why: &str| Err(format!("invalid duration {text:?}: {why}"));
    let s = text.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return bad("empty");
    }
    if s.starts_with('-') {
        return bad("it is negative");
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return bad("expected a number and a unit, as 1m30s, 10s or 500ms");
        }
        let Some(&(unit, scale)) = UNITS.iter().find(|(u, _)| after.starts_with(u)) else {
            return match after.is_empty() {
                true => bad("a number needs a unit (s, ms, m, h), as 10s or 1m30s"),
                false => bad("units are ns, us, ms, s, m and h"),
            };
        };
        // Digits beyond 20 would overflow; no real duration has them.
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.len() > 20 || frac.len() > 20 {
            return bad("too long");
        }
        let whole: u128 = match whole {
            "" => 0,
            w => w
                .parse()
                .map_err(|_| format!("invalid duration {text:?}"))?,
        };
        let mut part = whole * scale;
        if !frac.is_empty() {
            let f: u128 = frac
                .parse()
                .map_err(|_| format!("invalid duration {text:?}"))?;
            part += f * scale / 10u128.pow(frac.len() as u32);
        }
        nanos += part;
        if nanos > MAX_NANOS {
            return bad("longer than a year");
        }
        rest = &after[unit.len()..];
    }
    Ok((nanos / 1_000_000) as u64)
}

/// `text` in bytes.
pub fn size_bytes(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid size {text:?}: expected a number of bytes, or with a unit, as 512M, 1.5G or 100k")
    };
    let s = text.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let mut u = unit.as_str();
    let power = match u.chars().next() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            u = &u[1..];
            "kmgtp".find(c).map_or(0, |i| i + 1)
        }
        _ => 0,
    };
    let u = u.strip_prefix('i').unwrap_or(u);
    let u = u.strip_prefix('b').unwrap_or(u);
    if !u.is_empty() || number.is_empty() || number.matches('.').count() > 1 || number.len() > 30 {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * 1024f64.powi(power as i32);
    // u64::MAX is not exact as f64; 2^63 bytes is beyond any machine.
    if !bytes.is_finite() || bytes >= 9.2e18 {
        return Err(format!("invalid size {text:?}: too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, ms) in [
            ("1m30s", 90_000),
            ("10s", 10_000),
            ("500ms", 500),
            ("1h", 3_600_000),
            ("2h30m", 9_000_000),
            ("1.5s", 1_500),
            ("0.3s", 300),
            (".5s", 500),
            ("1h0m0.25s", 3_600_250),
            ("1500us", 1),
            ("999999ns", 0),
            ("0", 0),
            ("+5s", 5_000),
            ("1µs", 0),
        ] {
            assert_eq!(duration_ms(text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn bad_durations() {
        for (text, why) in [
            ("10", "a number needs a unit"),
            ("", "empty"),
            ("-5s", "negative"),
            ("5 s", "units are"),
            ("5x", "units are"),
            ("s", "expected a number"),
            ("1.2.3s", "expected a number"),
            ("9999h", "longer than a year"),
            ("99999999999999999999999h", "too long"),
        ] {
            let err = duration_ms(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("1024", 1024),
            ("512M", 512 << 20),
            ("1g", 1 << 30),
            ("100k", 100 << 10),
            ("1.5G", 3 << 29),
            ("64mb", 64 << 20),
            ("2GiB", 2 << 30),
            ("10 KB", 10 << 10),
            ("7b", 7),
            ("1t", 1 << 40),
        ] {
            assert_eq!(size_bytes(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes() {
        for text in ["", "M", "12x", "1.2.3M", "-5M", "5 5M", "1MM"] {
            assert!(size_bytes(text).is_err(), "{text}");
        }
        assert!(size_bytes("99999999p").unwrap_err().contains("too large"));
    }
}
