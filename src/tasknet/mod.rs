//! Task networks: each task (container) gets a network namespace of its
//! own, with a veth into the node's bridge, an address of the node's
//! subnet, a default route via the bridge, and its hosts, resolv.conf and
//! hostname files. The executor puts the netns path and the files into
//! the container's OCI spec.
//!
//! - `names`: the names of kernel objects, derived from the subnet.
//! - `alloc`: which task holds which address.
//! - `state`: the state dir and each task's record in it.
//! - `files`: the task's /etc files.
//! - `nft`: the bridge's nftables table (masquerade, forward).
//! - `netns`: network namespaces as bind-mounted files.
//! - `bridge`: the node's bridge and IPv4 forwarding.
//! - `links`: a task's veth pair, both sides.
//! - `overlay`: the WireGuard interface between nodes, and its routes.
//! - `plain`: its VXLAN twin, for networks in clear (`encrypted=false`).
//! - `conntrack`: UDP flows forgotten when their backends change.
//!
//! Everything a task has is found again from the state dir, so a restarted
//! daemon adopts the networks of the tasks that kept running.

mod alloc;
mod bridge;
mod conntrack;
mod error;
mod files;
mod links;
mod names;
mod netns;
mod nft;
mod overlay;
mod plain;
mod state;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use error::NetError;
pub use names::overlay_name;
pub use nft::{Cross, Published, Rules, VipRule};
pub use overlay::{remove_overlay, Overlay, OVERLAY_MTU};

use alloc::Addresses;
use state::{Layout, TaskRecord};

/// Where a task on a network finds the node's DNS server, in its own
/// netns (Docker's address, which images and tools expect).
pub const DNS_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// The node's bridge: its subnet (the gateway is the first host of it)
/// and the MTU of the bridge and of every task's veth.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub subnet: Ipv4Net,
    pub mtu: u32,
    /// The node's overlay interface, if it has one: traffic to other
    /// nodes' tasks leaves by it, not masqueraded.
    pub overlay: Option<String>,
}

/// What the executor needs to build a task's OCI spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskNetwork {
    /// The bind-mounted netns: the OCI "network" namespace path.
    pub netns: PathBuf,
    /// Bind-mounted at /etc/hosts, /etc/resolv.conf and /etc/hostname.
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    pub hostname: PathBuf,
    /// The task's address with the subnet's prefix, e.g. 10.20.3.5/24.
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The host end of the task's veth (for stats and debugging).
    pub veth: String,
}

/// A node's task networks. Send + Sync: share it in an Arc.
pub struct TaskNet {
    layout: Layout,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    mtu: u32,
    bridge: String,
    overlay: Option<String>,
    table: String,
    /// Netlink in the host netns; its connection runs as `_conn`.
    handle: rtnetlink::Handle,
    _conn: AbortOnDrop,
    /// Addresses held by tasks. A tokio Mutex because it is held across
    /// the whole of an attach or detach: two calls for one task, or an
    /// attach racing a detach, must not interleave their steps, and two
    /// attaches must not pick the same address. Attaches take
    /// milliseconds, so serializing them costs little.
    addresses: tokio::sync::Mutex<Addresses>,
    /// The rules last applied; held while new ones are, so that the flows
    /// flushed are those of what changed.
    applied: tokio::sync::Mutex<Rules>,
}

