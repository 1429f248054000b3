//! `shoal node …`

use clap::Subcommand;

use super::table;
use super::{Client, Format};
use crate::api::types::NodeRow;

#[derive(Subcommand)]
pub enum NodeCmd {
    /// List nodes.
    Ls {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show one node (an id, hostname, or `self`).
    Inspect {
        node: String,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
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
        NodeCmd::Inspect { node, .. } => {
            let n: NodeRow = client.get(&format!("/v1/nodes/{}", encode(&node))).await?;
            table::json(&n)
        }
    }
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
