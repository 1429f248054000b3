//! `shoal network …`

use clap::Subcommand;

use super::{parse, table, Client, Format};
use crate::api::networks::{NetworkBody, NetworkCreate};
use crate::api::types::Created;

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Create a network that services' tasks can join.
    Create {
        /// overlay: spans the nodes (encrypted between them unless
        /// `--opt encrypted=false`); bridge: local to each node.
        #[arg(short, long, default_value = "overlay", value_parser = ["overlay", "bridge"])]
        driver: String,
        /// The subnet, CIDR (default: the next free /24 of the cluster's
        /// address pool). It must overlap no other network's.
        #[arg(long)]
        subnet: Option<String>,
        /// The gateway (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<String>,
        /// Let tasks join it by hand, not only services' tasks.
        #[arg(long)]
        attachable: bool,
        /// Label KEY=VALUE (repeatable).
        #[arg(long, value_parser = parse::key_value)]
        label: Vec<(String, String)>,
        /// Driver option KEY=VALUE (repeatable): encrypted=true|false.
        #[arg(short, long, value_parser = parse::key_value)]
        opt: Vec<(String, String)>,
        /// The network's name.
        name: String,
    },
    /// List networks.
    Ls {
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a network.
    Inspect {
        /// The network's name or id.
        network: String,
        /// Output: JSON (the default), or a table.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Remove networks (refused while a service uses one).
    Rm {
        /// Names or ids of the networks.
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

pub async fn run(client: &Client, cmd: NetworkCmd) -> anyhow::Result<()> {
    match cmd {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            attachable,
            label,
            opt,
            name,
        } => {
            let req = NetworkCreate {
                name,
                driver,
                subnet,
                gateway,
                attachable,
                labels: label.into_iter().collect(),
                options: opt.into_iter().collect(),
            };
            let r: Created = client.post("/v1/networks", &req).await?;
            println!("{}", r.id);
            Ok(())
        }
        NetworkCmd::Ls { format } => {
            let rows: Vec<NetworkBody> = client.get("/v1/networks").await?;
            if format == Format::Json {
                return table::json(&rows);
            }
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|n| {
                    vec![
                        short(&n.id),
                        n.name.clone(),
                        n.driver.clone(),
                        n.scope.clone(),
                        n.subnet.clone(),
                        if n.driver == "overlay" {
                            if n.encrypted { "yes" } else { "no" }.to_string()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            table::print(
                &[
                    "NETWORK ID",
                    "NAME",
                    "DRIVER",
                    "SCOPE",
                    "SUBNET",
                    "ENCRYPTED",
                ],
                &rows,
            );
            Ok(())
        }
        NetworkCmd::Inspect { network, format } => {
            let n: NetworkBody = client
                .get(&format!("/v1/networks/{}", enc(&network)))
                .await?;
            if format == Format::Json {
                return table::json(&n);
            }
            let rows = vec![
                vec!["ID".into(), n.id],
                vec!["Name".into(), n.name],
                vec!["Driver".into(), n.driver],
                vec!["Scope".into(), n.scope],
                vec!["Subnet".into(), n.subnet],
                vec!["Gateway".into(), n.gateway],
                vec!["Encrypted".into(), n.encrypted.to_string()],
                vec!["Services".into(), n.services.join(", ")],
            ];
            table::print(&["FIELD", "VALUE"], &rows);
            Ok(())
        }
        NetworkCmd::Rm { networks } => {
            // All are checked first, as `service rm` does: a typo removes
            // nothing.
            for n in &networks {
                let _: NetworkBody = client.get(&format!("/v1/networks/{}", enc(n))).await?;
            }
            for n in networks {
                let _: Created = client.delete(&format!("/v1/networks/{}", enc(&n))).await?;
                println!("{n}");
            }
            Ok(())
        }
    }
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

fn enc(s: &str) -> String {
    super::node::encode(s)
}
