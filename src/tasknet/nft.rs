//! The node bridge's nftables table: masquerade for traffic that leaves
//! the subnet, and accept rules for forwarding to and from the bridge.
//! The whole table is rendered as text and applied with one `nft -f -`,
//! which the kernel commits atomically. Rendering is pure.

use std::process::Stdio;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt;

use super::NetError;

/// `nft` answers in milliseconds; one that hangs (a stuck netlink lock)
/// must not hang an attach with it.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// `add` first, so that the `delete` works whether or not the table is
/// there yet; both in the same transaction as what follows.
fn reset(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

/// The table, replacing any previous version of it. Numeric priorities:
/// nft 1.0.6 (Debian 12) does not take every named one on every hook.
/// The masquerade skips traffic that stays on the bridge, so tasks see
/// each other's real addresses. Accepting forwarded traffic here does not
/// override a drop in another table (a drop in any base chain is final),
/// but it is what a host without other rules needs, as with Docker.
pub(super) fn render(table: &str, subnet: &Ipv4Net, bridge: &str) -> String {
    format!(
        "{reset}table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority 100; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         \t\tiifname \"{bridge}\" accept\n\
         \t\toifname \"{bridge}\" accept\n\
         \t}}\n\
         }}\n",
        reset = reset(table),
        subnet = subnet.trunc(),
    )
}

/// Removes the table; nothing to do when it is not there.
pub(super) fn render_delete(table: &str) -> String {
    reset(table)
}

/// Runs `nft -f -` with `script` on stdin.
pub(super) async fn apply(script: &str) -> Result<(), NetError> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // On a timeout the future is dropped: the child must go with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            NetError::Nft(if e.kind() == std::io::ErrorKind::NotFound {
                "the nft program is not installed (package nftables)".to_string()
            } else {
                format!("cannot start nft: {e}")
            })
        })?;
    let run = async move {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).await?;
            // Dropping stdin closes it: nft reads to the end before it acts.
        }
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(NFT_TIMEOUT, run)
        .await
        .map_err(|_| NetError::Nft(format!("no answer in {NFT_TIMEOUT:?}")))?
        .map_err(|e| NetError::Nft(format!("running nft: {e}")))?;
    if !out.status.success() {
        return Err(NetError::Nft(format!(
            "{} for:\n{script}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_replaces_itself_and_masquerades_what_leaves() {
        let subnet: Ipv4Net = "10.20.3.0/24".parse().unwrap();
        let t = render("shoal_0a140300", &subnet, "shl0a140300");
        let lines: Vec<&str> = t.lines().map(str::trim).collect();
        assert_eq!(lines[0], "add table ip shoal_0a140300");
        assert_eq!(lines[1], "delete table ip shoal_0a140300");
        assert_eq!(lines[2], "table ip shoal_0a140300 {");
        assert!(lines.contains(&"type nat hook postrouting priority 100; policy accept;"));
        assert!(lines.contains(&"ip saddr 10.20.3.0/24 oifname != \"shl0a140300\" masquerade"));
        assert!(lines.contains(&"type filter hook forward priority 0; policy accept;"));
        assert!(lines.contains(&"iifname \"shl0a140300\" accept"));
        assert!(lines.contains(&"oifname \"shl0a140300\" accept"));
        // Braces balance.
        assert_eq!(t.matches('{').count(), t.matches('}').count());
        assert_eq!(
            render_delete("shoal_0a140300"),
            "add table ip shoal_0a140300\ndelete table ip shoal_0a140300\n"
        );
    }
}
