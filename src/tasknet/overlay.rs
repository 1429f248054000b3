//! The overlay between nodes: one WireGuard interface per node, with every
//! other node as a peer whose allowed IPs are its bridge's subnet, and a
//! route for that subnet through the interface. So a task reaches a task
//! of another node by its address, and what crosses the LAN is WireGuard
//! (UDP, encrypted and authenticated by the nodes' keys).
//!
//! The kernel's WireGuard is used where the kernel has it (Raspberry Pi
//! OS does), through `defguard_wireguard_rs`; elsewhere the userspace one
//! (boringtun), which lives as long as the daemon, driven through a
//! socket pair of ours with WireGuard's text protocol (the text that
//! `defguard_wireguard_rs` writes). The routes, link and MTU are ours
//! (rtnetlink), so that nothing else on the host is touched.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use std::io::{BufRead, BufReader, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use defguard_boringtun::device::{DeviceConfig, DeviceHandle};
use defguard_wireguard_rs::error::WireguardInterfaceError;
use defguard_wireguard_rs::host::Host;
use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::peer::Peer;
use defguard_wireguard_rs::{InterfaceConfiguration, Kernel, WGApi, WireguardInterfaceApi};
use ipnet::Ipv4Net;
use rtnetlink::{Handle, RouteMessageBuilder};
use tracing::{info, warn};

use super::error::netlink_errno;
use super::links;
use super::plain::{Plain, PlainPeer};
use super::NetError;
use crate::types::{OverlayEndpoint, OverlayPeer};

/// The overlay's MTU: Ethernet's 1500 less WireGuard's 80 bytes of
/// headers (IPv6 outer header, the worst case). Task veths use it too, so
/// that nothing is fragmented on the way.
pub const OVERLAY_MTU: u32 = 1420;

/// Keeps NAT and stateful firewalls between nodes open for the tunnel.
const KEEPALIVE_SECS: u16 = 25;

/// A node's overlay interface. Send + Sync: share it in an Arc.
pub struct Overlay {
    ifname: String,
    endpoint: OverlayEndpoint,
    /// Which implementation runs it, for logs and `node inspect`.
    pub kind: &'static str,
    device: Arc<Mutex<Device>>,
    handle: Handle,
    _conn: super::AbortOnDrop,
    /// The peers as last applied, by public key. Held across a whole
    /// `set_peers`, so that two calls apply in order.
    peers: tokio::sync::Mutex<BTreeMap<String, Applied>>,
    /// The VXLAN twin for networks in clear: made with the first peer on
    /// another machine (None inside: it could not be made).
    plain: tokio::sync::OnceCell<Option<Plain>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    endpoint: String,
    subnet: Ipv4Net,
    /// The same peer for the VXLAN device (None: its endpoint's host is
    /// not an IPv4 address).
    plain: Option<PlainPeer>,
}

impl Overlay {
    /// Makes the node's WireGuard interface `ifname` (replacing one that a
    /// previous run left), with the private key of `key_file` (made there
    /// if missing), listening on UDP `port` (0: any free port), up, at
    /// OVERLAY_MTU, with no peers yet.
    pub async fn open(key_file: &Path, ifname: &str, port: u16) -> Result<Overlay, NetError> {
        let private = load_or_make_key(key_file).await?;
        let public = private.public_key();
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(NetError::io("open a netlink socket"))?;
        let conn = super::AbortOnDrop(tokio::spawn(conn));
        // A kernel interface outlives the daemon that made it.
        links::delete_link(&handle, ifname).await?;

        let name = ifname.to_string();
        let device = tokio::task::spawn_blocking(move || Device::create(&name))
            .await
            .map_err(|_| NetError::Thread("create the overlay interface"))??;
        let kind = device.kind();
        let device = Arc::new(Mutex::new(device));
        let host = Host::new(port, private.clone());
        let port = blocking(&device, "configure the overlay interface", move |d| {
            d.configure(&host)
        })
        .await?;
        links::set_up(&handle, ifname, OVERLAY_MTU).await?;
        info!(interface = ifname, kind, port, "overlay ready");
        Ok(Overlay {
            ifname: ifname.to_string(),
            endpoint: OverlayEndpoint {
                public_key: public.to_string(),
                port,
            },
            kind,
            device,
            handle,
            _conn: conn,
            peers: tokio::sync::Mutex::new(BTreeMap::new()),
            plain: tokio::sync::OnceCell::new(),
        })
    }

