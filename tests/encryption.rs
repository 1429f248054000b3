//! Encryption at rest and autolock, as an operator meets them: no spec
//! string (service name, env value, label) is readable in any file under
//! the data dir, with or without autolock; an autolocked manager that
//! restarts serves nothing until `shoal unlock` is given the key; the key
//! can be rotated, and autolock turned off again.
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::harness::*;

const NAME: &str = "zebra-canary-svc";
const ENV_VALUE: &str = "envcanary-5d1f0e";
const LABEL_VALUE: &str = "labelcanary-9a7c3b";

/// Every regular file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

/// No spec string in clear anywhere under the data dir. The node id is in
/// identity.json, which shows that the scan reads the files at all.
fn assert_no_spec_in_clear(d: &Daemon, when: &str) {
    let node_id = d.nodes()[0]["id"].as_str().unwrap().to_string();
    assert!(
        !files_containing(&d.data_dir, &node_id).is_empty(),
        "the scan found nothing at all: it reads no files"
    );
    for needle in [NAME, ENV_VALUE, LABEL_VALUE] {
        let found = files_containing(&d.data_dir, needle);
        assert!(found.is_empty(), "{when}: {needle:?} in clear in {found:?}");
    }
}

/// `shoal unlock`, with `key` on stdin.
fn unlock(d: &Daemon, key: &str) -> std::process::Output {
    let mut child = Command::new(SHOAL)
        .env_remove("SHOAL_SOCKET")
        .arg("--socket")
        .arg(&d.socket)
        .arg("unlock")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shoal unlock");
    writeln!(child.stdin.take().unwrap(), "{key}").unwrap();
    finish(child, WAIT)
}

fn keys_file(d: &Daemon) -> String {
    std::fs::read_to_string(d.data_dir.join("keys.pem")).unwrap_or_default()
}

/// After a restart: locked, refuses wrong keys, opens with `key`, and then
/// serves the service whose container ran on.
fn restart_locked_and_unlock(d: &mut Daemon, key: &str, old: Option<&str>) {
    // Scaled down to 1 just before: let the other container stop first.
    assert!(wait_until(WAIT, || d.ctr_running().len() == 1));
    let before = d.ctr_running();
    d.restart();
    let out = d.cli(&["service", "ls"]);
    assert!(!out.status.success(), "a locked manager served service ls");
    assert!(
        stderr(&out).contains("locked") && stderr(&out).contains("shoal unlock"),
        "{}",
        stderr(&out)
    );
    let wrong = format!("SHOALKEY-1-{}", "0".repeat(64));
    let out = unlock(d, &wrong);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong unlock key"),
        "{}",
        stderr(&out)
    );
    let out = unlock(d, "not-a-key");
    assert!(stderr(&out).contains("SHOALKEY-1-"), "{}", stderr(&out));
    if let Some(old) = old {
        let out = unlock(d, old);
        assert!(
            stderr(&out).contains("wrong unlock key"),
            "the rotated-out key still unlocks: {}",
            stderr(&out)
        );
    }
    let out = unlock(d, key);
    assert!(out.status.success(), "unlock failed: {}", stderr(&out));
    assert_eq!(d.wait_running(NAME, 1).len(), 1, "{}", d.log_tail());
    assert_eq!(d.ctr_running(), before, "the container was not adopted");
}

