//! A task's veth pair: created with its host end in the host netns and its
//! peer, named eth0, directly in the task's netns; the host end plugged
//! into the bridge (hairpin on) and the task end configured from inside.
//! Also the link lookups that bridge.rs shares.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::error::netlink_errno;
use super::NetError;

/// The task's end of the veth, inside its netns.
pub(super) const TASK_IFNAME: &str = "eth0";

/// The link called `name`, or None when there is none.
pub(super) async fn link_by_name(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, NetError> {
    let found = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match found {
        Ok(link) => Ok(link),
        Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(NetError::netlink(format!("look up link {name}"))(e)),
    }
}

/// Index of the link called `name`, which must exist.
pub(super) async fn index_of(handle: &Handle, name: &str) -> Result<u32, NetError> {
    match link_by_name(handle, name).await? {
        Some(link) => Ok(link.header.index),
        None => Err(NetError::Io {
            what: format!("link {name}"),
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        }),
    }
}

/// Sets the link called `name` up, at `mtu`.
pub(super) async fn set_up(handle: &Handle, name: &str, mtu: u32) -> Result<(), NetError> {
    let index = index_of(handle, name).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
        .execute()
        .await
        .map_err(NetError::netlink(format!("set {name} up")))
}

/// Deletes the link called `name`; Ok when there is none.
pub(super) async fn delete_link(handle: &Handle, name: &str) -> Result<(), NetError> {
    let Some(link) = link_by_name(handle, name).await? else {
        return Ok(());
    };
    match handle.link().del(link.header.index).execute().await {
        Ok(()) => Ok(()),
        // Gone in the meantime (its netns went, taking the pair with it).
        Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(NetError::netlink(format!("delete link {name}"))(e)),
    }
}

/// The controller (bridge) index of a link, if it has one.
pub(super) fn controller_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

/// Creates the veth pair `host` / eth0 with eth0 created straight in the
/// netns open as `netns`. Creating it there (IFLA_NET_NS_FD in the peer's
/// attributes, as `ip link add … peer name eth0 netns …`) rather than
/// moving it afterwards means no temporary name in the host netns and no
/// half-moved pair after a crash.
pub(super) async fn create_veth(
    handle: &Handle,
    host: &str,
    mtu: u32,
    netns: &std::fs::File,
) -> Result<(), NetError> {
    let peer = LinkUnspec::new_with_name(TASK_IFNAME)
        .mtu(mtu)
        .setns_by_fd(netns.as_raw_fd())
        .build();
    let message = LinkVeth::new(host, TASK_IFNAME)
        .mtu(mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    handle
        .link()
        .add(message)
        .execute()
        .await
        .map_err(NetError::netlink(format!(
            "create veth {host} (peer {TASK_IFNAME} in the task's netns)"
        )))
}

/// Puts the host end into the bridge with hairpin on, and up. Hairpin lets
/// a task reach itself through an address that is DNATed back to it (a
/// service VIP), which br_netfilter otherwise drops.
pub(super) async fn plug(handle: &Handle, host: &str, bridge: u32) -> Result<(), NetError> {
    let index = index_of(handle, host).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).controller(bridge).build())
        .execute()
        .await
        .map_err(NetError::netlink(format!("put {host} into the bridge")))?;
    // Bridge-port options take RTM_NEWLINK (LinkHandle::set_port), not
    // RTM_SETLINK, and only once the link is a port.
    handle
        .link()
        .set_port(LinkBridgePort::new(index).hairpin(true).build())
        .execute()
        .await
        .map_err(NetError::netlink(format!("turn hairpin on for {host}")))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(NetError::netlink(format!("set {host} up")))
}

/// Configures the task's side: lo up, eth0 with `address` and up, and a
/// default route via `gateway`. Must run on a thread that has entered the
/// task's netns (netns::run_inside): it opens its netlink socket there,
/// on a small runtime of its own, since a tokio socket belongs to the
/// runtime that created it.
pub(super) fn configure_inside(address: Ipv4Net, gateway: Ipv4Addr) -> Result<(), NetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(NetError::io("start a runtime inside the task's netns"))?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(NetError::io("open netlink inside the task's netns"))?;
        let conn = tokio::spawn(conn);
        let done = configure(&handle, address, gateway).await;
        conn.abort();
        done
    })
}

async fn configure(handle: &Handle, address: Ipv4Net, gateway: Ipv4Addr) -> Result<(), NetError> {
    let lo = index_of(handle, "lo").await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .map_err(NetError::netlink("set lo up in the task's netns"))?;
    let eth0 = index_of(handle, TASK_IFNAME).await?;
    handle
        .address()
        .add(eth0, IpAddr::V4(address.addr()), address.prefix_len())
        .execute()
        .await
        .map_err(NetError::netlink(format!("add {address} to {TASK_IFNAME}")))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(eth0).up().build())
        .execute()
        .await
        .map_err(NetError::netlink(format!("set {TASK_IFNAME} up")))?;
    // After the address and up: the kernel checks that the gateway is on
    // a connected route.
    handle
        .route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .build(),
        )
        .execute()
        .await
        .map_err(NetError::netlink(format!(
            "add the default route via {gateway}"
        )))
}