    /// What other nodes need to reach this one.
    pub fn endpoint(&self) -> &OverlayEndpoint {
        &self.endpoint
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Makes the overlay's peers exactly `peers`: new and changed ones are
    /// set (key, endpoint, allowed IPs = their subnet, keepalive) with a
    /// route for their subnet; those no longer listed are removed with
    /// their routes. The VXLAN twin follows, with the network address of
    /// `own` (the node's bridge subnet) as its address. A peer on this machine (several daemons on one host,
    /// as in tests on loopback) is left out: the machine routes its
    /// bridge's subnet already. A peer that cannot be set is logged and
    /// tried again at the next call.
    pub async fn set_peers(
        &self,
        peers: &[OverlayPeer],
        own: Option<Ipv4Net>,
    ) -> Result<(), NetError> {
        let mut applied = self.peers.lock().await;
        let mut wanted = BTreeMap::new();
        for p in peers {
            let Ok(subnet) = crate::ipam::parse_subnet(&p.subnet) else {
                warn!(node = %p.node_id, subnet = %p.subnet, "overlay peer with a bad subnet: left out");
                continue;
            };
            if self.on_this_machine(p, &subnet).await? {
                continue;
            }
            let plain = crate::netaddr::host_of(&p.endpoint)
                .and_then(|h| h.parse().ok())
                .map(|address| PlainPeer {
                    overlay: super::names::overlay_name(&p.node_id),
                    subnet,
                    address,
                });
            wanted.insert(
                p.public_key.clone(),
                (
                    p.node_id.clone(),
                    Applied {
                        endpoint: p.endpoint.clone(),
                        subnet,
                        plain,
                    },
                ),
            );
        }
        let index = links::index_of(&self.handle, &self.ifname).await?;
        if let Some(subnet) = own.filter(|_| wanted.values().any(|(_, a)| a.plain.is_some())) {
            if let Some(plain) = self.plain().await {
                if let Err(e) = plain.set_address(&subnet).await {
                    warn!(error = %e, "the VXLAN device has no address: what comes in on it is dropped");
                }
            }
        }
        let gone: Vec<(String, Applied)> = applied
            .iter()
            .filter(|(k, _)| !wanted.contains_key(*k))
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        for (key, old) in gone {
            self.route(index, &old.subnet, false).await?;
            self.unset_plain(&old).await;
            let k = parse_key(&key)?;
            blocking(&self.device, "remove an overlay peer", move |d| {
                d.remove_peer(&k)
            })
            .await?;
            applied.remove(&key);
            info!(interface = %self.ifname, subnet = %old.subnet, "overlay peer removed");
        }
        for (key, (node, want)) in wanted {
            if applied.get(&key) == Some(&want) {
                continue;
            }
            if let Some(old) = applied.get(&key).filter(|o| o.subnet != want.subnet) {
                self.route(index, &old.subnet, false).await?;
            }
            if let Some(old) = applied.get(&key).filter(|o| o.plain != want.plain) {
                self.unset_plain(old).await;
            }
            let mut peer = Peer::new(parse_key(&key)?);
            if let Err(e) = peer.set_endpoint(&want.endpoint) {
                warn!(node = %node, endpoint = %want.endpoint, error = %e, "overlay peer endpoint not usable: left out");
                continue;
            }
            peer.persistent_keepalive_interval = Some(KEEPALIVE_SECS);
            peer.set_allowed_ips(vec![format!(
                "{}/{}",
                want.subnet.network(),
                want.subnet.prefix_len()
            )
            .parse()
            .map_err(|_| NetError::BadSubnet {
                subnet: want.subnet,
                reason: "not an allowed IP".into(),
            })?]);
            blocking(&self.device, "set an overlay peer", move |d| {
                d.set_peer(&peer)
            })
            .await?;
            self.route(index, &want.subnet, true).await?;
            if let (Some(plain), Some(peer)) = (self.plain().await, &want.plain) {
                if let Err(e) = plain.set(peer).await {
                    // Its networks in clear go through WireGuard instead.
                    warn!(node = %node, error = %e, "cannot route to the node by VXLAN");
                }
            }
            info!(interface = %self.ifname, node = %node, endpoint = %want.endpoint, subnet = %want.subnet, "overlay peer set");
            applied.insert(key, want);
        }
        Ok(())
    }

    /// The VXLAN twin, made on the first call; None if it cannot be (said
    /// once: networks in clear then cross through WireGuard).
    async fn plain(&self) -> Option<&Plain> {
        self.plain
            .get_or_init(|| async {
                Plain::open(&self.handle, &self.ifname)
                    .await
                    .map_err(|e| warn!(error = %e, "no VXLAN: networks in clear cross nodes through WireGuard"))
                    .ok()
            })
            .await
            .as_ref()
    }

    async fn unset_plain(&self, old: &Applied) {
        let (Some(Some(plain)), Some(peer)) = (self.plain.get(), &old.plain) else {
            return;
        };
        if let Err(e) = plain.unset(peer).await {
            warn!(subnet = %peer.subnet, error = %e, "cannot remove a VXLAN peer");
        }
    }

    /// Whether the peer is another daemon of this machine: its endpoint is
    /// one of our addresses, or its bridge is here.
    async fn on_this_machine(&self, p: &OverlayPeer, subnet: &Ipv4Net) -> Result<bool, NetError> {
        let host = crate::netaddr::host_of(&p.endpoint).unwrap_or_default();
        if let Ok(ip) = host.parse() {
            if super::bridge::is_local_address(&self.handle, ip).await? {
                return Ok(true);
            }
        }
        Ok(
            links::link_by_name(&self.handle, &super::names::bridge_name(subnet))
                .await?
                .is_some(),
        )
    }

    /// Adds (or replaces) or deletes the route of `subnet` through the
    /// overlay interface. Deleting a route that is not there is Ok.
    async fn route(&self, index: u32, subnet: &Ipv4Net, add: bool) -> Result<(), NetError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(subnet.network(), subnet.prefix_len())
            .output_interface(index)
            .build();
        let r = if add {
            self.handle.route().add(msg).replace().execute().await
        } else {
            self.handle.route().del(msg).execute().await
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if !add && netlink_errno(&e) == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(NetError::netlink(format!(
                "{} the route of {subnet} via {}",
                if add { "add" } else { "delete" },
                self.ifname
            ))(e)),
        }
    }
}

