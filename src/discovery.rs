//! Finding managers on the LAN with mDNS (`_shoal._tcp.local.`), so that
//! `shoal join --token T` needs no address and a worker whose managers all
//! moved can find them again.
//!
//! Managers announce their node id, cluster id and the digest of the
//! cluster's root CA in TXT records. A browser keeps only managers whose CA
//! digest matches the join token's: a manager of another cluster on the same
//! LAN is never tried. The announcement lets mdns-sd track the host's
//! addresses (`enable_addr_auto`), so a manager whose IP changes is
//! announced again at the new one.
//!
//! mdns-sd does not work under qemu-user (IP_MULTICAST_IF is refused): an
//! emulated node joins by address.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

pub const SERVICE_TYPE: &str = "_shoal._tcp.local.";

#[derive(Debug, thiserror::Error)]
#[error("mDNS: {0}")]
pub struct DiscoveryError(String);

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        DiscoveryError(e.to_string())
    }
}

/// A manager's announcement. Dropping it withdraws the announcement.
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

/// Announce this manager. `port` is its node-to-node port.
pub fn announce(
    node_id: &str,
    cluster_id: &str,
    ca_digest: &str,
    port: u16,
) -> Result<Announcement, DiscoveryError> {
    let daemon = ServiceDaemon::new()?;
    let host = format!("shoal-{node_id}.local.");
    let props = [
        ("node", node_id),
        ("cluster", cluster_id),
        ("ca", ca_digest),
    ];
    let info =
        ServiceInfo::new(SERVICE_TYPE, node_id, &host, "", port, &props[..])?.enable_addr_auto();
    let fullname = info.get_fullname().to_string();
    daemon.register(info)?;
    Ok(Announcement { daemon, fullname })
}

impl Drop for Announcement {
    fn drop(&mut self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

/// Browse for managers whose root CA has `ca_digest`, for up to `wait`.
/// Returns as soon as one is found, after a short extra moment to collect
/// the others that answer at about the same time.
pub async fn find_managers(
    ca_digest: &str,
    wait: Duration,
) -> Result<Vec<SocketAddr>, DiscoveryError> {
    let daemon = ServiceDaemon::new()?;
    let rx = daemon.browse(SERVICE_TYPE)?;
    let deadline = Instant::now() + wait;
    let mut found = BTreeSet::new();
    let mut settle_until: Option<Instant> = None;
    loop {
        let until = settle_until.unwrap_or(deadline).min(deadline);
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, rx.recv_async()).await {
            Ok(Ok(ServiceEvent::ServiceResolved(svc))) => {
                if svc.txt_properties.get_property_val_str("ca") != Some(ca_digest) {
                    continue;
                }
                for ip in svc.get_addresses_v4() {
                    found.insert(SocketAddr::new(ip.into(), svc.get_port()));
                }
                settle_until.get_or_insert(Instant::now() + Duration::from_millis(300));
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(SERVICE_TYPE);
    let _ = daemon.shutdown();
    Ok(found.into_iter().collect())
}
