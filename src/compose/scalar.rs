//! The value types of the compose model that take more than one YAML form.
//!
//! Numbers and booleans also come as strings, because interpolation makes
//! strings (`replicas: ${REPLICAS:-2}`), as docker compose takes them too.
//! A wrong one fails with serde's own words (`invalid type: string
//! "three", expected u64`), which `compose` places at its key path.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};

use super::units;

/// A whole number: `3` or `"3"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Int(pub u64);

/// A number: `0.5`, `2` or `"0.5"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

/// `true`/`false`, also as strings (and docker's `yes`/`no`/`on`/`off`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flag(pub bool);

/// A string, or a number or boolean taken as the string it is written as
/// (`LEVEL: 3`, `user: 1000`).
#[derive(Debug, Clone, PartialEq)]
pub struct Text(pub String);

/// A duration (`1m30s`), in milliseconds: see `units`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Millis(pub u64);

/// A size (`512M`) or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bytes(pub u64);

/// A file mode: `0440` and `"0440"` are octal (as docker's YAML 1.1 reader
/// has it; yaml_serde, YAML 1.2, leaves a leading-zero number a string),
/// `0o440` is octal, `288` is decimal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileMode(pub u32);

/// A string or a list of strings (`command`, `entrypoint`,
/// `healthcheck.test`): which it was matters.
#[derive(Debug, Clone, PartialEq)]
pub enum StrOrList {
    Str(String),
    List(Vec<String>),
}

/// A short form (a string, or a number taken as one) or a long form (a
/// mapping): `ports`, `volumes`, `secrets`, `env_file` items, ulimits.
#[derive(Debug, Clone, PartialEq)]
pub enum StrOr<T> {
    Str(String),
    Long(T),
}

/// A visitor that takes a string, and numbers and booleans as strings.
struct TextVisitor(&'static str);

impl Visitor<'_> for TextVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor("a string")).map(Text)
    }
}

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // serde's word for it, so messages read as serde's own.
        f.write_str("u64")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        v.trim()
            .parse()
            .map_err(|_| E::invalid_type(Unexpected::Str(v), &self))
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor).map(Int)
    }
}

struct NumVisitor;

impl Visitor<'_> for NumVisitor {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => Err(E::invalid_type(Unexpected::Str(v), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumVisitor).map(Num)
    }
}

struct FlagVisitor;

impl Visitor<'_> for FlagVisitor {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true),
            "false" | "no" | "off" => Ok(false),
            _ => Err(E::invalid_type(Unexpected::Str(v), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FlagVisitor).map(Flag)
    }
}

/// `external`: a flag, or compose file format 3's `{name: N}` (external,
/// found by name N), which swarm stack files written for docker still use.
#[derive(Debug, Clone, PartialEq)]
pub struct External {
    pub on: bool,
    /// The legacy form's name.
    pub name: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyExternal {
    name: String,
}

struct ExternalVisitor;

impl<'de> Visitor<'de> for ExternalVisitor {
    type Value = External;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<External, E> {
        Ok(External { on: v, name: None })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<External, E> {
        FlagVisitor
            .visit_str(v)
            .map(|on| External { on, name: None })
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<External, A::Error> {
        let legacy = LegacyExternal::deserialize(MapAccessDeserializer::new(map))?;
        Ok(External {
            on: true,
            name: Some(legacy.name),
        })
    }
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExternalVisitor)
    }
}

struct MillisVisitor;

impl Visitor<'_> for MillisVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration, as 1m30s, 10s or 500ms")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        match v {
            0 => Ok(0),
            _ => Err(E::custom(format!(
                "invalid duration {v}: a number needs a unit (s, ms, m, h), as {v}s"
            ))),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        units::duration_ms(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MillisVisitor).map(Millis)
    }
}

struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a size, as 512M, 1.5G or a number of bytes")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        units::size_bytes(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BytesVisitor).map(Bytes)
    }
}

/// The largest file mode: permissions and setuid, setgid, sticky.
const MAX_MODE: u64 = 0o7777;

struct ModeVisitor;

impl Visitor<'_> for ModeVisitor {
    type Value = u32;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a file mode, as 0440")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        match v <= MAX_MODE {
            true => Ok(v as u32),
            false => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
        let s = v.trim();
        let parsed = match s.strip_prefix("0o").or_else(|| s.strip_prefix('0')) {
            Some("") => Ok(0),
            Some(octal) => u64::from_str_radix(octal, 8),
            None => s.parse(),
        };
        match parsed {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ModeVisitor).map(FileMode)
    }
}

struct StrOrListVisitor;

impl<'de> Visitor<'de> for StrOrListVisitor {
    type Value = StrOrList;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<StrOrList, E> {
        Ok(StrOrList::Str(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrOrList, A::Error> {
        let mut out = Vec::new();
        while let Some(Text(s)) = seq.next_element()? {
            out.push(s);
        }
        Ok(StrOrList::List(out))
    }
}

impl<'de> Deserialize<'de> for StrOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrOrListVisitor)
    }
}

