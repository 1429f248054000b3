//! `shoal image …`: images on this node.

use std::path::PathBuf;

use clap::Subcommand;

use super::table;
use super::{Client, Format};
use crate::api::types::{ImageLoaded, PullBody, PullLine};
use crate::types::ImageInfo;

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Import an OCI-layout or `docker save` tarball.
    Load {
        /// The tarball's path.
        file: PathBuf,
    },
    /// Pull an image from its registry onto this node, with the
    /// cluster's credentials for that registry (`registry login`).
    Pull {
        /// The image, e.g. alpine:3.20 or registry.example:5000/team/web:1.4.
        image: String,
        /// The platform to pull from a multi-platform image, as
        /// os/arch[/variant] (default: this node's).
        #[arg(long)]
        platform: Option<String>,
    },
    /// List images.
    Ls {
        /// Every node's images (from a manager): which node holds what,
        /// whether a task uses it, and each node's image disk.
        #[arg(long)]
        all_nodes: bool,
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Remove an image (refused while a task on the node uses it).
    Rm {
        /// From every node that has it (from a manager).
        #[arg(long)]
        all_nodes: bool,
        /// The image's name, e.g. busybox or busybox:1.36.
        name: String,
    },
    /// Remove every image that no container or assigned task uses.
    Prune {
        /// On every node (from a manager).
        #[arg(long)]
        all_nodes: bool,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
}

pub async fn run(client: &Client, cmd: ImageCmd) -> anyhow::Result<()> {
    match cmd {
        ImageCmd::Load { file } => {
            if !file.is_file() {
                anyhow::bail!("{}: no such file", file.display());
            }
            let r: ImageLoaded = client.upload("/v1/images/load", &file).await?;
            for name in r.images {
                println!("Loaded image {name}");
            }
            Ok(())
        }
        ImageCmd::Pull { image, platform } => pull(client, image, platform).await,
        ImageCmd::Ls {
            all_nodes: true,
            format,
        } => super::image_nodes::ls(client, format).await,
        ImageCmd::Rm {
            all_nodes: true,
            name,
        } => super::image_nodes::rm(client, &name).await,
        ImageCmd::Prune { all_nodes, force } => {
            super::image_nodes::prune(client, all_nodes, force).await
        }
        ImageCmd::Ls { format, .. } => {
            let images: Vec<ImageInfo> = client.get("/v1/images").await?;
            if format == Format::Json {
                return table::json(&images);
            }
            let rows: Vec<Vec<String>> = images
                .iter()
                .map(|i| {
                    vec![
                        i.name.clone(),
                        i.digest.chars().take(19).collect(),
                        i.platforms.join(","),
                        format!("{:.1}MB", i.size_bytes as f64 / 1e6),
                    ]
                })
                .collect();
            table::print(&["NAME", "DIGEST", "PLATFORMS", "SIZE"], &rows);
            Ok(())
        }
        ImageCmd::Rm { name, .. } => {
            let path = format!("/v1/images?name={}", super::node::encode(&name));
            let r: ImageLoaded = client.delete(&path).await?;
            for name in r.images {
                println!("Removed image {name}");
            }
            Ok(())
        }
    }
}

/// Pulls with progress: one bar per layer, redrawn in place on a terminal;
/// one line per finished layer otherwise.
async fn pull(client: &Client, image: String, platform: Option<String>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let mut bars = Bars::new(std::io::stdout().is_terminal());
    let mut result: Option<anyhow::Result<()>> = None;
    client
        .post_stream(
            "/v1/images/pull",
            &PullBody { image, platform },
            |line: PullLine| {
                if let Some(e) = line.progress {
                    bars.event(e);
                }
                if let Some(done) = line.done {
                    bars.finish();
                    println!(
                        "Pulled {} ({}, {}; {} fetched)",
                        done.name,
                        short(&done.digest),
                        done.platform,
                        size(done.fetched_bytes)
                    );
                    result = Some(Ok(()));
                }
                if let Some(err) = line.error {
                    bars.finish();
                    result = Some(Err(anyhow::anyhow!(err)));
                }
            },
        )
        .await?;
    result.unwrap_or_else(|| {
        Err(anyhow::anyhow!(
            "the daemon ended the pull without a result"
        ))
    })
}

fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}

fn size(n: u64) -> String {
    format!("{:.1}MB", n as f64 / 1e6)
}

/// Per-layer progress.
struct Bars {
    tty: bool,
    /// (digest, done, total, cached), in manifest order.
    layers: Vec<(String, u64, u64, bool)>,
    /// Lines drawn last time (a terminal redraws over them).
    drawn: usize,
    /// Layers already reported as done (plain output).
    reported: std::collections::HashSet<String>,
}

impl Bars {
    fn new(tty: bool) -> Bars {
        Bars {
            tty,
            layers: Vec::new(),
            drawn: 0,
            reported: Default::default(),
        }
    }

    fn event(&mut self, e: crate::executor::PullEvent) {
        use crate::executor::PullEvent;
        match e {
            PullEvent::Resolved {
                digest,
                platform,
                layers,
            } => {
                println!("{}: {platform}, {} layers", short(&digest), layers.len());
                self.layers = layers
                    .into_iter()
                    .map(|(d, total)| (d, 0, total, false))
                    .collect();
            }
            PullEvent::Blob {
                digest,
                done,
                total,
                cached,
            } => {
                if let Some(l) = self.layers.iter_mut().find(|l| l.0 == digest) {
                    l.1 = done;
                    l.2 = total;
                    l.3 = cached;
                }
                if !self.tty && done >= total && self.reported.insert(digest.clone()) {
                    let how = if cached { "already here" } else { "pulled" };
                    println!("{}: {how} ({})", short(&digest), size(total));
                }
            }
            PullEvent::Waiting { digest } => {
                if !self.tty {
                    println!("{}: another node fetches it; waiting", short(&digest));
                }
            }
            PullEvent::Unpacking => {
                if !self.tty {
                    println!("unpacking");
                }
            }
        }
        self.draw();
    }

    fn draw(&mut self) {
        if !self.tty || self.layers.is_empty() {
            return;
        }
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        let (mut done, mut total) = (0, 0);
        for (d, got, all, cached) in &self.layers {
            done += got;
            total += all;
            let width = 30;
            let filled = (*got * width).checked_div(*all).unwrap_or(width).min(width) as usize;
            let bar = format!(
                "{}{}",
                "=".repeat(filled),
                " ".repeat(width as usize - filled)
            );
            let note = if *cached { " (already here)" } else { "" };
            out.push_str(&format!(
                "\x1b[2K{} [{bar}] {}/{}{note}\n",
                short(d),
                size(*got),
                size(*all)
            ));
        }
        out.push_str(&format!("\x1b[2Ktotal {}/{}\n", size(done), size(total)));
        self.drawn = self.layers.len() + 1;
        print!("{out}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }

    fn finish(&mut self) {
        self.draw();
    }
}
