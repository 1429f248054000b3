//! `shoal volume …`: named volumes, each on one node.

use clap::Subcommand;

use super::node::encode;
use super::{parse, table, Client, Format};
use crate::api::volumes::{NodeVolumes, VolumeCreate, VolumeRow};

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume on a node (tasks also make one on first use).
    Create {
        /// The node (id or hostname); default: this one.
        #[arg(long)]
        node: Option<String>,
        /// Label KEY=VALUE (repeatable).
        #[arg(long, value_parser = parse::key_value)]
        label: Vec<(String, String)>,
        /// The volume's name.
        name: String,
    },
    /// List volumes, of every node or of one.
    Ls {
        /// Only this node's (id or hostname).
        #[arg(long)]
        node: Option<String>,
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a volume: where it is, its labels, size and users.
    Inspect {
        /// Only on this node (id or hostname).
        #[arg(long)]
        node: Option<String>,
        /// The volume's name.
        name: String,
        /// Output: JSON (the default), or a table.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Remove volumes and their data (refused while a task uses one).
    Rm {
        /// The node; needed when several nodes have a volume of that name.
        #[arg(long)]
        node: Option<String>,
        /// The volumes' names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every volume that no task uses, on every node or one.
    Prune {
        /// Only on this node (id or hostname).
        #[arg(long)]
        node: Option<String>,
    },
}

fn node_query(node: &Option<String>) -> String {
    node.as_ref()
        .map(|n| format!("?node={}", encode(n)))
        .unwrap_or_default()
}

/// Warns of the nodes that did not answer; true if any did not.
fn warn_failed(nodes: &[NodeVolumes]) -> bool {
    let mut failed = false;
    for n in nodes {
        if let Some(e) = &n.error {
            eprintln!("warning: node {} ({}): {e}", n.hostname, n.node_id);
            failed = true;
        }
    }
    failed
}

pub async fn run(client: &Client, cmd: VolumeCmd) -> anyhow::Result<()> {
    match cmd {
        VolumeCmd::Create { node, label, name } => {
            let req = VolumeCreate {
                name,
                node,
                labels: label.into_iter().collect(),
            };
            let v: VolumeRow = client.post("/v1/volumes", &req).await?;
            println!("{}", v.info.name);
        }
        VolumeCmd::Ls { node, format } => {
            let nodes: Vec<NodeVolumes> = client
                .get(&format!("/v1/volumes{}", node_query(&node)))
                .await?;
            let rows: Vec<&VolumeRow> = nodes.iter().flat_map(|n| &n.volumes).collect();
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|v| {
                        vec![
                            v.info.driver.clone(),
                            v.info.name.clone(),
                            v.node.clone(),
                            crate::types::human_bytes(v.info.size_bytes),
                            v.used_by.join(", "),
                        ]
                    })
                    .collect();
                table::print(
                    &["DRIVER", "VOLUME NAME", "NODE", "SIZE", "USED BY"],
                    &table,
                );
            }
            if warn_failed(&nodes) {
                std::process::exit(1);
            }
        }
        VolumeCmd::Inspect { node, name, format } => {
            let v: Vec<VolumeRow> = client
                .get(&format!(
                    "/v1/volumes/{}{}",
                    encode(&name),
                    node_query(&node)
                ))
                .await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for r in &v {
                    let labels: Vec<String> = r
                        .info
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    table::print(
                        &["NAME", "NODE", "MOUNTPOINT", "SIZE", "LABELS", "USED BY"],
                        &[vec![
                            r.info.name.clone(),
                            r.node.clone(),
                            r.info.mountpoint.clone(),
                            crate::types::human_bytes(r.info.size_bytes),
                            labels.join(","),
                            r.used_by.join(", "),
                        ]],
                    );
                }
            }
        }
        VolumeCmd::Rm { node, names } => {
            let mut failed = false;
            for name in names {
                let r: anyhow::Result<NodeVolumes> = client
                    .delete(&format!(
                        "/v1/volumes/{}{}",
                        encode(&name),
                        node_query(&node)
                    ))
                    .await;
                match r {
                    Ok(_) => println!("{name}"),
                    Err(e) => {
                        eprintln!("Error: {e:#}");
                        failed = true;
                    }
                }
            }
            if failed {
                std::process::exit(1);
            }
        }
        VolumeCmd::Prune { node } => {
            let nodes: Vec<NodeVolumes> = client
                .post(&format!("/v1/volumes/prune{}", node_query(&node)), &())
                .await?;
            for n in &nodes {
                for v in &n.removed {
                    println!("{v} (on {})", n.hostname);
                }
            }
            if warn_failed(&nodes) {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
