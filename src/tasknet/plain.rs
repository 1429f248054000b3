//! The overlay's twin for networks created with `--opt encrypted=false`:
//! one VXLAN device per node, routed the way flannel's vxlan backend is.
//! For each other node: a route of its bridge's subnet via that subnet's
//! network address (`onlink`), a permanent neighbour entry that gives that
//! address the other node's device MAC, and a forwarding entry that sends
//! the MAC to the other node's LAN address. MACs are derived from node
//! ids (`names::plain_mac`), so nothing more is stored.
//!
//! The routes live in a table of their own, picked by a routing rule for
//! the packet mark that the node's nftables table sets on what a task sends
//! to another node's task within a network in clear (and no encrypted
//! one); all else keeps going through WireGuard. Without the device (no
//! vxlan module) the marked packets find no route in the table and go on
//! to the main one: encrypted, never dropped.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, IpVersion, LinkVxlan, RouteMessageBuilder};
use tracing::info;

use super::error::netlink_errno;
use super::names::{plain_mac, plain_name};
use super::nft::PLAIN_MARK;
use super::{links, NetError};

/// VXLAN's IANA port (Linux's default is the older 8472).
pub const VXLAN_PORT: u16 = 4789;
/// One VNI for every shoal cluster: what comes in is checked by address
/// (the `plain_in` chain), not by VNI.
const VNI: u32 = 0x5348;
/// The routing table of the VXLAN routes and the priority of the rule
/// that picks it, before the main table (32766).
const TABLE: u32 = 0x5348;
const RULE_PRIORITY: u32 = 0x5348;
/// Ethernet's 1500 less VXLAN's 50 bytes: above the task veths' 1420.
const PLAIN_MTU: u32 = 1450;

/// A node's VXLAN device, once made.
pub(super) struct Plain {
    handle: Handle,
    ifname: String,
    index: u32,
    /// The address it was given last (`set_address`).
    address: tokio::sync::Mutex<Option<Ipv4Addr>>,
}

/// Another node as the VXLAN device sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlainPeer {
    /// The other node's overlay interface name, which its MAC derives from.
    pub overlay: String,
    pub subnet: Ipv4Net,
    /// Its LAN address (the host of its WireGuard endpoint).
    pub address: Ipv4Addr,
}

impl Plain {
    /// Makes the twin of the overlay interface `overlay` (replacing one a
    /// previous run left), up, with its rule.
    pub async fn open(handle: &Handle, overlay: &str) -> Result<Plain, NetError> {
        let ifname = plain_name(overlay);
        links::delete_link(handle, &ifname).await?;
        let msg = LinkVxlan::new(&ifname, VNI)
            .port(VXLAN_PORT)
            .learning(false)
            .address(plain_mac(overlay).to_vec())
            .mtu(PLAIN_MTU)
            .up()
            .build();
        handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(NetError::netlink(format!(
                "create the VXLAN device {ifname}"
            )))?;
        let index = links::index_of(handle, &ifname).await?;
        // Packets from other nodes' tasks come in here while the main
        // table routes their subnets through WireGuard: a strict reverse
        // path check would drop them. Loose still checks that they are
        // routable at all (and needs the device to have an address:
        // `set_address`).
        let rp = format!("/proc/sys/net/ipv4/conf/{ifname}/rp_filter");
        tokio::fs::write(&rp, "2")
            .await
            .map_err(NetError::file("cannot write", rp.as_ref()))?;
        set_rule(handle).await?;
        info!(interface = %ifname, port = VXLAN_PORT, "VXLAN ready for networks in clear");
        Ok(Plain {
            handle: handle.clone(),
            ifname,
            index,
            address: tokio::sync::Mutex::new(None),
        })
    }

    /// Gives the device the network address of the node's bridge subnet
    /// (`/32`, as flannel does): the kernel's reverse path check drops
    /// everything that arrives on a device with no address, and the
    /// node's own answers through it (ICMP) take a routable source.
    pub async fn set_address(&self, subnet: &Ipv4Net) -> Result<(), NetError> {
        let mut applied = self.address.lock().await;
        let want = subnet.network();
        if *applied == Some(want) {
            return Ok(());
        }
        self.handle
            .address()
            .add(self.index, IpAddr::V4(want), 32)
            .replace()
            .execute()
            .await
            .map_err(NetError::netlink(format!(
                "give {} the address {want}",
                self.ifname
            )))?;
        *applied = Some(want);
        Ok(())
    }