/// Removes the overlay interface called `ifname` (and with it its routes),
/// when the node leaves its cluster; Ok when there is none.
pub async fn remove_overlay(ifname: &str) -> Result<(), NetError> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(NetError::io("open a netlink socket"))?;
    let _conn = super::AbortOnDrop(tokio::spawn(conn));
    links::delete_link(&handle, ifname).await?;
    super::plain::remove(&handle, ifname).await?;
    info!(interface = %ifname, "overlay removed");
    Ok(())
}

/// The WireGuard device: the kernel's, driven over netlink, or the
/// userspace one, driven over its control socket.
enum Device {
    Kernel(WGApi<Kernel>),
    User(UserDevice),
}

/// The userspace device and our end of its control socket. The device
/// stops when the handle drops (with the daemon), and its interface goes
/// with it.
struct UserDevice {
    _handle: DeviceHandle,
    control: BufReader<UnixStream>,
}

/// How long the userspace device may take to answer a command.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(3);

impl Device {
    /// The kernel's WireGuard if it has one, else the userspace one.
    fn create(ifname: &str) -> Result<Device, NetError> {
        let kernel = WGApi::<Kernel>::new(ifname.to_string()).and_then(|mut api| {
            api.create_interface()?;
            Ok(api)
        });
        match kernel {
            Ok(api) => return Ok(Device::Kernel(api)),
            Err(e) => info!(error = %e, "no kernel WireGuard: using the userspace one"),
        }
        let (ours, theirs) = UnixStream::pair().map_err(NetError::io("make a socket pair"))?;
        ours.set_read_timeout(Some(CONTROL_TIMEOUT))
            .map_err(NetError::io("set a socket timeout"))?;
        let config = DeviceConfig {
            // Enough for a Pi's links; each thread has buffers of its own.
            n_threads: 2,
            uapi_fd: theirs.into_raw_fd(),
            ..DeviceConfig::default()
        };
        let handle = DeviceHandle::new(ifname, config)
            .map_err(|e| NetError::Overlay(format!("create {ifname}: {e:?}")))?;
        Ok(Device::User(UserDevice {
            _handle: handle,
            control: BufReader::new(ours),
        }))
    }

