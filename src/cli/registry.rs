//! `shoal registry …`: credentials and settings for the registries the
//! cluster's nodes pull from.

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;

use clap::Subcommand;

use super::node::encode;
use super::table;
use super::{Client, Format};
use crate::api::{LoginRequest, LogoutReply, LogoutRequest, RegistryRow, RegistrySettings};

#[derive(Subcommand)]
pub enum RegistryCmd {
    /// Store credentials for a registry, for the nodes' pulls (not checked
    /// against the registry).
    ///
    /// They are kept in the cluster's (encrypted) store and sent only to
    /// nodes that run a task whose image comes from HOST. They are not
    /// checked against the registry here: wrong ones make the pulls fail.
    Login {
        /// The registry, host[:port] as in image references
        /// (`docker.io` for Docker Hub).
        host: String,
        /// The username (asked for on the terminal when left out).
        #[arg(short, long)]
        username: Option<String>,
        /// Read the password from stdin (needed when stdin is not a
        /// terminal); otherwise it is asked for on the terminal, not shown.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove the credentials stored for a registry.
    Logout {
        /// The registry, host[:port].
        host: String,
    },
    /// List the registries the cluster knows (no password is shown).
    Ls {
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Add a registry, or change its settings: plain HTTP, a private CA,
    /// mirrors.
    ///
    /// A setting left out keeps its value. Plain HTTP is used only for
    /// hosts listed with --insecure, or on loopback (localhost,
    /// 127.0.0.0/8, ::1); every other registry is reached over HTTPS.
    Add {
        /// The registry, host[:port].
        host: String,
        /// Allow plain HTTP to this registry (`--insecure=false` turns it
        /// off again).
        #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
        insecure: Option<bool>,
        /// A PEM file of the CA(s) the registry's certificate is checked
        /// against, for a registry with a private CA.
        #[arg(long, value_name = "FILE")]
        registry_ca: Option<PathBuf>,
        /// A mirror tried before the registry, host[:port] (repeatable;
        /// replaces the registry's mirrors).
        #[arg(long, value_name = "HOST")]
        mirror: Vec<String>,
    },
    /// Forget a registry: its credentials and settings.
    Rm {
        /// The registry, host[:port].
        host: String,
    },
}

pub async fn run(client: &Client, cmd: RegistryCmd) -> anyhow::Result<()> {
    match cmd {
        RegistryCmd::Login {
            host,
            username,
            password_stdin,
        } => {
            let (username, password) = credentials(username, password_stdin)?;
            let req = LoginRequest {
                host,
                username,
                password,
            };
            let row: RegistryRow = client.post("/v1/registries/login", &req).await?;
            println!("Login stored for {}", row.host);
            Ok(())
        }
        RegistryCmd::Logout { host } => {
            let r: LogoutReply = client
                .post("/v1/registries/logout", &LogoutRequest { host })
                .await?;
            match r.remaining {
                Some(_) => println!(
                    "Login removed for {}; its other settings are kept (`shoal registry rm` forgets them)",
                    r.host
                ),
                None => println!("Login removed for {}", r.host),
            }
            Ok(())
        }
        RegistryCmd::Ls { format } => {
            let rows: Vec<RegistryRow> = client.get("/v1/registries").await?;
            if format == Format::Json {
                return table::json(&rows);
            }
            let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let insecure = if r.insecure {
                        "yes".to_string()
                    } else if crate::types::is_loopback_host(&r.host) {
                        "loopback".to_string()
                    } else {
                        "no".to_string()
                    };
                    vec![
                        r.host.clone(),
                        r.username.clone().unwrap_or_default(),
                        insecure,
                        yes_no(r.ca_set),
                        r.mirrors.join(","),
                    ]
                })
                .collect();
            table::print(&["HOST", "USERNAME", "INSECURE", "CA", "MIRRORS"], &rows);
            Ok(())
        }
        RegistryCmd::Add {
            host,
            insecure,
            registry_ca,
            mirror,
        } => {
            let ca_pem = match registry_ca {
                Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                    anyhow::anyhow!("cannot read the registry CA {}: {e}", path.display())
                })?),
                None => None,
            };
            anyhow::ensure!(
                insecure.is_some() || ca_pem.is_some() || !mirror.is_empty(),
                "nothing to set for {host}: give --insecure, --registry-ca or --mirror"
            );
            let req = RegistrySettings {
                host,
                insecure,
                ca_pem,
                mirrors: (!mirror.is_empty()).then_some(mirror),
            };
            let row: RegistryRow = client.post("/v1/registries", &req).await?;
            println!("{}", row.host);
            Ok(())
        }
        RegistryCmd::Rm { host } => {
            let row: RegistryRow = client
                .delete(&format!("/v1/registries/{}", encode(&host)))
                .await?;
            println!("{}", row.host);
            Ok(())
        }
    }
}

/// The username and password: the password from stdin with
/// `--password-stdin`, else typed on the terminal without echo. Never on
/// the command line, where `ps` and the shell's history would show it.
fn credentials(username: Option<String>, password_stdin: bool) -> anyhow::Result<(String, String)> {
    let stdin = std::io::stdin();
    if password_stdin {
        let username = username.ok_or_else(|| {
            anyhow::anyhow!("--password-stdin needs the username too: give it with --username")
        })?;
        let mut password = String::new();
        stdin.lock().read_to_string(&mut password)?;
        let password = password.trim_end_matches(['\n', '\r']).to_string();
        anyhow::ensure!(!password.is_empty(), "no password on stdin");
        return Ok((username, password));
    }
    anyhow::ensure!(
        stdin.is_terminal(),
        "stdin is not a terminal: give the password on stdin with --password-stdin"
    );
    let username = match username {
        Some(u) => u,
        None => {
            eprint!("Username: ");
            let mut line = String::new();
            stdin.lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    anyhow::ensure!(!username.is_empty(), "no username given");
    eprint!("Password: ");
    let password = super::lock::read_without_echo(&stdin)?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(!password.is_empty(), "no password given");
    Ok((username, password))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::RegistryCmd;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> RegistryCmd {
        let mut all = vec!["shoal", "registry"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Registry(c) => c,
            _ => panic!("not a registry command"),
        }
    }

    #[test]
    fn add_takes_insecure_with_or_without_a_value() {
        let RegistryCmd::Add {
            insecure, mirror, ..
        } = parse(&[
            "add",
            "reg.example",
            "--insecure",
            "--mirror",
            "a:5000",
            "--mirror",
            "b",
        ])
        else {
            panic!()
        };
        assert_eq!(insecure, Some(true));
        assert_eq!(mirror, vec!["a:5000", "b"]);
        let RegistryCmd::Add { insecure, .. } = parse(&["add", "h", "--insecure=false"]) else {
            panic!()
        };
        assert_eq!(insecure, Some(false));
        let RegistryCmd::Add { insecure, .. } = parse(&["add", "h", "--mirror", "m"]) else {
            panic!()
        };
        assert_eq!(insecure, None);
    }

    #[test]
    fn login_takes_no_password_argument() {
        let RegistryCmd::Login {
            host,
            username,
            password_stdin,
        } = parse(&["login", "docker.io", "-u", "me", "--password-stdin"])
        else {
            panic!()
        };
        assert_eq!(host, "docker.io");
        assert_eq!(username.as_deref(), Some("me"));
        assert!(password_stdin);
        let mut all = vec!["shoal", "registry", "login", "h", "--password", "x"];
        assert!(Cli::try_parse_from(all.drain(..)).is_err());
    }
}