/// Stops the netlink connection task when the TaskNet goes.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TaskNet {
    /// Sets up the node's bridge, created if missing and adopted if
    /// present (gateway = the subnet's first host, up), IPv4 forwarding,
    /// and the nftables table that masquerades what leaves the subnet by
    /// another interface and accepts forwarding to and from the bridge.
    /// Refuses a subnet that another interface already routes. Adopts the
    /// task networks recorded in `state_dir` (their addresses are not
    /// given out again), so a restarted daemon finds its tasks' networks.
    pub async fn open(state_dir: PathBuf, bridge: BridgeConfig) -> Result<TaskNet, NetError> {
        let subnet = bridge.subnet;
        check_subnet(&subnet)?;
        if !(68..=65535).contains(&bridge.mtu) {
            return Err(NetError::BadMtu(bridge.mtu));
        }
        // The paths go into OCI specs, which want them absolute.
        let state_dir = std::path::absolute(&state_dir)
            .map_err(NetError::file("cannot resolve", &state_dir))?;
        let layout = Layout::new(state_dir);
        let tasks_dir = layout.tasks_dir();
        tokio::fs::create_dir_all(&tasks_dir)
            .await
            .map_err(NetError::file("cannot create", &tasks_dir))?;
        let netns_dir = layout.netns_dir();
        tokio::task::spawn_blocking(move || netns::prepare_dir(&netns_dir))
            .await
            .map_err(|_| NetError::Thread("prepare the netns dir"))??;

        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(NetError::io("open a netlink socket"))?;
        let conn = AbortOnDrop(tokio::spawn(conn));

        let mut addresses = Addresses::new(subnet);
        let gateway = addresses.gateway();
        let bridge_name = names::bridge_name(&subnet);
        let table = names::table_name(&subnet);
        bridge::ensure(&handle, &bridge_name, &subnet, gateway, bridge.mtu).await?;
        bridge::enable_ip_forward().await?;
        bridge::enable_route_localnet(&bridge_name).await?;
        // A restarted daemon keeps the tables as they are (its tasks' ports
        // and networks), until the agent says again what they hold; a new
        // one starts with no port and no network.
        if !nft::exists(&table).await {
            nft::apply(&nft::render(
                &table,
                &subnet,
                &bridge_name,
                bridge.overlay.as_deref(),
                &Rules::default(),
            ))
            .await?;
        }

        let adopted = adopt(&layout, &mut addresses);
        info!(bridge = %bridge_name, %subnet, adopted, "task networks ready");
        Ok(TaskNet {
            layout,
            subnet,
            gateway,
            mtu: bridge.mtu,
            bridge: bridge_name,
            overlay: bridge.overlay,
            table,
            handle,
            _conn: conn,
            addresses: tokio::sync::Mutex::new(addresses),
            applied: tokio::sync::Mutex::new(Rules::default()),
        })
    }

    pub fn bridge_name(&self) -> &str {
        &self.bridge
    }

    /// Makes the node's tables say exactly `rules`: its published ports,
    /// which of its tasks reach each other (each group, a network's tasks
    /// here), which reach other nodes' tasks through the overlay (within
    /// one of `cross`), and its virtual IPs. The tables are applied again
    /// whole, atomically: a connection is never refused midway.
    /// UDP flows to a port or VIP whose backends changed are then
    /// forgotten (`conntrack`).
    pub async fn set_rules(&self, rules: &Rules) -> Result<(), NetError> {
        let mut applied = self.applied.lock().await;
        nft::apply(&nft::render(
            &self.table,
            &self.subnet,
            &self.bridge,
            self.overlay.as_deref(),
            rules,
        ))
        .await?;
        for s in conntrack::stale(&applied, rules) {
            conntrack::flush(&s).await;
        }
        *applied = rules.clone();
        Ok(())
    }

    /// Gives task `task_id` its network: a netns; a veth pair with the host
    /// end on the bridge (hairpin on) and eth0 in the netns with the lowest
    /// free address of the subnet; lo up; a default route via the gateway;
    /// and the hosts, resolv.conf and hostname files. With `dns`, the
    /// task's resolv.conf names the node's DNS server at `DNS_ADDRESS`
    /// only (see `dns_sockets`); else the host's usable resolvers.
    ///
    /// Idempotent: for a task that has its network, returns the same
    /// TaskNetwork and changes nothing. What an interrupted attach left
    /// (or a network missing a piece) is cleaned and built again, on the
    /// address the task had.
    pub async fn attach(
        &self,
        task_id: &str,
        hostname: &str,
        dns: bool,
    ) -> Result<TaskNetwork, NetError> {
        names::check_task_id(task_id)?;
        names::check_hostname(hostname)?;
        let mut addresses = self.addresses.lock().await;
        let bridge = self.bridge_index().await?;
        let record = state::read_record(&self.layout.record(task_id)).unwrap_or_else(|e| {
            warn!(task = task_id, error = %e, "unreadable task network record: starting over");
            None
        });
        if let Some(r) = &record {
            if r.complete
                && addresses.get(task_id) == Some(r.address)
                && self.intact(task_id, r, bridge).await?
            {
                return self.network(task_id, r.address, r.veth.clone());
            }
        }
        // Not there, or not whole: clean what is there and build it again,
        // on the address the task already has if it has one.
        self.teardown(task_id, record.as_ref()).await?;
        let address = match record.map(|r| r.address) {
            Some(a) if addresses.adopt(task_id, a) => a,
            _ => addresses
                .allocate(task_id)
                .ok_or(NetError::SubnetFull(self.subnet))?,
        };
        let veth = names::veth_name(&self.bridge, task_id);
        match self
            .build(task_id, hostname, address, &veth, bridge, dns)
            .await
        {
            Ok(net) => {
                info!(task = task_id, address = %net.address, veth = %veth, "task network attached");
                Ok(net)
            }
            Err(e) => {
                // Leave nothing half-made behind, and free the address.
                if let Err(clean) = self.teardown(task_id, None).await {
                    warn!(task = task_id, error = %clean, "cleaning up a failed attach");
                }
                addresses.free(task_id);
                Err(e)
            }
        }
    }

    /// A UDP socket and a TCP listener at `DNS_ADDRESS`:53 in the task's
    /// netns (non-blocking, for the node's DNS server to serve from the
    /// node's own). They keep the netns alive: close them when the task's
    /// network goes.
    pub async fn dns_sockets(
        &self,
        task_id: &str,
    ) -> Result<(std::net::UdpSocket, std::net::TcpListener), NetError> {
        names::check_task_id(task_id)?;
        netns::run_inside(&self.layout.netns(task_id), || {
            let at = std::net::SocketAddr::from((DNS_ADDRESS, 53));
            let bind = |source| NetError::Io {
                what: format!("bind the task's DNS server at {at}"),
                source,
            };
            let udp = std::net::UdpSocket::bind(at).map_err(bind)?;
            let tcp = std::net::TcpListener::bind(at).map_err(bind)?;
            udp.set_nonblocking(true).map_err(bind)?;
            tcp.set_nonblocking(true).map_err(bind)?;
            Ok((udp, tcp))
        })
        .await
    }

    /// Removes the task's netns, veth, files and record, and frees its
    /// address. Ok when there is nothing to remove. The netns itself lives
    /// on while a process is still in it; its veth does not.
    pub async fn detach(&self, task_id: &str) -> Result<(), NetError> {
        names::check_task_id(task_id)?;
        let mut addresses = self.addresses.lock().await;
        let record = state::read_record(&self.layout.record(task_id)).unwrap_or(None);
        self.teardown(task_id, record.as_ref()).await?;
        addresses.free(task_id);
        info!(task = task_id, "task network detached");
        Ok(())
    }

    /// The task ids that have a network (or what is left of one) in the
    /// state dir.
    pub fn attached(&self) -> Vec<String> {
        self.layout.tasks().unwrap_or_else(|e| {
            warn!(error = %e, "cannot list the task networks' state dir");
            Vec::new()
        })
    }

    /// Removes the bridge and the nftables table, when a node leaves (and
    /// in tests). Every task network must be detached first.
    pub async fn close_and_remove(self) -> Result<(), NetError> {
        let tasks = self.attached();
        if !tasks.is_empty() {
            return Err(NetError::StillAttached {
                bridge: self.bridge.clone(),
                tasks,
            });
        }
        nft::apply(&nft::render_delete(&self.table)).await?;
        bridge::remove(&self.handle, &self.bridge).await?;
        let netns_dir = self.layout.netns_dir();
        tokio::task::spawn_blocking(move || netns::release_dir(&netns_dir))
            .await
            .map_err(|_| NetError::Thread("release the netns dir"))??;
        // The tasks dir is empty (nothing attached); it may already be gone.
        let _ = tokio::fs::remove_dir(self.layout.tasks_dir()).await;
        info!(bridge = %self.bridge, "bridge and its nftables table removed");
        Ok(())
    }

    async fn bridge_index(&self) -> Result<u32, NetError> {
        match links::link_by_name(&self.handle, &self.bridge).await? {
            Some(link) => Ok(link.header.index),
            None => Err(NetError::BridgeGone(self.bridge.clone())),
        }
    }

    /// Whether everything a complete attach made is still there.
    async fn intact(&self, task: &str, r: &TaskRecord, bridge: u32) -> Result<bool, NetError> {
        if !netns::is_netns(&self.layout.netns(task)) || !files::present(&self.layout, task) {
            return Ok(false);
        }
        let veth = links::link_by_name(&self.handle, &r.veth).await?;
        Ok(veth.is_some_and(|l| links::controller_of(&l) == Some(bridge)))
    }

    /// Every step of an attach, in an order that a crash at any point
    /// leaves a record naming what to clean.
    async fn build(
        &self,
        task: &str,
        hostname: &str,
        address: Ipv4Addr,
        veth: &str,
        bridge: u32,
        dns: bool,
    ) -> Result<TaskNetwork, NetError> {
        let task_dir = self.layout.task_dir(task);
        tokio::fs::create_dir_all(&task_dir)
            .await
            .map_err(NetError::file("cannot create", &task_dir))?;
        let mut record = TaskRecord {
            address,
            veth: veth.to_string(),
            complete: false,
        };
        let record_path = self.layout.record(task);
        write_record(&record_path, &record).await?;

        let netns_path = self.layout.netns(task);
        netns::create(&netns_path).await?;
        let ns = std::fs::File::open(&netns_path)
            .map_err(NetError::file("cannot open netns", &netns_path))?;
        links::create_veth(&self.handle, veth, self.mtu, &ns).await?;
        drop(ns);
        let net = self.network(task, address, veth.to_string())?;
        let (cidr, gateway) = (net.address, self.gateway);
        netns::run_inside(&netns_path, move || links::configure_inside(cidr, gateway)).await?;
        links::plug(&self.handle, veth, bridge).await?;

        let (layout, t, h) = (self.layout.clone(), task.to_string(), hostname.to_string());
        tokio::task::spawn_blocking(move || {
            files::write(&layout, &t, address, &h, dns.then_some(DNS_ADDRESS))
        })
        .await
        .map_err(|_| NetError::Thread("write the task's files"))??;
        record.complete = true;
        write_record(&record_path, &record).await?;
        Ok(net)
    }

    /// Removes whatever the task has: its veth (by the recorded name and
    /// the derived one), its netns and its dir. Ok when nothing is there.
    async fn teardown(&self, task: &str, record: Option<&TaskRecord>) -> Result<(), NetError> {
        let derived = names::veth_name(&self.bridge, task);
        if let Some(r) = record.filter(|r| r.veth != derived) {
            links::delete_link(&self.handle, &r.veth).await?;
        }
        links::delete_link(&self.handle, &derived).await?;
        netns::remove(&self.layout.netns(task))?;
        let dir = self.layout.task_dir(task);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetError::file("cannot remove", &dir)(e)),
        }
    }

    fn network(
        &self,
        task: &str,
        address: Ipv4Addr,
        veth: String,
    ) -> Result<TaskNetwork, NetError> {
        let address =
            Ipv4Net::new(address, self.subnet.prefix_len()).map_err(|e| NetError::BadSubnet {
                subnet: self.subnet,
                reason: e.to_string(),
            })?;
        Ok(TaskNetwork {
            netns: self.layout.netns(task),
            hosts: self.layout.hosts(task),
            resolv_conf: self.layout.resolv_conf(task),
            hostname: self.layout.hostname(task),
            address,
            gateway: self.gateway,
            veth,
        })
    }
}

