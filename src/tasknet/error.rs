//! The one error type of task networks. Each variant names what failed,
//! so that a message in a task's status tells the operator where to look.

use std::path::PathBuf;

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bridge subnet {subnet}: {reason}")]
    BadSubnet { subnet: Ipv4Net, reason: String },
    #[error("bridge MTU {0} is out of range (68 to 65535)")]
    BadMtu(u32),
    #[error("invalid task id {id:?}: {reason}")]
    BadTaskId { id: String, reason: &'static str },
    #[error("invalid hostname {name:?}: {reason}")]
    BadHostname { name: String, reason: &'static str },
    #[error(
        "bridge subnet {subnet} overlaps the route to {route} on {interface}: \
         another network on this host uses those addresses; choose another pool"
    )]
    Overlap {
        subnet: Ipv4Net,
        route: Ipv4Net,
        interface: String,
    },
    #[error("{0} exists and is not a bridge: remove it or choose another subnet")]
    NotABridge(String),
    #[error("bridge {0} is gone (deleted behind shoal's back?); restart the node to recreate it")]
    BridgeGone(String),
    #[error("no free address left in {0}")]
    SubnetFull(Ipv4Net),
    #[error("task networks still attached to {bridge}: {tasks:?}; detach them first")]
    StillAttached { bridge: String, tasks: Vec<String> },
    #[error("netlink: {what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nft: {0}")]
    Nft(String),
    #[error("{0}: the helper thread ended without an answer")]
    Thread(&'static str),
    #[error("overlay: {0}")]
    Overlay(String),
}

impl NetError {
    /// A closure for `map_err` on a netlink request.
    pub(super) fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
        let what = what.into();
        move |source| NetError::Netlink { what, source }
    }

    /// A closure for `map_err` on a system call or an I/O error.
    pub(super) fn io<E: Into<std::io::Error>>(
        what: impl Into<String>,
    ) -> impl FnOnce(E) -> NetError {
        let what = what.into();
        move |e| NetError::Io {
            what,
            source: e.into(),
        }
    }

    /// A closure for `map_err` on a file operation.
    pub(super) fn file(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> NetError {
        let path = path.to_path_buf();
        move |source| NetError::File { what, path, source }
    }
}

/// The errno of a netlink error answer, if that is what `e` is.
pub(super) fn netlink_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}
