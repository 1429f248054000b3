//! The command line: clap definitions, and the client side of every
//! command. clap types stop here: the daemon gets a plain `daemon::Config`,
//! the API gets plain request types.

mod client;
mod events;
mod exec;
pub mod extra;
mod image;
mod image_nodes;
mod lock;
mod network;
mod node;
mod parse;
mod progress;
mod registry;
mod secret;
mod service;
mod stack;
mod table;
mod task_options;
mod volume;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use client::Client;

#[derive(Parser)]
#[command(
    name = "shoal",
    version = crate::LONG_VERSION,
    about = "A container orchestrator for edge and ARM clusters",
    allow_negative_numbers = true
)]
pub struct Cli {
    /// The daemon's control socket.
    #[arg(
        long,
        global = true,
        env = "SHOAL_SOCKET",
        default_value = "/run/shoal/shoal.sock"
    )]
    pub socket: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the shoal daemon (normally started by systemd).
    Daemon(DaemonArgs),
    /// Start a new cluster with this node as its first manager.
    Init {
        /// The address other nodes should use to reach this one
        /// (default: the daemon's --advertise, or detected).
        #[arg(long)]
        advertise: Option<String>,
        /// How long node certificates last (at least 1m).
        #[arg(long, value_parser = parse::duration, default_value = "90d")]
        cert_expiry: std::time::Duration,
        /// The address pool (CIDR, /8 to /24) that node bridges and
        /// networks get their subnets from.
        #[arg(long, env = "SHOAL_DEFAULT_ADDR_POOL", default_value = crate::ipam::DEFAULT_POOL)]
        default_addr_pool: String,
        /// On a manager of a cluster that lost its quorum for good: make it
        /// the only manager, keeping the nodes, services and tasks.
        #[arg(long)]
        force_new_cluster: bool,
    },
    /// Join a cluster as a worker. Without ADDR, managers are found over
    /// mDNS on the LAN.
    Join {
        /// The join token (`shoal join-token worker` on a manager); it
        /// decides the role the node joins with.
        #[arg(long, env = "SHOAL_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// A manager's address (host:port).
        addr: Option<String>,
        /// The address other nodes should use to reach this one.
        #[arg(long)]
        advertise: Option<String>,
    },
    /// Leave the cluster (a worker): stop and remove this node's containers
    /// and forget the cluster's certificate and token.
    Leave {
        /// Kill containers at once instead of stopping them gracefully.
        #[arg(short, long)]
        force: bool,
    },
    /// Manage the cluster.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Show (or rotate) the token nodes join with.
    JoinToken {
        /// Which token: the one workers join with, or managers.
        #[arg(value_parser = ["worker", "manager"])]
        role: String,
        /// Print only the token.
        #[arg(short, long)]
        quiet: bool,
        /// Make a new token; the old one is refused from now on.
        #[arg(long)]
        rotate: bool,
    },
    /// Unlock a manager of an autolocked cluster after a restart; the
    /// unlock key is read from stdin.
    Unlock,
    /// Show (or rotate) the key that unlocks managers of an autolocked
    /// cluster.
    UnlockKey {
        /// Print only the key.
        #[arg(short, long)]
        quiet: bool,
        /// Make a new key; managers reseal their keys with it.
        #[arg(long)]
        rotate: bool,
    },
    /// Manage services.
    #[command(subcommand)]
    Service(service::ServiceCmd),
    /// Manage nodes.
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Manage images on this node.
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Manage the registries nodes pull from: credentials, plain HTTP,
    /// private CAs and mirrors.
    #[command(subcommand)]
    Registry(registry::RegistryCmd),
    /// Manage networks: what services' tasks join to reach each other.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Manage secrets: data that tasks get as files, held in memory on the
    /// nodes that run them.
    #[command(subcommand)]
    Secret(secret::FileCmd),
    /// Manage configs: files that tasks get, read-only.
    #[command(subcommand)]
    Config(secret::FileCmd),
    /// Manage named volumes: data that outlives tasks, on one node each.
    #[command(subcommand)]
    Volume(volume::VolumeCmd),
    /// Manage stacks: applications described by compose files.
    #[command(subcommand)]
    Stack(stack::StackCmd),
    /// Run a command in a running task, on whichever node runs it.
    Exec(exec::ExecArgs),
    /// Stream the cluster's changes (services, nodes, tasks, networks,
    /// secrets, configs) as they are committed.
    Events(events::EventsArgs),
    /// Print a shell completion script: shoal completion bash|zsh|fish.
    Completion {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print shoal's man page (roff), or write one page per command.
    Man {
        /// Write shoal.1, shoal-service.1, … into DIR instead of stdout.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Change cluster-wide settings.
    Update {
        /// How long node certificates last (at least 1m); applies from each
        /// node's next renewal.
        #[arg(long, value_parser = parse::duration)]
        cert_expiry: Option<std::time::Duration>,
        /// How often nodes heartbeat; a node is down after 3 missed periods.
        #[arg(long, value_parser = parse::duration)]
        heartbeat_period: Option<std::time::Duration>,
        /// Raft log entries between snapshots (log compaction), 10 to
        /// 1000000.
        #[arg(long)]
        snapshot_interval: Option<u64>,
        /// Seal every manager's keys with an unlock key: a restarted
        /// manager serves nothing until `shoal unlock` is given the key.
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        autolock: Option<bool>,
        /// How long the managers hold the tasks of a node that said it is
        /// restarting (its daemon got SIGTERM) before replacing them, up to
        /// 24h; 0 replaces them once it is down (default 1m).
        #[arg(long, value_parser = parse::duration)]
        restart_grace: Option<std::time::Duration>,
        /// Image GC on every node: once the disk that holds its images is
        /// this full (percent), unused images are removed, least recently
        /// used first (default 85; 100 turns it off).
        #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
        image_gc_high: Option<u8>,
        /// … until the disk is below this (percent, default 80).
        #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=99))]
        image_gc_low: Option<u8>,
        /// Image GC keeps images that a node got less than this ago
        /// (default 2m), such as one loaded for a service about to start.
        #[arg(long, value_parser = parse::duration)]
        image_gc_min_age: Option<std::time::Duration>,
        /// Let services bind-mount this node path and what is under it
        /// (repeatable). None is allowed by default: a bind of / is root
        /// on the node.
        #[arg(long, value_name = "PATH")]
        bind_allow: Vec<String>,
        /// No longer allow this bind prefix (repeatable).
        #[arg(long, value_name = "PATH")]
        bind_allow_rm: Vec<String>,
        /// Let services run `--privileged` (every capability and device of
        /// the node, no seccomp filter): root on the node, so off by
        /// default.
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        allow_privileged: Option<bool>,
    },
}

#[derive(clap::Args)]
pub struct DaemonArgs {
    /// Log level (error, warn, info, debug, trace), or a tracing filter.
    #[arg(long, default_value = "info", env = "SHOAL_LOG")]
    pub log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Where shoal keeps its state.
    #[arg(long, default_value = "/var/lib/shoal")]
    pub data_dir: PathBuf,
    /// containerd's socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub containerd: PathBuf,
    /// The containerd namespace for this node's containers.
    #[arg(long, default_value = "shoal")]
    pub containerd_namespace: String,
    /// Address for node-to-node traffic.
    #[arg(long, default_value = "0.0.0.0:4290")]
    pub listen: String,
    /// The address other nodes should use (default: detected from the
    /// default route).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Write container logs with containerd's plain file:// logger (both
    /// streams in one file, no cap) instead of shoal's log driver.
    #[arg(long)]
    pub log_to_file: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9290), at
    /// /metrics. Off unless given.
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Fetch image blobs from other nodes that hold them before the
    /// registry (LAN sharing). `false`: every pull goes to the registry.
    #[arg(long, value_name = "true|false", default_value_t = true, action = clap::ArgAction::Set)]
    pub fetch_from_peers: bool,
    /// The UDP port of the encrypted overlay (WireGuard) between nodes;
    /// open it between the nodes. 0: any free port (the managers learn
    /// which).
    #[arg(long, env = "SHOAL_OVERLAY_PORT", default_value_t = 51820)]
    pub overlay_port: u16,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Daemon(a) => {
            crate::daemon::run(crate::daemon::Config {
                data_dir: a.data_dir,
                socket: cli.socket,
                containerd: a.containerd,
                namespace: a.containerd_namespace,
                listen: a.listen,
                advertise: a.advertise,
                log_to_file: a.log_to_file,
                metrics_addr: a.metrics_addr,
                fetch_from_peers: a.fetch_from_peers,
                overlay_port: a.overlay_port,
            })
            .await
        }
        Command::Init {
            advertise,
            cert_expiry,
            default_addr_pool,
            force_new_cluster,
        } => {
            let client = Client::new(&cli.socket);
            let req = crate::api::types::InitRequest {
                advertise,
                cert_expiry_ms: Some(parse::millis(cert_expiry)),
                force_new_cluster,
                addr_pool: Some(default_addr_pool),
            };
            let r: crate::api::types::InitResponse = client.post("/v1/init", &req).await?;
            if force_new_cluster {
                println!(
                    "This node ({}) is now the only manager of cluster {}, at {}; its nodes, services and tasks are kept.",
                    r.node_id, r.cluster_id, r.advertise
                );
                println!("The other managers are no longer members. Remove them with `shoal node rm --force`; one that comes back must not run with its old data dir: stop it, clear its data dir and join again.");
                return Ok(());
            }
            println!(
                "Cluster {} initialized. This node ({}) is its manager, at {}.",
                r.cluster_id, r.node_id, r.advertise
            );
            println!("To add a worker to this cluster, run on it:\n");
            println!(
                "    shoal join --token {} {}\n",
                r.worker_token, r.advertise
            );
            println!(
                "On the same LAN the address can be left out: the managers are found over mDNS."
            );
            Ok(())
        }
        Command::Join {
            token,
            addr,
            advertise,
        } => {
            let client = Client::new(&cli.socket);
            let req = crate::api::JoinRequest {
                token,
                addr,
                advertise,
            };
            let r: crate::api::JoinResponse = client.post("/v1/join", &req).await?;
            println!(
                "This node joined cluster {} as {} {}, through manager {} (found by {}).",
                r.cluster_id,
                r.role.as_str(),
                r.node_id,
                r.manager,
                r.found_by
            );
            if r.role == crate::types::NodeRole::Manager {
                crate::cli::node::warn_even_managers(r.managers);
            }
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            Ok(())
        }
        Command::JoinToken {
            role,
            quiet,
            rotate,
        } => {
            let client = Client::new(&cli.socket);
            let token: String = client
                .get(&format!("/v1/join-token/{role}?rotate={rotate}"))
                .await?;
            if quiet {
                println!("{token}");
            } else {
                if rotate {
                    println!(
                        "The {role} join token was rotated; the old one is refused from now on."
                    );
                }
                // The whole command, as `init` prints it: this manager's
                // address too, which a node off the LAN needs.
                let me: crate::api::types::NodeRow = client.get("/v1/nodes/self").await?;
                println!(
                    "To add a {role} to this cluster, run on it:\n\n    shoal join --token {token} {}\n",
                    me.addr
                );
            }
            Ok(())
        }
        Command::Leave { force } => {
            let client = Client::new(&cli.socket);
            let r: crate::api::Left = client
                .post(&format!("/v1/leave?force={force}"), &())
                .await?;
            println!(
                "Node {} left the cluster; {} container(s) stopped and removed.",
                r.node_id, r.removed_containers
            );
            Ok(())
        }
        Command::Cluster(ClusterCmd::Update {
            cert_expiry,
            heartbeat_period,
            snapshot_interval,
            autolock,
            restart_grace,
            image_gc_high,
            image_gc_low,
            image_gc_min_age,
            bind_allow,
            bind_allow_rm,
            allow_privileged,
        }) => {
            let client = Client::new(&cli.socket);
            let req = crate::api::ClusterUpdate {
                cert_expiry_ms: cert_expiry.map(parse::millis),
                heartbeat_period_ms: heartbeat_period.map(parse::millis),
                snapshot_interval,
                autolock,
                restart_grace_ms: restart_grace.map(parse::millis),
                image_gc_high_percent: image_gc_high,
                image_gc_low_percent: image_gc_low,
                image_gc_min_age_ms: image_gc_min_age.map(parse::millis),
                unlock_key: None,
                bind_allow_add: bind_allow,
                bind_allow_rm,
                bind_allow: None,
                allow_privileged,
            };
            let r: crate::api::ClusterUpdate = client.post("/v1/cluster/update", &req).await?;
            let ms = |v: Option<u64>| {
                humantime::format_duration(std::time::Duration::from_millis(v.unwrap_or(0)))
            };
            println!(
                "cert expiry {}, heartbeat period {}, snapshot every {} log entries, restart grace {}, image GC {}%→{}% (min age {}), autolock {}",
                ms(r.cert_expiry_ms),
                ms(r.heartbeat_period_ms),
                r.snapshot_interval.unwrap_or(0),
                ms(r.restart_grace_ms),
                r.image_gc_high_percent.unwrap_or(0),
                r.image_gc_low_percent.unwrap_or(0),
                ms(r.image_gc_min_age_ms),
                if r.autolock == Some(true) {
                    "on"
                } else {
                    "off"
                }
            );
            let binds = r.bind_allow.unwrap_or_default();
            if !binds.is_empty() {
                println!("bind mounts allowed under {}", binds.join(", "));
            }
            if r.allow_privileged == Some(true) {
                println!("privileged services allowed");
            }
            if let Some(key) = r.unlock_key {
                println!();
                lock::print_key(&key);
            }
            Ok(())
        }
        Command::Unlock => lock::unlock(&Client::new(&cli.socket)).await,
        Command::UnlockKey { quiet, rotate } => {
            lock::unlock_key(&Client::new(&cli.socket), quiet, rotate).await
        }
        Command::Service(c) => service::run(&Client::new(&cli.socket), c).await,
        Command::Node(c) => node::run(&Client::new(&cli.socket), c).await,
        Command::Image(c) => image::run(&Client::new(&cli.socket), c).await,
        Command::Registry(c) => registry::run(&Client::new(&cli.socket), c).await,
        Command::Network(c) => network::run(&Client::new(&cli.socket), c).await,
        Command::Secret(c) => secret::run(&Client::new(&cli.socket), c, "secret").await,
        Command::Config(c) => secret::run(&Client::new(&cli.socket), c, "config").await,
        Command::Events(a) => events::run(&Client::new(&cli.socket), a).await,
        Command::Stack(c) => stack::run(&Client::new(&cli.socket), c).await,
        Command::Exec(a) => exec::run(&Client::new(&cli.socket), a).await,
        Command::Volume(c) => volume::run(&Client::new(&cli.socket), c).await,
        Command::Completion { shell } => {
            extra::completion(shell, &mut <Cli as clap::CommandFactory>::command());
            Ok(())
        }
        Command::Man { dir: None } => extra::man(&<Cli as clap::CommandFactory>::command()),
        Command::Man { dir: Some(dir) } => {
            extra::man_pages(<Cli as clap::CommandFactory>::command(), &dir)
        }
    }
}

// `shoal bench-sim` is parsed apart from `Cli` (`main` sees the word
// first), so that help and shell completions, which are for users, do not
// offer it.
/// Scheduling throughput with simulated nodes: the real store,
/// orchestrator, scheduler and dispatcher, a simulated executor. Needs no
/// daemon, containerd or root.
#[derive(Parser)]
#[command(name = "bench-sim", bin_name = "shoal bench-sim")]
pub struct BenchSim {
    /// Simulated nodes.
    #[arg(long)]
    nodes: usize,
    /// Replicas in all, spread over --services services.
    #[arg(long)]
    tasks: usize,
    /// How many services the tasks are spread over.
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Give up when the tasks are not all running by then.
    #[arg(long, value_parser = parse::duration, default_value = "10m")]
    timeout: std::time::Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl BenchSim {
    pub async fn run(self) -> anyhow::Result<()> {
        let cfg = crate::simbench::Config {
            nodes: self.nodes,
            tasks: self.tasks,
            services: self.services.min(self.tasks.max(1)),
            timeout: self.timeout,
        };
        let report = crate::simbench::run(&cfg).await?;
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!("{report}");
        }
        Ok(())
    }
}
