//! Names of the kernel objects of a node's task networks, and the checks
//! on names that come from outside. Several daemons may share one machine
//! (the tests run whole clusters on loopback), each with its own bridge
//! subnet, so every host-wide name is derived from the subnet. Pure.

use ipnet::Ipv4Net;

use super::NetError;

/// Linux's limit on interface names (IFNAMSIZ - 1).
#[cfg(test)]
const IFNAME_MAX: usize = 15;

/// The bridge of a subnet: `shl` and the network address in hex
/// (`shl0a140300` for 10.20.3.0/24), 11 characters.
pub(super) fn bridge_name(subnet: &Ipv4Net) -> String {
    format!("shl{:08x}", u32::from(subnet.network()))
}

/// The nftables table (family `ip`) of a subnet's bridge.
pub(super) fn table_name(subnet: &Ipv4Net) -> String {
    format!("shoal_{:08x}", u32::from(subnet.network()))
}

/// The node's WireGuard interface: `wsh` and 10 hex digits of a hash of
/// the node id, unique among the daemons of one machine (its userspace
/// control socket, /var/run/wireguard/NAME.sock, is machine-wide).
pub fn overlay_name(node_id: &str) -> String {
    let h = fnv1a(format!("overlay/{node_id}").as_bytes());
    format!("wsh{:010x}", h & 0xff_ffff_ffff)
}

/// The node's VXLAN device, the overlay's twin for networks that cross in
/// clear: `xsh` and the same 10 hex digits as the overlay interface
/// `overlay`, so that each is found from the other.
pub(super) fn plain_name(overlay: &str) -> String {
    format!("xsh{}", overlay.strip_prefix("wsh").unwrap_or(overlay))
}

/// The MAC address of the VXLAN device twin of `overlay`: locally
/// administered, derived from the name, so that a node knows every
/// other node's from its id alone, with nothing more in the store.
pub(super) fn plain_mac(overlay: &str) -> [u8; 6] {
    let h = fnv1a(format!("vxlan/{}", plain_name(overlay)).as_bytes()).to_be_bytes();
    [0x02, h[3], h[4], h[5], h[6], h[7]]
}

/// The host end of a task's veth: `vsh` and 10 hex digits of a hash of the
/// bridge and the task id. The bridge is in the hash so that two daemons
/// on one machine never pick the same name for the same task id.
pub(super) fn veth_name(bridge: &str, task_id: &str) -> String {
    let h = fnv1a(format!("{bridge}/{task_id}").as_bytes());
    format!("vsh{:010x}", h & 0xff_ffff_ffff)
}

/// 64-bit FNV-1a: stable across Rust releases (std's `DefaultHasher` is
/// not), because a restarted daemon must derive the same names.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A task id names files and mounts under the state dir, so it must be a
/// plain file name. Shoal's ids are 25 base-36 characters.
pub(super) fn check_task_id(id: &str) -> Result<(), NetError> {
    let bad = |reason| {
        Err(NetError::BadTaskId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() || id.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if id.starts_with('.') {
        return bad("must not start with '.'");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return bad("only letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

/// A hostname goes into the task's /etc/hosts and /etc/hostname, so a
/// newline or a space in it would forge entries.
pub(super) fn check_hostname(name: &str) -> Result<(), NetError> {
    let bad = |reason| {
        Err(NetError::BadHostname {
            name: name.to_string(),
            reason,
        })
    };
    // HOST_NAME_MAX: sethostname(2) in the container refuses more.
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if name.starts_with(['-', '.']) {
        return bad("must not start with '-' or '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return bad("only letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_subnet_and_fit_ifnamsiz() {
        let s: Ipv4Net = "10.20.3.0/24".parse().unwrap();
        assert_eq!(bridge_name(&s), "shl0a140300");
        assert_eq!(table_name(&s), "shoal_0a140300");
        let other: Ipv4Net = "10.20.4.0/24".parse().unwrap();
        assert_ne!(bridge_name(&s), bridge_name(&other));
        let v = veth_name(&bridge_name(&s), "abc");
        assert!(v.starts_with("vsh") && v.len() <= IFNAME_MAX, "{v}");
        assert!(bridge_name(&s).len() <= IFNAME_MAX);
        // Stable: a restarted daemon finds the same link.
        assert_eq!(v, veth_name("shl0a140300", "abc"));
        assert_ne!(v, veth_name("shl0a140300", "abd"));
        assert_ne!(v, veth_name("shl0a140400", "abc"));
        let w = overlay_name("n1");
        assert!(w.starts_with("wsh") && w.len() <= IFNAME_MAX, "{w}");
        assert_eq!(w, overlay_name("n1"));
        assert_ne!(w, overlay_name("n2"));
        // Pinned, so that a change of the hash is a conscious one.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn task_ids_and_hostnames_are_checked() {
        assert!(check_task_id("x1y2z3abcdefghijklmnopqrs").is_ok());
        assert!(check_task_id("web.1-a_b").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a b",
            "a\n",
            &"x".repeat(65),
        ] {
            assert!(check_task_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_hostname("web-1.example").is_ok());
        for bad in ["", "-x", "a b", "a\n10.0.0.1 evil", &"h".repeat(65)] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
    }
}
