//! The node's bridge in the host netns: refused when its subnet is already
//! routed elsewhere, created or adopted, given the gateway address and
//! brought up; and IPv4 forwarding, without which nothing leaves it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteType};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, RouteMessageBuilder};

use super::error::netlink_errno;
use super::links::link_by_name;
use super::NetError;

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// A route of the main table, reduced to what the overlap check needs.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub destination: Ipv4Net,
    pub interface: Option<u32>,
}

/// The first route that makes `subnet` unusable: one that overlaps it and
/// leaves by another interface than our bridge (`ours`, when it exists).
/// The default route overlaps everything and is what every host has, so
/// it does not count. Pure.
pub(super) fn conflicting_route(
    subnet: &Ipv4Net,
    routes: &[Route],
    ours: Option<u32>,
) -> Option<Route> {
    routes
        .iter()
        .filter(|r| r.destination.prefix_len() > 0)
        .filter(|r| ours.is_none() || r.interface != ours)
        .find(|r| crate::ipam::overlaps(subnet, &r.destination))
        .cloned()
}

/// The unicast IPv4 routes of the main table.
async fn main_routes(handle: &Handle) -> Result<Vec<Route>, NetError> {
    let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let mut stream = std::pin::pin!(handle.route().get(query).execute());
    let mut routes = Vec::new();
    while let Some(r) = stream
        .try_next()
        .await
        .map_err(NetError::netlink("list routes"))?
    {
        let table = r
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(r.header.table));
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) || r.header.kind != RouteType::Unicast {
            continue;
        }
        let mut destination = Ipv4Addr::UNSPECIFIED;
        let mut interface = None;
        for a in &r.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => destination = *d,
                RouteAttribute::Oif(i) => interface = Some(*i),
                _ => {}
            }
        }
        if let Ok(destination) = Ipv4Net::new(destination, r.header.destination_prefix_length) {
            routes.push(Route {
                destination,
                interface,
            });
        }
    }
    Ok(routes)
}

/// Names of all links by index, for error messages.
async fn link_names(handle: &Handle) -> Result<HashMap<u32, String>, NetError> {
    let mut stream = std::pin::pin!(handle.link().get().execute());
    let mut names = HashMap::new();
    while let Some(link) = stream
        .try_next()
        .await
        .map_err(NetError::netlink("list links"))?
    {
        if let Some(name) = name_of(&link) {
            names.insert(link.header.index, name);
        }
    }
    Ok(names)
}

/// The bridge's MAC address: fixed, derived from the gateway address
/// (locally administered, unicast). Without one the bridge takes the
/// lowest MAC of its ports and changes it as tasks come and go, which
/// leaves the other tasks with a stale ARP entry for their gateway.
pub(super) fn bridge_mac(gateway: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = gateway.octets();
    [0x02, 0x73, a, b, c, d]
}

fn name_of(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn is_bridge(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

/// Creates the bridge `name` or adopts the one that is there, gives it
/// `gateway`/prefix and brings it up. Returns its index. Refuses when
/// the subnet is routed through another interface, or when `name` is
/// taken by something that is not a bridge.
pub(super) async fn ensure(
    handle: &Handle,
    name: &str,
    subnet: &Ipv4Net,
    gateway: Ipv4Addr,
    mtu: u32,
) -> Result<u32, NetError> {
    let existing = link_by_name(handle, name).await?;
    if let Some(link) = &existing {
        if !is_bridge(link) {
            return Err(NetError::NotABridge(name.to_string()));
        }
    }
    let ours = existing.as_ref().map(|l| l.header.index);
    if let Some(r) = conflicting_route(subnet, &main_routes(handle).await?, ours) {
        let names = link_names(handle).await.unwrap_or_default();
        return Err(NetError::Overlap {
            subnet: *subnet,
            route: r.destination,
            interface: r
                .interface
                .and_then(|i| names.get(&i).cloned())
                .unwrap_or_else(|| "no interface".to_string()),
        });
    }
    let mac = bridge_mac(gateway);
    if existing.is_none() {
        let create = LinkBridge::new(name).mtu(mtu).address(mac.to_vec()).build();
        match handle.link().add(create).execute().await {
            Ok(()) => {}
            // Another daemon on the same subnet won the race: adopt it.
            Err(e) if netlink_errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(NetError::netlink(format!("create bridge {name}"))(e)),
        }
    }
    let index = super::links::index_of(handle, name).await?;
    if !has_address(handle, index, gateway).await? {
        match handle
            .address()
            .add(index, IpAddr::V4(gateway), subnet.prefix_len())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if netlink_errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(NetError::netlink(format!(
                    "add {gateway}/{} to {name}",
                    subnet.prefix_len()
                ))(e))
            }
        }
    }
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .mtu(mtu)
                .address(mac.to_vec())
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(NetError::netlink(format!("set {name} up")))?;
    Ok(index)
}

