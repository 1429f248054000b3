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

/// A share from 0 to 1, e.g. `0.2`.
pub fn ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "invalid ratio {s:?}: expected a number from 0 to 1, e.g. 0.2"
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
    fn mounts_and_file_refs_parse_as_docker_writes_them() {
        let m = mount("type=tmpfs,target=/t,tmpfs-size=16M,tmpfs-mode=1770").unwrap();
        assert_eq!((m.kind.as_str(), m.tmpfs_size), ("tmpfs", 16 << 20));
        assert_eq!(m.tmpfs_mode, Some(0o1770));
        let m = mount("/srv/x:/data:ro").unwrap();
        assert_eq!(
            (m.kind.as_str(), m.source.as_str(), m.readonly),
            ("bind", "/srv/x", true)
        );
        assert_eq!(mount("pg:/var/lib/pg").unwrap().kind, "volume");
        assert!(mount("type=bind,source=/a")
            .unwrap_err()
            .contains("no target"));
        assert!(mount("type=bind,colour=red,target=/a")
            .unwrap_err()
            .contains("unknown --mount key"));
        let f = file_ref("source=pw,target=/etc/pw,uid=7,mode=0400").unwrap();
        assert_eq!((f.uid, f.mode, f.target.as_str()), (7, 0o400, "/etc/pw"));
        assert_eq!(file_ref("pw").unwrap().mode, 0o444);
        assert!(file_ref("target=/x").unwrap_err().contains("no source"));
    }

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

/// `--publish`: `published=P,target=T[,protocol=tcp|udp][,mode=ingress|host]`,
/// `--mount`: `type=bind|volume|tmpfs,source=PATH|NAME,target=PATH
/// [,readonly][,volume-driver=local][,tmpfs-size=16M][,tmpfs-mode=1770]`,
/// as docker takes it, or the short `SOURCE:TARGET[:ro]` (a bind when
/// SOURCE is a path, else a volume).
pub fn mount(s: &str) -> Result<crate::api::spec::MountBody, String> {
    let mut body = crate::api::spec::MountBody {
        kind: "volume".into(),
        source: String::new(),
        target: String::new(),
        readonly: false,
        tmpfs_size: 0,
        tmpfs_mode: None,
        volume_driver: None,
    };
    if !s.contains('=') {
        let mut parts = s.split(':');
        let (Some(src), Some(dst)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "invalid --mount {s:?}: expected type=…,target=… or SOURCE:TARGET[:ro]"
            ));
        };
        body.kind = if src.starts_with('/') {
            "bind"
        } else {
            "volume"
        }
        .into();
        body.source = src.into();
        body.target = dst.into();
        match parts.next() {
            None => {}
            Some("ro") => body.readonly = true,
            Some("rw") => {}
            Some(o) => return Err(format!("invalid --mount option {o:?}: expected ro or rw")),
        }
        return Ok(body);
    }
    for part in s.split(',') {
        let (k, v) = part.split_once('=').unwrap_or((part, "true"));
        match k {
            "type" => body.kind = v.into(),
            "source" | "src" => body.source = v.into(),
            "target" | "dst" | "destination" => body.target = v.into(),
            "readonly" | "ro" => {
                body.readonly = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("invalid readonly {v:?}: expected true or false")),
                }
            }
            "tmpfs-size" => body.tmpfs_size = crate::types::parse_bytes(v)?,
            "volume-driver" => body.volume_driver = Some(v.into()),
            "tmpfs-mode" => {
                body.tmpfs_mode = Some(
                    u32::from_str_radix(v, 8).map_err(|_| format!("invalid tmpfs-mode {v:?}"))?,
                )
            }
            _ => {
                return Err(format!(
                    "unknown --mount key {k:?}: expected type, source, target, readonly, volume-driver, tmpfs-size or tmpfs-mode"
                ))
            }
        }
    }
    if body.target.is_empty() {
        return Err(format!("--mount {s:?} has no target"));
    }
    Ok(body)
}

