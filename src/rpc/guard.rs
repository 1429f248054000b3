//! Bounds on connections that carry no client certificate. Only the CA's
//! `root` and `join` are open to them, and a join takes a second or two;
//! without bounds, a peer that opens connections and sends nothing (or an
//! HTTP/2 preface) holds a file descriptor each, forever.
//!
//! - One peer address holds at most `PER_PEER` such connections at once;
//!   more are closed at once.
//! - Each lives at most `LIFETIME`, idle or not.
//! - A peer has at most `HANDSHAKES_PER_PEER` handshakes in progress
//!   (each bounded in time by the transport), so that a flood of
//!   connections that never finish one holds few descriptors.
//!
//! Connections with a node certificate are the cluster's own and are not
//! bounded here.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// At most this many connections without a certificate per peer address.
pub const PER_PEER: usize = 32;
/// At most this many handshakes in progress per peer address: more than a
/// node and its neighbours on one address (tests, a NAT) open at once.
pub const HANDSHAKES_PER_PEER: usize = 256;
/// A connection without a certificate is closed after this long.
pub const LIFETIME: Duration = Duration::from_secs(15);

/// Connections without a certificate, counted per peer address.
#[derive(Clone)]
pub struct Counts {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    bound: usize,
}

impl Counts {
    pub fn new(bound: usize) -> Counts {
        Counts {
            map: Default::default(),
            bound,
        }
    }

    /// A slot for one more connection from `ip`, or None over the bound.
    pub fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let mut map = self.map.lock().expect("connection counts lock");
        let n = map.entry(ip).or_default();
        if *n >= self.bound {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn of(&self, ip: IpAddr) -> usize {
        self.map.lock().unwrap().get(&ip).copied().unwrap_or(0)
    }
}

/// One counted connection; dropping it frees the slot.
pub struct Slot {
    counts: Counts,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.counts.map.lock().expect("connection counts lock");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A connection, with the bounds above when it has no certificate.
pub struct Guarded<S> {
    inner: S,
    /// Set for a connection without a certificate: its slot and deadline.
    limit: Option<(Slot, Pin<Box<tokio::time::Sleep>>)>,
}

impl<S> Guarded<S> {
    /// A connection with a node certificate: not bounded.
    pub fn trusted(inner: S) -> Guarded<S> {
        Guarded { inner, limit: None }
    }

    /// A connection without one, holding `slot` until it ends, which is at
    /// the latest `LIFETIME` from now.
    pub fn bounded(inner: S, slot: Slot) -> Guarded<S> {
        Guarded {
            inner,
            limit: Some((slot, Box::pin(tokio::time::sleep(LIFETIME)))),
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.limit {
            Some((_, deadline)) => deadline.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }
}

fn expired_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "a connection without a node certificate lives at most 15 s",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // The server always waits on a read, so the deadline is polled (and
        // its timer armed) even while the peer sends nothing.
        if self.expired(cx) {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// tonic reads the peer's certificates through this.
impl<S: Connected> Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_at_most_per_peer_slots_and_gets_them_back() {
        let counts = Counts::new(PER_PEER);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let slots: Vec<Slot> = (0..PER_PEER).map(|_| counts.admit(ip).unwrap()).collect();
        assert!(counts.admit(ip).is_none(), "one more than the bound");
        assert!(counts.admit(other).is_some(), "another peer is not held up");
        drop(slots);
        assert_eq!(counts.of(ip), 0);
        assert!(counts.admit(ip).is_some());
    }
}
