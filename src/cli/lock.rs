//! `shoal unlock` and `shoal unlock-key`, and how a new unlock key is shown.

use std::io::{BufRead, IsTerminal};

use super::Client;
use crate::api::{UnlockKeyReply, UnlockRequest};

/// Print a new or current unlock key the way the operator must keep it.
pub fn print_key(key: &str) {
    println!(
        "To unlock a manager after it restarts, run `shoal unlock` on it and give it this key:\n\n    {key}\n\nKeep it in a password manager: without it a restarted manager cannot start."
    );
}

/// The key comes on stdin, never on the command line, where `ps` and the
/// shell's history would show it.
pub async fn unlock(client: &Client) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let key = if stdin.is_terminal() {
        eprint!("Unlock key: ");
        read_without_echo(&stdin)?
    } else {
        let mut key = String::new();
        stdin.lock().read_line(&mut key)?;
        key
    };
    let key = key.trim().to_string();
    anyhow::ensure!(!key.is_empty(), "no unlock key on stdin");
    let () = client.post("/v1/unlock", &UnlockRequest { key }).await?;
    println!("Unlocked.");
    Ok(())
}

/// One line from the terminal, not shown as it is typed.
pub(super) fn read_without_echo(stdin: &std::io::Stdin) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let old = tcgetattr(stdin)?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(stdin, SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    // Echo comes back even if the read failed.
    let restored = tcsetattr(stdin, SetArg::TCSANOW, &old);
    eprintln!();
    read?;
    restored?;
    Ok(line)
}

pub async fn unlock_key(client: &Client, quiet: bool, rotate: bool) -> anyhow::Result<()> {
    let reply: UnlockKeyReply = if rotate {
        client.post("/v1/unlock-key", &()).await?
    } else {
        client.get("/v1/unlock-key").await?
    };
    let key = reply.key.unwrap_or_default();
    if quiet {
        println!("{key}");
    } else {
        if rotate {
            println!("The unlock key was rotated: managers reseal their keys with the new one. A manager that was down during the rotation still needs the old key once.\n");
        }
        print_key(&key);
    }
    Ok(())
}
