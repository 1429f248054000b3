//! A service's `ports`: the short form (`"8080:80"`, `"8080:80/udp"`,
//! `"127.0.0.1:8080:80"`, ranges `"8000-8001:80-81"`) and the long one
//! (`target`, `published`, `protocol`, `mode`). Every port needs its
//! published port: the managers do not pick one (`PortBody::into_config`
//! refuses 0), so `"80"` alone is refused here, with the fix.

use crate::api::spec::PortBody;

use super::locate::{Fail, KeyPath};
use super::model::{set_keys, Port};
use super::scalar::StrOr;
use super::Ctx;

/// The most ports a service publishes (ranges expanded).
const MAX_PORTS: usize = 1000;

pub fn ports(
    list: Vec<StrOr<Port>>,
    name: &str,
    path: &KeyPath,
    cx: &mut Ctx,
) -> Result<Vec<PortBody>, Fail> {
    let mut out: Vec<PortBody> = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        let at = path.index(i);
        let (ports, host_ip) = match item {
            StrOr::Str(s) => short(&s, &at)?,
            StrOr::Long(p) => {
                for k in set_keys(&[
                    ("name", p.name.is_some()),
                    ("app_protocol", p.app_protocol.is_some()),
                ]) {
                    cx.notes.ignore(
                        "services",
                        name,
                        &format!("ports.{k}"),
                        "a port is its number",
                    );
                }
                long(p, &at)?
            }
        };
        if host_ip.is_some_and(|ip| !matches!(ip.as_str(), "" | "0.0.0.0" | "::")) {
            cx.notes.ignore(
                "services",
                name,
                "ports.host_ip",
                "a port is published on every address of the nodes",
            );
        }
        for p in ports {
            if out.contains(&p) {
                continue;
            }
            if out
                .iter()
                .any(|o| o.published == p.published && o.protocol == p.protocol)
            {
                return Err(Fail::at(
                    &at,
                    format!("port {}/{} is published twice", p.published, p.protocol),
                ));
            }
            out.push(p);
        }
        if out.len() > MAX_PORTS {
            return Err(Fail::at(path, format!("more than {MAX_PORTS} ports")));
        }
    }
    Ok(out)
}

fn body(published: u16, target: u16, protocol: &str, mode: &str) -> PortBody {
    PortBody {
        published,
        target,
        protocol: protocol.to_string(),
        mode: mode.to_string(),
    }
}

/// `[[IP:]PUBLISHED:]TARGET[/PROTOCOL]`, each port possibly a range.
fn short(s: &str, at: &KeyPath) -> Result<(Vec<PortBody>, Option<String>), Fail> {
    let (spec, protocol) = s.rsplit_once('/').unwrap_or((s, "tcp"));
    let protocol = check_protocol(protocol, at)?;
    let (rest, target) = match spec.rsplit_once(':') {
        Some((rest, target)) => (Some(rest), target),
        None => (None, spec),
    };
    let (host_ip, published) = match rest.map(|r| r.rsplit_once(':')) {
        None => (None, ""),
        Some(Some((ip, p))) => (Some(ip.trim_matches(|c| c == '[' || c == ']')), p),
        Some(None) => (None, rest.unwrap_or_default()),
    };
    if published.is_empty() {
        return Err(Fail::at(
            at,
            format!("port {s:?} has no published port: give one, as \"PUBLISHED:{target}\" (shoal does not pick one)"),
        ));
    }
    let targets = range(target, at)?;
    let published = range(published, at)?;
    Ok((
        pairs(published, targets, protocol, "ingress", at)?,
        host_ip.map(String::from),
    ))
}

fn long(p: Port, at: &KeyPath) -> Result<(Vec<PortBody>, Option<String>), Fail> {
    let target = u16::try_from(p.target.0)
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| Fail::at(&at.key("target"), format!("invalid port {}", p.target.0)))?;
    let Some(published) = p.published else {
        return Err(Fail::at(
            at,
            format!("port {target} has no published port: give one (shoal does not pick one)"),
        ));
    };
    let published = range(&published.0, &at.key("published"))?;
    let protocol = check_protocol(p.protocol.as_deref().unwrap_or("tcp"), &at.key("protocol"))?;
    let mode = p.mode.as_deref().unwrap_or("ingress");
    if !matches!(mode, "ingress" | "host") {
        return Err(Fail::at(
            &at.key("mode"),
            format!("invalid mode {mode:?}: expected ingress or host"),
        ));
    }
    Ok((
        pairs(published, (target, target), protocol, mode, at)?,
        p.host_ip,
    ))
}

fn check_protocol<'a>(p: &'a str, at: &KeyPath) -> Result<&'a str, Fail> {
    match p {
        "tcp" | "udp" => Ok(p),
        _ => Err(Fail::at(
            at,
            format!("invalid protocol {p:?}: expected tcp or udp"),
        )),
    }
}

/// `80` or `8000-8001`, as (first, last).
fn range(s: &str, at: &KeyPath) -> Result<(u16, u16), Fail> {
    let port = |p: &str| -> Result<u16, Fail> {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Fail::at(at, format!("invalid port {p:?}: expected 1 to 65535")))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (port(lo)?, port(hi)?),
        None => (port(s)?, port(s)?),
    };
    if lo > hi {
        return Err(Fail::at(at, format!("invalid port range {s:?}")));
    }
    Ok((lo, hi))
}

/// Published and target ranges of the same length, port by port.
fn pairs(
    published: (u16, u16),
    target: (u16, u16),
    protocol: &str,
    mode: &str,
    at: &KeyPath,
) -> Result<Vec<PortBody>, Fail> {
    let len = published.1 - published.0;
    if len != target.1 - target.0 {
        return Err(Fail::at(
            at,
            format!(
                "the published ports {}-{} and the targets {}-{} are not ranges of one length",
                published.0, published.1, target.0, target.1
            ),
        ));
    }
    if usize::from(len) >= MAX_PORTS {
        return Err(Fail::at(at, format!("more than {MAX_PORTS} ports")));
    }
    Ok((0..=len)
        .map(|i| body(published.0 + i, target.0 + i, protocol, mode))
        .collect())
}
