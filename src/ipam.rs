//! Address management for task networks (issue 13): the cluster's address
//! pool, split into subnets (a /24 per node for its bridge, one per overlay
//! network), and addresses within a subnet. Pure functions over what is
//! already taken; the replicated store holds the allocations, so that a
//! subnet is never handed out twice, leader failover included.

use std::collections::HashSet;
use std::net::Ipv4Addr;

pub use ipnet::Ipv4Net;

/// The pool a cluster takes its subnets from unless `init` names one.
pub const DEFAULT_POOL: &str = "10.20.0.0/16";
/// The size of each node's bridge subnet and, by default, of a network's.
pub const SUBNET_PREFIX: u8 = 24;

/// A pool as an admin gives it: an IPv4 prefix between /8 and /24, with no
/// host bits set.
pub fn parse_pool(s: &str) -> Result<Ipv4Net, String> {
    let net = parse_subnet(s)?;
    if !(8..=SUBNET_PREFIX).contains(&net.prefix_len()) {
        return Err(format!(
            "address pool {s}: the prefix must be between /8 and /{SUBNET_PREFIX}"
        ));
    }
    Ok(net)
}

/// A subnet as a user gives it (`network create --subnet`): IPv4, at most
/// /30 (a network, a gateway, a task and a broadcast), no host bits set.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 subnet such as 10.20.1.0/24"))?;
    if net.prefix_len() > 30 {
        return Err(format!("subnet {s} is too small: at most /30"));
    }
    if net.network() != net.addr() {
        return Err(format!(
            "subnet {s} has host bits set: did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Whether two subnets share any address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first /`prefix` of `pool` that overlaps nothing in `taken`, or None
/// when the pool is full.
pub fn next_subnet(pool: &Ipv4Net, prefix: u8, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let mut subnets = pool.subnets(prefix).ok()?;
    subnets.find(|s| !taken.iter().any(|t| overlaps(s, t)))
}

/// An explicit subnet must not overlap another network's (named in the
/// error) nor, when it lies in the pool, a node's.
pub fn check_free(subnet: &Ipv4Net, taken: &[(String, Ipv4Net)]) -> Result<(), String> {
    match taken.iter().find(|(_, t)| overlaps(subnet, t)) {
        Some((owner, t)) => Err(format!("subnet {subnet} overlaps {t} of {owner}")),
        None => Ok(()),
    }
}

/// The gateway of a subnet: its first host address.
pub fn gateway(subnet: &Ipv4Net) -> Ipv4Addr {
    let n = u32::from(subnet.network());
    Ipv4Addr::from(n + 1)
}

/// The first host address of `subnet` that is neither its gateway nor in
/// `taken`; None when the subnet is full.
pub fn next_address(subnet: &Ipv4Net, gw: Ipv4Addr, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    subnet.hosts().find(|a| *a != gw && !taken.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn pools_and_subnets_are_checked() {
        assert_eq!(parse_pool(DEFAULT_POOL).unwrap(), net("10.20.0.0/16"));
        assert!(parse_pool("10.0.0.0/7").is_err());
        assert!(parse_pool("10.0.0.0/25").is_err());
        assert!(parse_pool("fd00::/64").is_err());
        assert!(parse_subnet("10.1.2.0/31")
            .unwrap_err()
            .contains("too small"));
        let e = parse_subnet("10.1.2.3/24").unwrap_err();
        assert!(e.contains("10.1.2.0/24"), "{e}");
        assert!(parse_subnet("nonsense").is_err());
    }

    #[test]
    fn subnets_are_handed_out_once() {
        let pool = net("10.20.0.0/16");
        let mut taken = Vec::new();
        for i in 0..3 {
            let s = next_subnet(&pool, 24, &taken).unwrap();
            assert_eq!(s, net(&format!("10.20.{i}.0/24")));
            taken.push(s);
        }
        // An explicit /23 inside the pool is skipped over.
        taken.push(net("10.20.4.0/23"));
        assert_eq!(next_subnet(&pool, 24, &taken), Some(net("10.20.3.0/24")));
        taken.push(net("10.20.3.0/24"));
        assert_eq!(next_subnet(&pool, 24, &taken), Some(net("10.20.6.0/24")));
        // A full pool says so.
        let small = net("10.30.0.0/23");
        let full = vec![net("10.30.0.0/24"), net("10.30.1.0/24")];
        assert_eq!(next_subnet(&small, 24, &full), None);
    }

    #[test]
    fn overlaps_are_refused_by_name() {
        let taken = vec![("network backend".to_string(), net("10.20.5.0/24"))];
        assert!(check_free(&net("10.20.6.0/24"), &taken).is_ok());
        let e = check_free(&net("10.20.0.0/16"), &taken).unwrap_err();
        assert!(e.contains("network backend"), "{e}");
        assert!(check_free(&net("10.20.5.128/25"), &taken).is_err());
    }

    #[test]
    fn addresses_skip_the_gateway_and_what_is_taken() {
        let s = net("10.20.7.0/30");
        let gw = gateway(&s);
        assert_eq!(gw, Ipv4Addr::new(10, 20, 7, 1));
        let mut taken = HashSet::new();
        let a = next_address(&s, gw, &taken).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 20, 7, 2));
        taken.insert(a);
        assert_eq!(next_address(&s, gw, &taken), None);
    }
}