/// Writes a task's record off the runtime's threads: it is synced to
/// disk, which takes a while on an SD card.
async fn write_record(path: &std::path::Path, record: &TaskRecord) -> Result<(), NetError> {
    let (path, text) = (path.to_path_buf(), record.render());
    tokio::task::spawn_blocking(move || state::write_atomic(&path, &text))
        .await
        .map_err(|_| NetError::Thread("write a task's record"))?
}

/// A bridge subnet needs room for a gateway and a task besides its network
/// and broadcast addresses, and no host bits (they would be a typo).
fn check_subnet(subnet: &Ipv4Net) -> Result<(), NetError> {
    let bad = |reason: &str| {
        Err(NetError::BadSubnet {
            subnet: *subnet,
            reason: reason.to_string(),
        })
    };
    if subnet.prefix_len() > 30 {
        return bad("too small: at most /30");
    }
    if subnet.prefix_len() < 8 {
        return bad("too large: at least /8");
    }
    if subnet.addr() != subnet.network() {
        return bad("host bits are set");
    }
    Ok(())
}

/// Reserves the addresses recorded in the state dir; returns how many.
/// A record that cannot be read, or whose address cannot be the task's,
/// reserves nothing: the task is still listed by `attached`, and the
/// next attach or detach for it cleans up.
fn adopt(layout: &Layout, addresses: &mut Addresses) -> usize {
    let mut n = 0;
    for task in layout.tasks().unwrap_or_default() {
        match state::read_record(&layout.record(&task)) {
            Ok(Some(r)) if addresses.adopt(&task, r.address) => n += 1,
            Ok(Some(r)) => {
                warn!(task = %task, address = %r.address, "recorded address is not usable here: not adopted")
            }
            Ok(None) => {}
            Err(e) => warn!(task = %task, error = %e, "task network record not adopted"),
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_checked() {
        assert!(check_subnet(&"10.20.3.0/24".parse().unwrap()).is_ok());
        assert!(check_subnet(&"10.20.3.0/30".parse().unwrap()).is_ok());
        assert!(check_subnet(&"10.20.3.0/31".parse().unwrap()).is_err());
        assert!(check_subnet(&"10.0.0.0/7".parse().unwrap()).is_err());
        let e = check_subnet(&"10.20.3.9/24".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("host bits"), "{e}");
    }

    #[test]
    fn tasknet_can_be_shared() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<TaskNet>();
        send_sync::<TaskNetwork>();
        send_sync::<NetError>();
    }
}