    fn kind(&self) -> &'static str {
        match self {
            Device::Kernel(_) => "kernel",
            Device::User(_) => "userspace",
        }
    }

    /// Key and port; returns the port it listens on.
    fn configure(&mut self, host: &Host) -> Result<u16, NetError> {
        match self {
            Device::Kernel(api) => {
                let config = InterfaceConfiguration {
                    name: String::new(),
                    prvkey: host
                        .private_key
                        .as_ref()
                        .map(|k| k.to_string())
                        .unwrap_or_default(),
                    addresses: Vec::new(),
                    port: host.listen_port,
                    peers: Vec::new(),
                    mtu: None,
                    fwmark: None,
                };
                api.configure_interface(&config).map_err(wg_error)?;
                Ok(api.read_interface_data().map_err(wg_error)?.listen_port)
            }
            Device::User(u) => {
                u.command(&format!("set=1\n{}\n", host.as_uapi()))?;
                let lines = u.command("get=1\n\n")?;
                lines
                    .iter()
                    .find_map(|l| l.strip_prefix("listen_port="))
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| NetError::Overlay("the device does not say its port".into()))
            }
        }
    }

    fn set_peer(&mut self, peer: &Peer) -> Result<(), NetError> {
        match self {
            Device::Kernel(api) => api.configure_peer(peer).map_err(wg_error),
            Device::User(u) => u
                .command(&format!("set=1\n{}\n", peer.as_uapi_update()))
                .map(drop),
        }
    }

    fn remove_peer(&mut self, key: &Key) -> Result<(), NetError> {
        match self {
            Device::Kernel(api) => api.remove_peer(key).map_err(wg_error),
            Device::User(u) => u
                .command(&format!(
                    "set=1\npublic_key={}\nremove=true\n\n",
                    key.to_lower_hex()
                ))
                .map(drop),
        }
    }
}

impl UserDevice {
    /// Sends one command of WireGuard's cross-platform interface and
    /// returns the lines of the answer before its `errno=`; an errno other
    /// than 0 is an error.
    fn command(&mut self, request: &str) -> Result<Vec<String>, NetError> {
        let io = |e| NetError::io("the userspace WireGuard's control socket")(e);
        self.control
            .get_mut()
            .write_all(request.as_bytes())
            .map_err(io)?;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.control.read_line(&mut line).map_err(io)? == 0 {
                return Err(NetError::Overlay("the userspace WireGuard stopped".into()));
            }
            let line = line.trim_end().to_string();
            if let Some(errno) = line.strip_prefix("errno=") {
                // The answer ends with an empty line.
                let mut end = String::new();
                self.control.read_line(&mut end).map_err(io)?;
                return match errno {
                    "0" => Ok(lines),
                    e => Err(NetError::Overlay(format!("the device answered errno {e}"))),
                };
            }
            if lines.len() > 10_000 {
                return Err(NetError::Overlay("the device's answer has no end".into()));
            }
            lines.push(line);
        }
    }
}

fn wg_error(e: WireguardInterfaceError) -> NetError {
    NetError::Overlay(e.to_string())
}

/// Runs a call on the device off the runtime's threads (it talks to a
/// socket or netlink synchronously).
async fn blocking<T: Send + 'static>(
    device: &Arc<Mutex<Device>>,
    what: &'static str,
    f: impl FnOnce(&mut Device) -> Result<T, NetError> + Send + 'static,
) -> Result<T, NetError> {
    let device = device.clone();
    tokio::task::spawn_blocking(move || {
        let mut device = device
            .lock()
            .map_err(|_| NetError::Overlay(format!("{what}: a previous call panicked")))?;
        f(&mut device).map_err(|e| NetError::Overlay(format!("{what}: {e}")))
    })
    .await
    .map_err(|_| NetError::Thread(what))?
}

fn parse_key(s: &str) -> Result<Key, NetError> {
    Key::try_from(s).map_err(|_| NetError::Overlay(format!("not a WireGuard key: {s:?}")))
}

/// The private key in `path`, or a new one written there (0600, synced)
/// when there is none. A file that holds no key is an error, not
/// replaced: the other nodes know its public key.
async fn load_or_make_key(path: &Path) -> Result<Key, NetError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || match std::fs::read_to_string(&path) {
        Ok(text) => Key::try_from(text.trim()).map_err(|_| {
            NetError::Overlay(format!(
                "{} holds no WireGuard key: remove it and restart to make a new one",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Key::generate();
            super::state::write_private(&path, &format!("{key}\n"))?;
            Ok(key)
        }
        Err(e) => Err(NetError::file("cannot read", &path)(e)),
    })
    .await
    .map_err(|_| NetError::Thread("read the overlay key"))?
}
