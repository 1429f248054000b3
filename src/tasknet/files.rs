//! The files a task sees at /etc/hosts, /etc/resolv.conf and /etc/hostname
//! (the executor bind-mounts them). Rendering is pure; `write` puts the
//! three in the task's dir.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::state::{write_atomic, Layout};
use super::NetError;

/// Used when the host has no nameserver a task can reach, as Docker does.
const DEFAULT_NAMESERVERS: [&str; 2] = ["8.8.8.8", "1.1.1.1"];

/// The host's resolver config.
const HOST_RESOLV: &str = "/etc/resolv.conf";
/// Where systemd-resolved keeps the real upstream servers when
/// /etc/resolv.conf only names its stub at 127.0.0.53.
const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

pub(super) fn hosts(address: Ipv4Addr, hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         {address}\t{hostname}\n"
    )
}

/// `host` without the nameservers a task cannot use, and how many
/// nameservers remain. Loopback servers (127.x, ::1) would be the task's
/// own loopback. IPv6 servers are dropped too: a task has no IPv6 route,
/// and glibc would wait on each before trying the next. Other lines
/// (search, options, comments) are kept.
pub(super) fn filter_resolv(host: &str) -> (String, usize) {
    let mut out = String::new();
    let mut kept = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            // A zone suffix (fe80::1%eth0) is IPv6 in any case.
            let server = words.next().unwrap_or("");
            let usable = match server.split('%').next().unwrap_or("").parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => !a.is_loopback(),
                Ok(IpAddr::V6(_)) => false,
                // Not an address: glibc skips it as well.
                Err(_) => false,
            };
            if !usable {
                continue;
            }
            kept += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, kept)
}

/// The task's resolv.conf from the host's (`etc`) and, when that names only
/// a local stub, systemd-resolved's upstream list (`resolved`); else the
/// host's other lines with public nameservers.
pub(super) fn resolv_conf(etc: Option<&str>, resolved: Option<&str>) -> String {
    let (from_etc, n) = filter_resolv(etc.unwrap_or(""));
    if n > 0 {
        return from_etc;
    }
    if let Some((from_resolved, n)) = resolved.map(filter_resolv) {
        if n > 0 {
            return from_resolved;
        }
    }
    let mut out = from_etc;
    for ns in DEFAULT_NAMESERVERS {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    out
}

/// The resolv.conf of a task that asks the node's DNS server (at
/// `server`, in its own netns): the host's search and options lines, the
/// server, and `ndots:0` so that a dotted name is asked as it is first.
pub(super) fn embedded_resolv_conf(etc: Option<&str>, server: Ipv4Addr) -> String {
    let mut out = String::new();
    for line in etc.unwrap_or("").lines() {
        let first = line.split_whitespace().next();
        if matches!(first, Some("search") | Some("domain")) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("nameserver {server}\noptions ndots:0\n"));
    out
}

/// Reads a host file that may be missing (a host without resolv.conf is
/// not an error: the task gets the defaults).
fn read_optional(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Writes the three files into the task's dir.
pub(super) fn write(
    layout: &Layout,
    task: &str,
    address: Ipv4Addr,
    hostname: &str,
    dns: Option<Ipv4Addr>,
) -> Result<(), NetError> {
    let etc = read_optional(HOST_RESOLV);
    let resolv = match dns {
        Some(server) => embedded_resolv_conf(etc.as_deref(), server),
        None => resolv_conf(etc.as_deref(), read_optional(RESOLVED_UPSTREAM).as_deref()),
    };
    write_atomic(&layout.hosts(task), &hosts(address, hostname))?;
    write_atomic(&layout.resolv_conf(task), &resolv)?;
    write_atomic(&layout.hostname(task), &format!("{hostname}\n"))
}

/// Whether the three files are there (an attach that was cut short may
/// have written some of them).
pub(super) fn present(layout: &Layout, task: &str) -> bool {
    [
        layout.hosts(task),
        layout.resolv_conf(task),
        layout.hostname(task),
    ]
    .iter()
    .all(|p| Path::new(p).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_the_task() {
        let h = hosts(Ipv4Addr::new(10, 20, 3, 5), "web-1");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(h.ends_with("10.20.3.5\tweb-1\n"));
    }

    #[test]
    fn loopback_and_ipv6_nameservers_are_dropped() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver ::1\n\
                    nameserver 192.168.1.1\nnameserver fe80::1%eth0\n\
                    search lan\noptions edns0\n";
        let (out, n) = filter_resolv(host);
        assert_eq!(n, 1);
        assert_eq!(
            out,
            "# generated\nnameserver 192.168.1.1\nsearch lan\noptions edns0\n"
        );
        assert_eq!(resolv_conf(Some(host), None), out);
    }

    #[test]
    fn a_task_with_the_embedded_server_asks_it_only() {
        let host = "nameserver 127.0.0.53\nsearch lan\noptions edns0\n";
        assert_eq!(
            embedded_resolv_conf(Some(host), Ipv4Addr::new(127, 0, 0, 11)),
            "search lan\nnameserver 127.0.0.11\noptions ndots:0\n"
        );
    }

    #[test]
    fn a_local_stub_falls_back_to_resolved_then_to_public_servers() {
        let stub = "nameserver 127.0.0.53\nsearch lan\n";
        let upstream = "nameserver 10.0.0.1\n";
        assert_eq!(resolv_conf(Some(stub), Some(upstream)), upstream);
        assert_eq!(
            resolv_conf(Some(stub), Some("nameserver 127.0.0.1\n")),
            "search lan\nnameserver 8.8.8.8\nnameserver 1.1.1.1\n"
        );
        assert_eq!(
            resolv_conf(None, None),
            "nameserver 8.8.8.8\nnameserver 1.1.1.1\n"
        );
    }
}
