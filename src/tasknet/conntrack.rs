//! Forgetting UDP flows whose backend changed. A UDP "connection" is a
//! conntrack entry that every datagram refreshes: a client that keeps
//! sending would keep going to a task that is gone (or, while a port had
//! no task, to the node itself) for as long as it sends. So when the
//! backends of a published UDP port or of a virtual IP change, the node
//! deletes those flows and the next datagram is balanced afresh, as
//! kube-proxy does. TCP needs none of this: a gone backend resets.
//!
//! Uses the `conntrack` program (Debian's `conntrack`); without it the
//! flows only end when the client pauses for longer than their timeout.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::nft::Rules;
use crate::types::Protocol;

/// One `conntrack -D` answers in milliseconds.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a UDP flow may be going to that changed from `old` to `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stale {
    /// Flows to this port on any of the node's addresses.
    Port(u16),
    /// Flows to this virtual IP.
    Vip(Ipv4Addr),
}

/// The published UDP ports and the VIPs whose backends differ between the
/// rules applied before and those applied now.
pub(super) fn stale(old: &Rules, new: &Rules) -> Vec<Stale> {
    let udp = |r: &Rules| -> BTreeSet<(u16, Vec<(Ipv4Addr, u16)>)> {
        r.published
            .iter()
            .filter(|p| p.protocol == Protocol::Udp)
            .map(|p| (p.port, p.backends.clone()))
            .collect()
    };
    let vips = |r: &Rules| -> BTreeSet<(Ipv4Addr, Vec<Ipv4Addr>)> {
        r.vips.iter().map(|v| (v.vip, v.backends.clone())).collect()
    };
    let mut out = Vec::new();
    let (a, b) = (udp(old), udp(new));
    let ports: BTreeSet<u16> = a.symmetric_difference(&b).map(|(p, _)| *p).collect();
    out.extend(ports.into_iter().map(Stale::Port));
    let (a, b) = (vips(old), vips(new));
    let addrs: BTreeSet<Ipv4Addr> = a.symmetric_difference(&b).map(|(v, _)| *v).collect();
    out.extend(addrs.into_iter().map(Stale::Vip));
    out
}

static MISSING_SAID: AtomicBool = AtomicBool::new(false);

/// Deletes the UDP flows to `what`. Nothing to delete is not an error.
pub(super) async fn flush(what: &Stale) {
    let target = match what {
        Stale::Port(p) => ["--orig-port-dst".to_string(), p.to_string()],
        Stale::Vip(v) => ["--orig-dst".to_string(), v.to_string()],
    };
    let run = tokio::process::Command::new("conntrack")
        .args(["-D", "-p", "udp"])
        .args(&target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(TIMEOUT, run).await {
        // conntrack exits 1 when no flow matched: that is fine too.
        Ok(Ok(_)) => tracing::debug!(?what, "UDP flows flushed"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            if !MISSING_SAID.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the conntrack program is not installed (package conntrack): UDP clients keep a gone task until they pause"
                );
            }
        }
        Ok(Err(e)) => tracing::warn!(?what, error = %e, "cannot run conntrack"),
        Err(_) => tracing::warn!(?what, "conntrack did not answer in {TIMEOUT:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasknet::nft::{Published, VipRule};

    fn udp(port: u16, backends: &[&str]) -> Published {
        Published {
            protocol: Protocol::Udp,
            port,
            backends: backends.iter().map(|a| (a.parse().unwrap(), 53)).collect(),
        }
    }

    #[test]
    fn udp_ports_and_vips_whose_backends_changed_are_stale() {
        let vip = |v: &str, b: &[&str]| VipRule {
            vip: v.parse().unwrap(),
            clients: vec![],
            backends: b.iter().map(|a| a.parse().unwrap()).collect(),
        };
        let old = Rules {
            published: vec![udp(53, &["10.0.0.2"]), udp(54, &["10.0.0.3"])],
            vips: vec![
                vip("10.1.0.2", &["10.0.0.2"]),
                vip("10.1.0.3", &["10.0.0.3"]),
            ],
            ..Rules::default()
        };
        let mut new = old.clone();
        new.published[0].backends.clear();
        new.published.push(udp(55, &["10.0.0.4"]));
        new.vips[1].backends.push("10.0.0.5".parse().unwrap());
        // A TCP port that changed is not a UDP flow.
        new.published.push(Published {
            protocol: Protocol::Tcp,
            port: 80,
            backends: vec![("10.0.0.9".parse().unwrap(), 80)],
        });
        assert_eq!(
            stale(&old, &new),
            vec![
                Stale::Port(53),
                Stale::Port(55),
                Stale::Vip("10.1.0.3".parse().unwrap())
            ]
        );
        assert!(stale(&new, &new).is_empty());
    }
}
