//! The node's task networks (`crate::tasknet`): opened on the bridge subnet
//! that the managers gave the node; each task with a network of its own
//! gets one before its container is made, and gives it back once it has
//! ended (its container, kept for its logs, no longer needs it).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex, OnceCell, Semaphore};
use tracing::{info, warn};

use crate::dns::{Names, TaskDns};
use crate::executor::{ExecError, NetFiles};
use crate::ipam::Ipv4Net;
use crate::tasknet::{
    BridgeConfig, Cross, Overlay, Published, Rules, TaskNet, TaskNetwork, VipRule, OVERLAY_MTU,
};
use crate::types::{
    IngressView, NetView, OverlayEndpoint, OverlayPeer, PortConfig, PublishMode, ServiceView, Task,
};

/// Where every node keeps the state of its task networks: on a tmpfs, as
/// the network namespaces themselves go with a reboot.
const RUN_DIR: &str = "/run/shoal/net";

/// The MTU of the bridge and the task veths: the overlay's, so that what
/// a task sends to another node's task is never fragmented.
const MTU: u32 = OVERLAY_MTU;

/// How long a task waits for the managers to say the node's subnet before
/// its preparation is retried (the worker's usual pause and retry).
const SUBNET_WAIT: Duration = Duration::from_secs(10);

pub struct TaskNets {
    /// The subnet, remembered across restarts.
    subnet_file: PathBuf,
    subnet: watch::Sender<Option<Ipv4Net>>,
    net: OnceCell<Arc<TaskNet>>,
    /// The node's tasks with their addresses, networks and ports: what
    /// the node's tables publish and let through. Held while the tables
    /// are applied, so that two changes apply in the order they were made.
    tasks: Mutex<BTreeMap<String, Entry>>,
    /// The overlay between nodes: made once, when first asked for (None
    /// when it could not be made: the node's tasks then reach only the
    /// tasks of this node).
    overlay_config: Option<OverlayConfig>,
    overlay: OnceCell<Option<Arc<Overlay>>>,
    /// The peers the managers last sent, applied by whoever holds
    /// `applying` next: the latest list wins, whatever the order of the
    /// calls.
    wanted_peers: std::sync::Mutex<Vec<OverlayPeer>>,
    applying: Mutex<()>,
    /// What the managers last said of the networks of the node's tasks.
    remote: std::sync::Mutex<Remote>,
    /// The DNS server of each task on a network, and what they share.
    dns: std::sync::Mutex<BTreeMap<String, TaskDns>>,
    names: watch::Sender<Arc<Names>>,
    forwards: Arc<Semaphore>,
}

/// The networks of the node's tasks, beyond this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Remote {
    /// Network id → the addresses of its tasks on other nodes, and whether
    /// it crosses between nodes in clear.
    members: BTreeMap<String, (Vec<Ipv4Addr>, bool)>,
    /// Services with a virtual IP on those networks.
    services: Vec<ServiceView>,
    /// The cluster's ingress ports and the tasks behind them, anywhere.
    ingress: Vec<IngressView>,
}

/// Where and how the node's overlay is made.
pub struct OverlayConfig {
    pub key_file: PathBuf,
    pub ifname: String,
    /// UDP port; 0 for any free one.
    pub port: u16,
    /// Set once the overlay is up, for the node's description.
    pub endpoint: Arc<std::sync::OnceLock<OverlayEndpoint>>,
}

/// A task as the node's tables see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    address: Ipv4Addr,
    /// Network ids; `bridge` for a task on none, which reaches the others
    /// on none.
    networks: Vec<String>,
    ports: Vec<PortConfig>,
    /// The task runs (and is healthy, if it has a check): only then is it
    /// behind its published ports, as the managers list only such tasks
    /// as the services' backends.
    serving: bool,
}

/// A task's network, as the worker reports it and the executor uses it.
pub struct Attached {
    pub files: NetFiles,
    pub address: String,
}

impl TaskNets {
    pub fn new(subnet_file: PathBuf, overlay: Option<OverlayConfig>) -> Arc<TaskNets> {
        let saved = std::fs::read_to_string(&subnet_file)
            .ok()
            .and_then(|s| crate::ipam::parse_subnet(&s).ok());
        Arc::new(TaskNets {
            subnet_file,
            subnet: watch::channel(saved).0,
            net: OnceCell::new(),
            tasks: Mutex::new(BTreeMap::new()),
            overlay_config: overlay,
            overlay: OnceCell::new(),
            wanted_peers: std::sync::Mutex::new(Vec::new()),
            applying: Mutex::new(()),
            remote: std::sync::Mutex::new(Remote::default()),
            dns: std::sync::Mutex::new(BTreeMap::new()),
            names: watch::channel(Arc::new(Names::default())).0,
            forwards: Arc::new(Semaphore::new(crate::dns::MAX_FORWARDS)),
        })
    }

