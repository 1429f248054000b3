//! `shoal image …`: images on this node.

use std::path::PathBuf;

use clap::Subcommand;

use super::table;
use super::{Client, Format};
use crate::api::types::ImageLoaded;
use crate::types::ImageInfo;

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Import an OCI-layout or `docker save` tarball.
    Load {
        /// The tarball's path.
        file: PathBuf,
    },
    /// List images.
    Ls {
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Remove an image.
    Rm {
        /// The image's name, e.g. busybox or busybox:1.36.
        name: String,
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
        ImageCmd::Ls { format } => {
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
        ImageCmd::Rm { name } => {
            let path = format!("/v1/images?name={}", super::node::encode(&name));
            let r: ImageLoaded = client.delete(&path).await?;
            for name in r.images {
                println!("Removed image {name}");
            }
            Ok(())
        }
    }
}