struct StrOrVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for StrOrVisitor<T> {
    type Value = StrOr<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a mapping")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<StrOr<T>, E> {
        Ok(StrOr::Str(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrOr<T>, E> {
        Ok(StrOr::Str(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrOr<T>, E> {
        Ok(StrOr::Str(v.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrOr<T>, A::Error> {
        // The long form, read as its own type (with its own unknown-key
        // checks), through the same map: key paths go on being tracked.
        T::deserialize(MapAccessDeserializer::new(map)).map(StrOr::Long)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrOrVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Long {
        a: Int,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct All {
        int: Option<Int>,
        num: Option<Num>,
        flag: Option<Flag>,
        text: Option<Text>,
        ms: Option<Millis>,
        bytes: Option<Bytes>,
        mode: Option<FileMode>,
        sl: Option<StrOrList>,
        so: Option<Vec<StrOr<Long>>>,
    }

    fn read(yaml: &str) -> Result<All, String> {
        let v: yaml_serde::Value = yaml_serde::from_str(yaml).unwrap();
        serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn numbers_and_flags_also_as_strings() {
        let a = read("int: '3'\nnum: '0.5'\nflag: 'yes'\ntext: 1.5\n").unwrap();
        assert_eq!(a.int, Some(Int(3)));
        assert_eq!(a.num, Some(Num(0.5)));
        assert_eq!(a.flag, Some(Flag(true)));
        assert_eq!(a.text, Some(Text("1.5".into())));
        let a = read("int: 3\nnum: 2\nflag: false\ntext: true\n").unwrap();
        assert_eq!(
            (a.int, a.num, a.flag),
            (Some(Int(3)), Some(Num(2.0)), Some(Flag(false)))
        );
        assert_eq!(a.text, Some(Text("true".into())));
        assert_eq!(
            read("int: three").unwrap_err(),
            "int: invalid type: string \"three\", expected u64"
        );
        assert_eq!(
            read("int: -1").unwrap_err(),
            "int: invalid value: integer `-1`, expected u64"
        );
        assert_eq!(
            read("flag: maybe").unwrap_err(),
            "flag: invalid type: string \"maybe\", expected a boolean"
        );
        assert_eq!(
            read("text: [a]").unwrap_err(),
            "text: invalid type: sequence, expected a string"
        );
    }

    #[test]
    fn durations_sizes_modes() {
        let a = read("ms: 1m30s\nbytes: 1.5G\nmode: 0440\n").unwrap();
        assert_eq!(a.ms, Some(Millis(90_000)));
        assert_eq!(a.bytes, Some(Bytes(3 << 29)));
        assert_eq!(a.mode, Some(FileMode(0o440)));
        for (yaml, mode) in [
            ("mode: '0440'", 0o440),
            ("mode: 0o440", 0o440),
            ("mode: 288", 288),
            ("mode: '0'", 0),
            ("mode: 0", 0),
        ] {
            assert_eq!(read(yaml).unwrap().mode, Some(FileMode(mode)), "{yaml}");
        }
        assert_eq!(read("bytes: 1024").unwrap().bytes, Some(Bytes(1024)));
        assert_eq!(read("ms: 0").unwrap().ms, Some(Millis(0)));
        assert_eq!(
            read("ms: 10").unwrap_err(),
            "ms: invalid duration 10: a number needs a unit (s, ms, m, h), as 10s"
        );
        assert!(read("mode: 0999")
            .unwrap_err()
            .contains("expected a file mode"));
        assert!(read("mode: 0o17777")
            .unwrap_err()
            .contains("expected a file mode"));
    }

    #[test]
    fn short_and_long_forms() {
        let a = read("sl: echo hi\nso: ['80:80', 443, {a: '2'}]\n").unwrap();
        assert_eq!(a.sl, Some(StrOrList::Str("echo hi".into())));
        let so = a.so.unwrap();
        assert_eq!(so[0], StrOr::Str("80:80".into()));
        assert_eq!(so[1], StrOr::Str("443".into()));
        assert!(matches!(so[2], StrOr::Long(Long { a: Int(2) })));
        let a = read("sl: [sleep, 3600]\n").unwrap();
        assert_eq!(
            a.sl,
            Some(StrOrList::List(vec!["sleep".into(), "3600".into()]))
        );
        assert_eq!(
            read("so: [{a: 1}, {b: 1}]").unwrap_err(),
            "so[1].b: unknown field `b`, expected `a`"
        );
        assert_eq!(
            read("so: [[1]]").unwrap_err(),
            "so[0]: invalid type: sequence, expected a string or a mapping"
        );
    }
}