    /// The node's overlay, made on the first call.
    async fn overlay(&self) -> Option<&Arc<Overlay>> {
        let config = self.overlay_config.as_ref()?;
        self.overlay
            .get_or_init(|| async {
                match Overlay::open(&config.key_file, &config.ifname, config.port).await {
                    Ok(o) => {
                        let _ = config.endpoint.set(o.endpoint().clone());
                        Some(Arc::new(o))
                    }
                    Err(e) => {
                        warn!(error = %e, "no overlay: this node's tasks reach only the tasks of this node");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    /// What other nodes need to reach this node's tasks (made on the first
    /// call), for the node's description.
    pub async fn overlay_endpoint(&self) -> Option<OverlayEndpoint> {
        self.overlay().await.map(|o| o.endpoint().clone())
    }

    /// What the managers say of the networks of this node's tasks: the
    /// addresses of their tasks on other nodes, and the services on them;
    /// and the cluster's ingress ports. The node's rules follow, in the
    /// background, if it changed.
    pub fn set_net_view(self: &Arc<Self>, view: NetView) {
        let NetView {
            members,
            services,
            ingress,
        } = view;
        let members: BTreeMap<String, (Vec<Ipv4Addr>, bool)> = members
            .into_iter()
            .map(|m| {
                let addrs = m.addresses.iter().filter_map(|a| a.parse().ok()).collect();
                (m.network, (addrs, m.plain))
            })
            .collect();
        let names = Names::new(&services);
        let serves_ingress = !ingress.is_empty();
        let view = Remote {
            members,
            services,
            ingress,
        };
        match self.remote.lock() {
            Ok(mut r) if *r != view => *r = view,
            _ => return,
        }
        self.names.send_if_modified(|n| {
            let changed = **n != names;
            if changed {
                *n = Arc::new(names);
            }
            changed
        });
        let me = self.clone();
        tokio::spawn(async move {
            let net = match me.net.get() {
                Some(net) => net,
                // A node with no task yet answers on the ingress ports
                // too: its bridge (and tables) are made for them.
                None if serves_ingress => match me.open(SUBNET_WAIT).await {
                    Ok(net) => net,
                    Err(e) => {
                        return warn!(error = %e, "cannot open the node's bridge for the ingress ports")
                    }
                },
                // No bridge yet: its first rules will have them.
                None => return,
            };
            let tasks = me.tasks.lock().await;
            if let Err(e) = set_rules(net, &tasks, &me.remote_snapshot()).await {
                warn!(error = %e, "cannot update the node's network rules");
            }
        });
    }

    fn remote_snapshot(&self) -> Remote {
        self.remote.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The other nodes, as the managers sent them: the overlay gets them as
    /// its peers, in the background.
    pub fn set_peers(self: &Arc<Self>, peers: Vec<OverlayPeer>) {
        if let Ok(mut w) = self.wanted_peers.lock() {
            *w = peers;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let _one_at_a_time = me.applying.lock().await;
            let Some(overlay) = me.overlay().await else {
                return;
            };
            let peers = me
                .wanted_peers
                .lock()
                .map(|w| w.clone())
                .unwrap_or_default();
            let own = *me.subnet.borrow();
            if let Err(e) = overlay.set_peers(&peers, own).await {
                warn!(error = %e, "cannot set the overlay's peers");
            }
        });
    }

    /// The subnet the managers sent (None from a manager that has none for
    /// the node yet: nothing changes).
    pub fn set_subnet(&self, subnet: Option<String>) {
        let Some(s) = subnet.and_then(|s| crate::ipam::parse_subnet(&s).ok()) else {
            return;
        };
        if *self.subnet.borrow() == Some(s) {
            return;
        }
        if let Some(old) = self.net.get() {
            // Only a node that was removed and joined again gets another;
            // its tasks keep the bridge they have until the daemon restarts.
            warn!(bridge = old.bridge_name(), new = %s, "the node's bridge subnet changed; it is used after a restart");
        }
        if let Err(e) = std::fs::write(&self.subnet_file, s.to_string()) {
            warn!(error = %e, "cannot save the bridge subnet");
        }
        info!(subnet = %s, "bridge subnet");
        self.subnet.send_replace(Some(s));
    }

    async fn open(&self, wait: Duration) -> Result<&Arc<TaskNet>, ExecError> {
        let unavailable = |reason: String| ExecError::Unavailable {
            socket: String::new(),
            reason,
        };
        let mut rx = self.subnet.subscribe();
        let subnet = match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
            Ok(Ok(s)) => s.expect("waited for Some"),
            _ => {
                return Err(unavailable(
                    "the node has no bridge subnet yet: waiting for a manager".into(),
                ))
            }
        };
        self.net
            .get_or_try_init(|| async {
                let dir = PathBuf::from(RUN_DIR).join(subnet.to_string().replace('/', "_"));
                let bridge = BridgeConfig {
                    subnet,
                    mtu: MTU,
                    overlay: self.overlay_config.as_ref().map(|c| c.ifname.clone()),
                };
                TaskNet::open(dir, bridge)
                    .await
                    .map(Arc::new)
                    .map_err(|e| unavailable(format!("the node's bridge: {e}")))
            })
            .await
    }

    /// Gives the task its network (the same one again if it has it), lets
    /// it reach the tasks of its networks, and publishes its ports.
    pub async fn attach(&self, task: &Task, hostname: &str) -> Result<Attached, ExecError> {
        let net = self.open(SUBNET_WAIT).await?;
        let mut networks: Vec<String> = task.spec.network.network_ids().map(String::from).collect();
        // Tasks on the node's bridge alone find no services, as in Docker:
        // they keep the host's resolvers.
        let dns = !networks.is_empty();
        let n: TaskNetwork = net
            .attach(&task.id, hostname, dns)
            .await
            .map_err(|e| ExecError::Other(format!("task network: {e}")))?;
        if dns {
            self.serve_dns(net, &task.id, &networks).await?;
        }
        if networks.is_empty() {
            networks.push("bridge".into());
        }
        let mut tasks = self.tasks.lock().await;
        let entry = Entry {
            address: n.address.addr(),
            networks,
            ports: task.spec.ports.clone(),
            serving: tasks.get(&task.id).is_some_and(|e| e.serving),
        };
        if tasks.get(&task.id) != Some(&entry) {
            tasks.insert(task.id.clone(), entry);
            set_rules(net, &tasks, &self.remote_snapshot())
                .await
                .map_err(|e| ExecError::Other(format!("the node's network rules: {e}")))?;
        }
        Ok(Attached {
            address: n.address.addr().to_string(),
            files: NetFiles {
                netns: n.netns,
                hosts: n.hosts,
                resolv_conf: n.resolv_conf,
                hostname: n.hostname,
            },
        })
    }

    /// Starts the task's DNS server, unless it runs.
    async fn serve_dns(
        &self,
        net: &TaskNet,
        task_id: &str,
        networks: &[String],
    ) -> Result<(), ExecError> {
        if self.dns.lock().is_ok_and(|d| d.contains_key(task_id)) {
            return Ok(());
        }
        let failed = |e: String| ExecError::Other(format!("the task's DNS server: {e}"));
        let (udp, tcp) = net
            .dns_sockets(task_id)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let shared = crate::dns::Shared {
            names: self.names.subscribe(),
            forwards: self.forwards.clone(),
        };
        let server = TaskDns::start(networks.to_vec(), shared, udp, tcp)
            .map_err(|e| failed(e.to_string()))?;
        if let Ok(mut d) = self.dns.lock() {
            d.insert(task_id.to_string(), server);
        }
        Ok(())
    }

    /// Puts the task behind its published ports: it runs, and is healthy
    /// if it has a check. Nothing to do for a task with no network here.
    pub async fn serve(&self, task_id: &str) {
        let Ok(net) = self.open(Duration::ZERO).await else {
            return;
        };
        let mut tasks = self.tasks.lock().await;
        let Some(entry) = tasks.get_mut(task_id).filter(|e| !e.serving) else {
            return;
        };
        entry.serving = true;
        if entry.ports.is_empty() {
            return;
        }
        if let Err(e) = set_rules(net, &tasks, &self.remote_snapshot()).await {
            warn!(task = %task_id, error = %e, "cannot publish the task's ports");
        }
    }

    /// Takes the task's network away; nothing to do if it has none.
    pub async fn detach(&self, task_id: &str) {
        let Ok(net) = self.open(Duration::ZERO).await else {
            return;
        };
        self.unpublish(net, task_id).await;
        if let Err(e) = net.detach(task_id).await {
            warn!(task = %task_id, error = %e, "cannot remove the task's network");
        }
    }

    /// Removes the networks of tasks that are not in `keep` (ended or
    /// removed while the daemon was down).
    pub async fn detach_others(&self, keep: &[String]) {
        let Ok(net) = self.open(Duration::ZERO).await else {
            return;
        };
        for id in net.attached() {
            if !keep.contains(&id) {
                info!(task = %id, "removing the network of a task that is gone");
                self.unpublish(net, &id).await;
                if let Err(e) = net.detach(&id).await {
                    warn!(task = %id, error = %e, "cannot remove the task's network");
                }
            }
        }
    }

    /// Takes the task out of the node's rules (its ports, its networks),
    /// before its network goes.
    async fn unpublish(&self, net: &TaskNet, task_id: &str) {
        // Its DNS sockets hold the task's netns: they close first.
        if let Ok(mut d) = self.dns.lock() {
            d.remove(task_id);
        }
        let mut tasks = self.tasks.lock().await;
        if tasks.remove(task_id).is_some() {
            if let Err(e) = set_rules(net, &tasks, &self.remote_snapshot()).await {
                warn!(task = %task_id, error = %e, "cannot update the node's network rules");
            }
        }
    }
}

/// Removes what the node's task networks made for the cluster it leaves
/// (its tasks are gone): every task's network, the bridge and its tables,
/// the saved subnet, the overlay interface `overlay` and the overlay's key
/// (a node that joins again is a new node, with a key of its own).
pub async fn remove_all(data_dir: &std::path::Path, overlay: &str) -> Result<(), String> {
    let dir = crate::data_dir::DataDir::at(data_dir);
    crate::tasknet::remove_overlay(overlay)
        .await
        .map_err(|e| e.to_string())?;
    let saved = std::fs::read_to_string(dir.bridge_subnet())
        .ok()
        .and_then(|s| crate::ipam::parse_subnet(s.trim()).ok());
    if let Some(subnet) = saved {
        let state = PathBuf::from(RUN_DIR).join(subnet.to_string().replace('/', "_"));
        let bridge = BridgeConfig {
            subnet,
            mtu: MTU,
            overlay: None,
        };
        let net = TaskNet::open(state, bridge)
            .await
            .map_err(|e| e.to_string())?;
        for id in net.attached() {
            net.detach(&id).await.map_err(|e| e.to_string())?;
        }
        net.close_and_remove().await.map_err(|e| e.to_string())?;
    }
    for path in [dir.bridge_subnet(), dir.overlay_key()] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot remove {}: {e}", path.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Applies the node's rules: each published port with every local task
/// behind it, the tasks of each network allowed to reach each other (here
/// and, through the overlay, on other nodes), and the virtual IPs of the
/// services on the networks of the node's tasks.
async fn set_rules(
    net: &TaskNet,
    tasks: &BTreeMap<String, Entry>,
    remote: &Remote,
) -> Result<(), crate::tasknet::NetError> {
    let mut by_port: BTreeMap<(crate::types::Protocol, u16), Vec<(Ipv4Addr, u16)>> =
        BTreeMap::new();
    let mut by_network: BTreeMap<&str, Vec<Ipv4Addr>> = BTreeMap::new();
    let mut ingress_targets = Vec::new();
    // Ingress ports: every running task of the service, on any node, as
    // the managers list them (this node's own ones too, below, before
    // the managers know they run).
    for i in &remote.ingress {
        let backends = by_port.entry((i.protocol, i.port)).or_default();
        backends.extend(
            i.addresses
                .iter()
                .filter_map(|a| a.parse::<Ipv4Addr>().ok())
                .map(|a| (a, i.target)),
        );
    }
    for e in tasks.values() {
        for p in &e.ports {
            if e.serving {
                by_port
                    .entry((p.protocol, p.published))
                    .or_default()
                    .push((e.address, p.target));
            }
            if p.mode == PublishMode::Ingress {
                ingress_targets.push((e.address, p.protocol, p.target));
            }
        }
        for n in &e.networks {
            by_network.entry(n).or_default().push(e.address);
        }
    }
    // A network with tasks here and elsewhere: all of them, for what
    // crosses the overlay.
    let cross: Vec<Cross> = by_network
        .iter()
        .filter_map(|(n, local)| {
            let (far, plain) = remote.members.get(*n).filter(|(f, _)| !f.is_empty())?;
            Some(Cross {
                addresses: local.iter().chain(far).copied().collect(),
                plain: *plain,
            })
        })
        .collect();
    let vips: Vec<VipRule> = remote
        .services
        .iter()
        .filter_map(|s| {
            Some(VipRule {
                vip: s.vip.parse().ok()?,
                clients: by_network.get(s.network.as_str())?.clone(),
                backends: s.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            })
        })
        .collect();
    let groups: Vec<Vec<Ipv4Addr>> = by_network.into_values().collect();
    let published: Vec<Published> = by_port
        .into_iter()
        .map(|((protocol, port), mut backends)| {
            backends.sort();
            backends.dedup();
            Published {
                protocol,
                port,
                backends,
            }
        })
        .collect();
    net.set_rules(&Rules {
        published,
        groups,
        cross,
        vips,
        ingress_targets,
    })
    .await
}