#[test]
fn nothing_is_stored_in_clear_and_an_autolocked_manager_waits_for_its_key() {
    let mut d = Daemon::cluster();
    // Snapshots too: a small interval makes one soon.
    d.cli_ok(&["cluster", "update", "--snapshot-interval", "10"]);
    d.sleeper(
        NAME,
        &[
            "--env",
            &format!("CANARY={ENV_VALUE}"),
            "--label",
            &format!("canary={LABEL_VALUE}"),
        ],
    );
    d.wait_running(NAME, 1);
    for n in [2, 1, 2, 1, 2, 1] {
        d.cli_ok(&["service", "scale", &format!("{NAME}={n}")]);
    }
    d.wait_running(NAME, 1);
    assert!(
        wait_until(WAIT, || d.data_dir.join("raft-snapshot").exists()),
        "no Raft snapshot was written"
    );
    assert!(d.data_dir.join("agent.redb").exists());
    assert!(keys_file(&d).contains("SHOAL DATA KEY"));
    assert_no_spec_in_clear(&d, "without autolock");

    // Not locked yet: no key to show, and nothing to unlock.
    let out = d.cli(&["unlock-key"]);
    assert!(stderr(&out).contains("autolock is off"), "{}", stderr(&out));
    let out = unlock(&d, &format!("SHOALKEY-1-{}", "0".repeat(64)));
    assert!(stderr(&out).contains("not locked"), "{}", stderr(&out));

    let out = d.cli_ok(&["cluster", "update", "--autolock=true"]);
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("SHOALKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key printed: {out}"))
        .to_string();
    assert_eq!(d.cli_ok(&["unlock-key", "-q"]).trim(), key);
    // The sealed copy first, then the plain key goes: wait for both.
    assert!(
        wait_until(WAIT, || keys_file(&d).contains("SHOAL SEALED KEYS")
            && !d.data_dir.join("tls/node.key").exists()),
        "the keys were not sealed, or the plain node.key is still there: {}",
        d.log_tail()
    );
    assert!(
        files_containing(&d.data_dir, "PRIVATE KEY").is_empty(),
        "a private key in clear under autolock"
    );
    restart_locked_and_unlock(&mut d, &key, None);
    assert_no_spec_in_clear(&d, "with autolock");

    // Rotation: the old key no longer opens a restarted manager.
    let sealed_before = keys_file(&d);
    let new = d
        .cli_ok(&["unlock-key", "--rotate", "-q"])
        .trim()
        .to_string();
    assert!(new.starts_with("SHOALKEY-1-") && new != key, "{new}");
    assert_eq!(d.cli_ok(&["unlock-key", "-q"]).trim(), new);
    assert!(
        wait_until(WAIT, || keys_file(&d) != sealed_before),
        "the keys were not resealed with the new key"
    );
    restart_locked_and_unlock(&mut d, &new, Some(&key));

    // Off again: a restart needs no key.
    d.cli_ok(&["cluster", "update", "--autolock=false"]);
    assert!(
        wait_until(WAIT, || keys_file(&d).contains("SHOAL DATA KEY")),
        "the keys were not unsealed"
    );
    assert!(d.data_dir.join("tls/node.key").exists());
    d.restart();
    assert_eq!(d.wait_running(NAME, 1).len(), 1, "{}", d.log_tail());
    assert_no_spec_in_clear(&d, "after autolock was turned off");
}

#[test]
fn every_manager_seals_its_keys_and_a_restarted_one_rejoins_once_unlocked() {
    let mut managers = common::managers::three_managers();
    let out = managers[0].cli_ok(&["cluster", "update", "--autolock=true"]);
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("SHOALKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key printed: {out}"))
        .to_string();
    for m in &managers {
        // The sealed copy is written first, and the plain key removed only
        // once it is durable: wait for both.
        assert!(
            wait_until(WAIT, || keys_file(m).contains("SHOAL SEALED KEYS")
                && !m.data_dir.join("tls/node.key").exists()),
            "a manager did not seal its keys (sealed file: {}, plain node.key still there: {}): {}",
            keys_file(m).contains("SHOAL SEALED KEYS"),
            m.data_dir.join("tls/node.key").exists(),
            m.log_tail()
        );
    }
    // Any manager shows the same key.
    assert_eq!(managers[2].cli_ok(&["unlock-key", "-q"]).trim(), key);

    let m2 = &mut managers[1];
    m2.restart();
    let out = m2.cli(&["node", "ls"]);
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    let out = unlock(m2, &key);
    assert!(out.status.success(), "unlock failed: {}", stderr(&out));
    let want = ["leader", "reachable", "reachable"];
    for m in &managers {
        assert!(
            wait_until(WAIT, || common::managers::manager_statuses(m) == want),
            "the unlocked manager did not rejoin: {:?}\n{}",
            common::managers::manager_statuses(m),
            m.log_tail()
        );
    }
    // And it serves writes again, forwarded to the leader.
    managers[1].sleeper("after-unlock", &[]);
    assert!(common::managers::service_names(&managers[0]).contains("after-unlock"));
}
