//! `shoal node …`

use clap::Subcommand;

use super::table;
use super::{Client, Format};
use crate::api::types::NodeRow;

#[derive(Subcommand)]
pub enum NodeCmd {
    /// List nodes.
    Ls {
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show one node (an id, hostname, or `self`).
    Inspect {
        /// A node id, hostname, or `self`.
        node: String,
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Change a node's availability or labels.
    Update {
        /// A node id, hostname, or `self`.
        node: String,
        /// active: takes tasks; pause: keeps its tasks, takes no new ones;
        /// drain: its tasks move to other nodes.
        #[arg(long, value_enum)]
        availability: Option<AvailabilityArg>,
        /// Add or replace a node label KEY=VALUE (repeatable), for
        /// constraints such as node.labels.zone==a.
        #[arg(long, value_parser = super::parse::key_value)]
        label_add: Vec<(String, String)>,
        /// Remove a node label by KEY (repeatable).
        #[arg(long)]
        label_rm: Vec<String>,
    },
    /// Make nodes managers (Raft voters).
    Promote {
        /// Node ids or hostnames.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers; the last manager cannot be demoted.
    Demote {
        /// Node ids or hostnames.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove nodes from the cluster.
    Rm {
        /// Node ids or hostnames.
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Remove a node even while it is ready.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum AvailabilityArg {
    Active,
    Pause,
    Drain,
}

pub async fn run(client: &Client, cmd: NodeCmd) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Ls { format } => {
            let nodes: Vec<NodeRow> = client.get("/v1/nodes").await?;
            if format == Format::Json {
                return table::json(&nodes);
            }
            let rows: Vec<Vec<String>> = nodes
                .iter()
                .map(|n| {
                    vec![
                        n.id.clone(),
                        n.hostname.clone(),
                        n.status.clone(),
                        n.availability.clone(),
                        n.manager_status.clone().unwrap_or_default(),
                        n.platform.clone(),
                        n.addr.clone(),
                        n.version.clone(),
                    ]
                })
                .collect();
            table::print(
                &[
                    "ID",
                    "HOSTNAME",
                    "STATUS",
                    "AVAILABILITY",
                    "MANAGER STATUS",
                    "PLATFORM",
                    "ADDRESS",
                    "VERSION",
                ],
                &rows,
            );
            Ok(())
        }
        NodeCmd::Update {
            node,
            availability,
            label_add,
            label_rm,
        } => {
            use crate::types::Availability;
            let req = crate::api::NodeUpdate {
                availability: availability.map(|a| match a {
                    AvailabilityArg::Active => Availability::Active,
                    AvailabilityArg::Pause => Availability::Pause,
                    AvailabilityArg::Drain => Availability::Drain,
                }),
                label_add,
                label_rm,
            };
            let n: NodeRow = client
                .post(&format!("/v1/nodes/{}/update", encode(&node)), &req)
                .await?;
            println!("{}", n.id);
            Ok(())
        }
        NodeCmd::Rm { nodes, force } => {
            for node in nodes {
                let n: NodeRow = client
                    .delete(&format!("/v1/nodes/{}?force={force}", encode(&node)))
                    .await
                    .map_err(|e| match e.downcast_ref::<super::client::Refused>() {
                        Some(r) if r.status == hyper::StatusCode::CONFLICT && !force => {
                            anyhow::anyhow!(
                                "{}; `shoal node rm --force` removes it anyway",
                                r.message
                            )
                        }
                        _ => e,
                    })?;
                println!("{}", n.id);
            }
            Ok(())
        }
        NodeCmd::Promote { nodes } => set_role(client, nodes, "promote").await,
        NodeCmd::Demote { nodes } => set_role(client, nodes, "demote").await,
        NodeCmd::Inspect { node, .. } => {
            let n: NodeRow = client.get(&format!("/v1/nodes/{}", encode(&node))).await?;
            table::json(&n)
        }
    }
}

async fn set_role(client: &Client, nodes: Vec<String>, verb: &str) -> anyhow::Result<()> {
    let mut managers = 0;
    for node in nodes {
        let r: crate::api::RoleChange = client
            .post(&format!("/v1/nodes/{}/{verb}", encode(&node)), &())
            .await?;
        let role = r.role.as_str();
        if r.changed {
            println!("Node {} is now a {role}.", r.node_id);
        } else {
            println!("Node {} is already a {role}.", r.node_id);
        }
        managers = r.managers;
    }
    warn_even_managers(managers);
    Ok(())
}

/// Percent-encode a path segment.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An even number of managers tolerates no more failures than one fewer:
/// say so, as the operator probably wants an odd number.
pub fn warn_even_managers(managers: usize) {
    if managers >= 2 && managers.is_multiple_of(2) {
        eprintln!(
            "warning: the cluster now has {managers} managers. An even number tolerates no more manager failures than {} (a majority of {managers} is {}); add or remove one.",
            managers - 1,
            managers / 2 + 1
        );
    }
}