    /// Routes `peer`'s subnet through the device to its address.
    pub async fn set(&self, peer: &PlainPeer) -> Result<(), NetError> {
        let mac = plain_mac(&peer.overlay);
        let via = peer.subnet.network();
        let what = |w: &str| format!("{w} of {} on {}", peer.subnet, self.ifname);
        self.handle
            .neighbours()
            .add_bridge(self.index, &mac)
            .flags(NeighbourFlags::Own)
            .destination(IpAddr::V4(peer.address))
            .replace()
            .execute()
            .await
            .map_err(NetError::netlink(what("set the forwarding entry")))?;
        self.handle
            .neighbours()
            .add(self.index, IpAddr::V4(via))
            .link_layer_address(&mac)
            .replace()
            .execute()
            .await
            .map_err(NetError::netlink(what("set the neighbour")))?;
        self.handle
            .route()
            .add(self.route(peer))
            .replace()
            .execute()
            .await
            .map_err(NetError::netlink(what("set the route")))
    }

    /// Takes `peer`'s entries away; those already gone are Ok.
    pub async fn unset(&self, peer: &PlainPeer) -> Result<(), NetError> {
        let gone = |e: &rtnetlink::Error| {
            matches!(
                netlink_errno(e),
                Some(libc::ESRCH | libc::ENOENT | libc::ENODEV)
            )
        };
        let what = |w: &str| format!("delete the {w} of {} on {}", peer.subnet, self.ifname);
        if let Err(e) = self.handle.route().del(self.route(peer)).execute().await {
            if !gone(&e) {
                return Err(NetError::netlink(what("route"))(e));
            }
        }
        let mac = plain_mac(&peer.overlay).to_vec();
        let mut neighbour = NeighbourMessage::default();
        neighbour.header.family = AddressFamily::Inet;
        neighbour.header.ifindex = self.index;
        neighbour.attributes = vec![NeighbourAttribute::Destination(NeighbourAddress::Inet(
            peer.subnet.network(),
        ))];
        let mut fdb = NeighbourMessage::default();
        fdb.header.family = AddressFamily::Bridge;
        fdb.header.ifindex = self.index;
        fdb.header.flags = NeighbourFlags::Own;
        fdb.attributes = vec![
            NeighbourAttribute::LinkLayerAddress(mac),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(peer.address)),
        ];
        for (name, msg) in [("neighbour", neighbour), ("forwarding entry", fdb)] {
            if let Err(e) = self.handle.neighbours().del(msg).execute().await {
                if !gone(&e) {
                    return Err(NetError::netlink(what(name))(e));
                }
            }
        }
        Ok(())
    }

    fn route(&self, peer: &PlainPeer) -> rtnetlink::packet_route::route::RouteMessage {
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(peer.subnet.network(), peer.subnet.prefix_len())
            .gateway(peer.subnet.network())
            .output_interface(self.index)
            .table_id(TABLE)
            .onlink()
            .build()
    }
}

/// `fwmark PLAIN_MARK/PLAIN_MARK lookup TABLE`, once: the rules of a
/// previous run at our priority are deleted first (the kernel keeps
/// duplicates).
async fn set_rule(handle: &Handle) -> Result<(), NetError> {
    delete_rules(handle).await?;
    let mut add = handle
        .rule()
        .add()
        .v4()
        .priority(RULE_PRIORITY)
        .fw_mark(PLAIN_MARK)
        .table_id(TABLE)
        // Not the default: the kernel takes a rule with no action, and
        // then fails every lookup that it matches.
        .action(RuleAction::ToTable);
    add.message_mut()
        .attributes
        .push(RuleAttribute::FwMask(PLAIN_MARK));
    add.execute().await.map_err(NetError::netlink(
        "add the routing rule of networks in clear",
    ))
}

/// Deletes the IPv4 rules at our priority.
async fn delete_rules(handle: &Handle) -> Result<(), NetError> {
    let rules: Vec<_> = handle
        .rule()
        .get(IpVersion::V4)
        .execute()
        .try_collect()
        .await
        .map_err(NetError::netlink("list the routing rules"))?;
    for rule in rules.into_iter().filter(|r| {
        r.attributes
            .contains(&RuleAttribute::Priority(RULE_PRIORITY))
    }) {
        match handle.rule().del(rule).execute().await {
            Ok(()) => {}
            Err(e) if netlink_errno(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(NetError::netlink("delete a routing rule")(e)),
        }
    }
    Ok(())
}

/// Removes the twin of `overlay` and its rule (the node leaves its
/// cluster); Ok when there is none.
pub(super) async fn remove(handle: &Handle, overlay: &str) -> Result<(), NetError> {
    links::delete_link(handle, &plain_name(overlay)).await?;
    delete_rules(handle).await
}