/// `--secret` and `--config`: `NAME`, or `source=NAME[,target=PATH]
/// [,uid=N][,gid=N][,mode=0400]` (mode in octal), as docker takes them.
pub fn file_ref(s: &str) -> Result<crate::api::spec::FileRefBody, String> {
    let mut body = crate::api::spec::FileRefBody {
        source: String::new(),
        target: String::new(),
        uid: 0,
        gid: 0,
        mode: 0o444,
        id: String::new(),
    };
    if !s.contains('=') {
        body.source = s.to_string();
        return Ok(body);
    }
    let number = |k: &str, v: &str, radix: u32| {
        u32::from_str_radix(v, radix).map_err(|_| format!("invalid {k} {v:?}"))
    };
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("invalid part {part:?}: expected KEY=VALUE"))?;
        match k {
            "source" | "src" => body.source = v.to_string(),
            "target" | "dst" | "destination" => body.target = v.to_string(),
            "uid" => body.uid = number(k, v, 10)?,
            "gid" => body.gid = number(k, v, 10)?,
            "mode" => body.mode = number(k, v, 8)?,
            _ => {
                return Err(format!(
                    "unknown key {k:?}: expected source, target, uid, gid or mode"
                ))
            }
        }
    }
    if body.source.is_empty() {
        return Err(format!("{s:?} names no source"));
    }
    Ok(body)
}

/// or docker's short form `P:T[/udp]`.
pub fn publish(s: &str) -> Result<crate::api::spec::PortBody, String> {
    let port = |what: &str, v: &str| -> Result<u16, String> {
        match v.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("invalid {what} port {v:?}: expected 1 to 65535")),
        }
    };
    let mut body = crate::api::spec::PortBody {
        published: 0,
        target: 0,
        protocol: "tcp".into(),
        mode: "ingress".into(),
    };
    if !s.contains('=') {
        let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let (p, t) = ports.split_once(':').ok_or_else(|| {
            format!("invalid --publish {s:?}: expected published=P,target=T or P:T")
        })?;
        body.published = port("published", p)?;
        body.target = port("target", t)?;
        body.protocol = proto.to_string();
        return Ok(body);
    }
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("invalid --publish part {part:?}: expected KEY=VALUE"))?;
        match k {
            "published" => body.published = port("published", v)?,
            "target" => body.target = port("target", v)?,
            "protocol" => body.protocol = v.to_string(),
            "mode" => body.mode = v.to_string(),
            _ => {
                return Err(format!(
                    "unknown --publish key {k:?}: expected published, target, protocol or mode"
                ))
            }
        }
    }
    if body.target == 0 {
        return Err(format!("--publish {s:?} needs target="));
    }
    if body.published == 0 {
        return Err(format!("--publish {s:?} needs published="));
    }
    Ok(body)
}

#[cfg(test)]
mod publish_tests {
    use super::publish;

    #[test]
    fn both_forms_of_publish_parse() {
        let p = publish("published=8080,target=80").unwrap();
        assert_eq!(
            (p.published, p.target, p.protocol.as_str(), p.mode.as_str()),
            (8080, 80, "tcp", "ingress")
        );
        let p = publish("published=53,target=5353,protocol=udp,mode=host").unwrap();
        assert_eq!(
            (p.published, p.target, p.protocol.as_str(), p.mode.as_str()),
            (53, 5353, "udp", "host")
        );
        let p = publish("8080:80/udp").unwrap();
        assert_eq!(
            (p.published, p.target, p.protocol.as_str()),
            (8080, 80, "udp")
        );
        assert!(publish("target=80").unwrap_err().contains("published="));
        assert!(publish("published=0,target=80")
            .unwrap_err()
            .contains("1 to 65535"));
        assert!(publish("8080").unwrap_err().contains("P:T"));
        assert!(publish("published=1,target=2,color=red")
            .unwrap_err()
            .contains("unknown"));
    }
}