async fn has_address(handle: &Handle, index: u32, a: Ipv4Addr) -> Result<bool, NetError> {
    let query = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut stream = std::pin::pin!(query);
    while let Some(m) = stream
        .try_next()
        .await
        .map_err(NetError::netlink("list the bridge's addresses"))?
    {
        let found = m.attributes.iter().any(|x| {
            matches!(x, AddressAttribute::Local(IpAddr::V4(l)) | AddressAttribute::Address(IpAddr::V4(l)) if *l == a)
        });
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `a` is an address of this machine (of any interface of this
/// network namespace), loopback included.
pub(super) async fn is_local_address(handle: &Handle, a: IpAddr) -> Result<bool, NetError> {
    if a.is_loopback() {
        return Ok(true);
    }
    let mut stream = std::pin::pin!(handle.address().get().execute());
    while let Some(m) = stream
        .try_next()
        .await
        .map_err(NetError::netlink("list the machine's addresses"))?
    {
        let found = m.attributes.iter().any(
            |x| matches!(x, AddressAttribute::Local(l) | AddressAttribute::Address(l) if *l == a),
        );
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes the bridge; Ok when it is not there.
pub(super) async fn remove(handle: &Handle, name: &str) -> Result<(), NetError> {
    super::links::delete_link(handle, name).await
}

/// net.ipv4.ip_forward=1: the host routes between the bridge and its
/// uplink. Written only when not set already.
pub(super) async fn enable_ip_forward() -> Result<(), NetError> {
    set_sysctl(std::path::Path::new(IP_FORWARD)).await
}

/// route_localnet on the bridge: a connection from the node's own
/// 127.0.0.1 to a published port is sent on to a task on the bridge
/// (and masqueraded there), which the kernel otherwise drops as martian.
pub(super) async fn enable_route_localnet(bridge: &str) -> Result<(), NetError> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    set_sysctl(std::path::Path::new(&path)).await
}

/// Writes 1 to a sysctl file unless it says so already.
async fn set_sysctl(path: &std::path::Path) -> Result<(), NetError> {
    let now = tokio::fs::read_to_string(path)
        .await
        .map_err(NetError::file("cannot read", path))?;
    if now.trim() != "1" {
        tokio::fs::write(path, "1\n")
            .await
            .map_err(NetError::file("cannot write", path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(d: &str, i: u32) -> Route {
        Route {
            destination: d.parse().unwrap(),
            interface: Some(i),
        }
    }

    #[test]
    fn overlapping_routes_elsewhere_are_conflicts() {
        let subnet: Ipv4Net = "10.20.3.0/24".parse().unwrap();
        let routes = vec![
            route("0.0.0.0/0", 2),
            route("192.168.1.0/24", 2),
            route("10.20.3.0/24", 7),
        ];
        // 7 is our bridge: its own route is no conflict.
        assert!(conflicting_route(&subnet, &routes, Some(7)).is_none());
        // Before our bridge exists, a route on 7 is someone else's.
        let c = conflicting_route(&subnet, &routes, None).unwrap();
        assert_eq!(c.interface, Some(7));
        // Wider and narrower routes both overlap.
        for d in ["10.0.0.0/8", "10.20.3.128/25"] {
            assert!(
                conflicting_route(&subnet, &[route(d, 3)], Some(7)).is_some(),
                "{d}"
            );
        }
        assert!(conflicting_route(&subnet, &[route("10.20.4.0/24", 3)], None).is_none());
    }

    #[test]
    fn the_bridge_mac_is_fixed_local_and_unicast() {
        let mac = bridge_mac(Ipv4Addr::new(10, 20, 3, 1));
        assert_eq!(mac, [0x02, 0x73, 10, 20, 3, 1]);
        assert_eq!(mac[0] & 0x03, 0x02, "locally administered, not multicast");
    }
}
