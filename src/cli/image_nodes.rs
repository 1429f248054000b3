//! `shoal image ls|rm|prune` across nodes: one line per image per node,
//! and what each node did, or why it could not.

use super::table;
use super::{Client, Format};
use crate::api::types::NodeImages;

fn mb(n: u64) -> String {
    format!("{:.1}MB", n as f64 / 1e6)
}

fn node_name(n: &NodeImages) -> String {
    if n.hostname.is_empty() {
        n.node_id.clone()
    } else {
        n.hostname.clone()
    }
}

/// `image ls --all-nodes`: the images of every node, then each node's
/// image disk.
pub async fn ls(client: &Client, format: Format) -> anyhow::Result<()> {
    let nodes: Vec<NodeImages> = client.get("/v1/images/nodes").await?;
    if format == Format::Json {
        return table::json(&nodes);
    }
    let mut rows = Vec::new();
    for n in &nodes {
        for i in &n.on.images {
            rows.push(vec![
                node_name(n),
                i.info.name.clone(),
                i.info.digest.chars().take(19).collect(),
                i.info.platforms.join(","),
                mb(i.info.size_bytes),
                if i.in_use { "yes" } else { "no" }.into(),
            ]);
        }
    }
    table::print(
        &["NODE", "NAME", "DIGEST", "PLATFORMS", "SIZE", "IN USE"],
        &rows,
    );
    println!();
    let disks: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let images: u64 = n.on.images.iter().map(|i| i.info.size_bytes).sum();
            let disk = match (&n.error, n.on.disk) {
                (Some(e), _) => format!("unknown: {e}"),
                (None, Some(d)) => format!(
                    "{:.0}% of {:.1}GB used",
                    d.percent(),
                    d.total_bytes as f64 / 1e9
                ),
                (None, None) => "unknown".into(),
            };
            vec![
                node_name(n),
                n.on.images.len().to_string(),
                mb(images),
                disk,
            ]
        })
        .collect();
    table::print(&["NODE", "IMAGES", "IMAGE SIZE", "IMAGE DISK"], &disks);
    Ok(())
}

/// `image rm --all-nodes NAME`: fails if no node had it, or if a node
/// could not remove it.
pub async fn rm(client: &Client, name: &str) -> anyhow::Result<()> {
    let path = format!("/v1/images/nodes?name={}", super::node::encode(name));
    let nodes: Vec<NodeImages> = client.delete(&path).await?;
    let mut removed = 0;
    let mut failed = 0;
    for n in &nodes {
        if !n.on.removed.is_empty() {
            removed += 1;
            for r in &n.on.removed {
                println!("{}: removed {r}", node_name(n));
            }
        } else if let Some(e) = n.error.as_ref().filter(|_| !n.not_found) {
            failed += 1;
            eprintln!("{}: {e}", node_name(n));
        }
    }
    if failed > 0 {
        anyhow::bail!("image {name} was not removed from {failed} node(s)");
    }
    if removed == 0 {
        anyhow::bail!("no node has image {name}");
    }
    Ok(())
}

/// `image prune [--all-nodes]`.
pub async fn prune(client: &Client, all_nodes: bool, force: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !force && std::io::stdin().is_terminal() {
        let scope = if all_nodes { "every node" } else { "this node" };
        eprint!(
            "This removes every image that no task uses on {scope}. Are you sure you want to continue? [y/N] "
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let path = format!("/v1/images/prune?all_nodes={all_nodes}");
    let nodes: Vec<NodeImages> = client.post(&path, &()).await?;
    let mut failed = 0;
    let mut freed = 0;
    for n in &nodes {
        for r in &n.on.removed {
            println!("{}: deleted {r}", node_name(n));
        }
        if let Some(e) = &n.error {
            failed += 1;
            eprintln!("{}: {e}", node_name(n));
        }
        freed += n.on.freed_bytes;
    }
    println!("Total reclaimed space: {}", mb(freed));
    if failed > 0 {
        anyhow::bail!("{failed} node(s) could not be pruned");
    }
    Ok(())
}
