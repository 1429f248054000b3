//! `shoal secret …` and `shoal config …`: one shape, two kinds.

use std::io::Read;

use base64::Engine;
use clap::Subcommand;

use super::{parse, table, Client, Format};
use crate::api::secrets::{FileBody, FileCreate};
use crate::api::types::Created;

#[derive(Subcommand)]
pub enum FileCmd {
    /// Create one from a file, or from stdin with `-`. Its data cannot be
    /// changed: a new value is a new one, under a new name.
    Create {
        /// Label KEY=VALUE (repeatable).
        #[arg(short, long, value_parser = parse::key_value)]
        label: Vec<(String, String)>,
        /// Its name.
        name: String,
        /// The file that holds the data, or `-` for stdin.
        file: String,
    },
    /// List them.
    Ls {
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show one (a secret's data is never shown).
    Inspect {
        /// Its name or id.
        name: String,
    },
    /// Remove them (refused while a service uses one).
    Rm {
        /// Names or ids.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// The most read from a file or stdin: a config's limit, and a little
/// more, so that the managers say what is too big.
const READ_LIMIT: u64 = 1024 * 1024 + 1;

/// `kind` is `secret` or `config`.
pub async fn run(client: &Client, cmd: FileCmd, kind: &str) -> anyhow::Result<()> {
    let base = format!("/v1/{kind}s");
    match cmd {
        FileCmd::Create { label, name, file } => {
            let mut data = Vec::new();
            if file == "-" {
                std::io::stdin().take(READ_LIMIT).read_to_end(&mut data)?;
            } else {
                std::fs::File::open(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?
                    .take(READ_LIMIT)
                    .read_to_end(&mut data)?;
            }
            let req = FileCreate {
                name,
                labels: label.into_iter().collect(),
                data: base64::engine::general_purpose::STANDARD.encode(&data),
            };
            let r: Created = client.post(&base, &req).await?;
            println!("{}", r.id);
        }
        FileCmd::Ls { format } => {
            let rows: Vec<FileBody> = client.get(&base).await?;
            if format == Format::Json {
                return table::json(&rows);
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|f| {
                    vec![
                        f.id.chars().take(12).collect(),
                        f.name.clone(),
                        f.size.to_string(),
                        table::ago(f.created_ms),
                        f.services.join(", "),
                    ]
                })
                .collect();
            table::print(&["ID", "NAME", "BYTES", "CREATED", "SERVICES"], &cells);
        }
        FileCmd::Inspect { name } => {
            let f: FileBody = client
                .get(&format!("{base}/{}", super::node::encode(&name)))
                .await?;
            table::json(&f)?;
        }
        FileCmd::Rm { names } => {
            for n in &names {
                let _: FileBody = client
                    .get(&format!("{base}/{}", super::node::encode(n)))
                    .await?;
            }
            for n in names {
                let _: Created = client
                    .delete(&format!("{base}/{}", super::node::encode(&n)))
                    .await?;
                println!("{n}");
            }
        }
    }
    Ok(())
}
