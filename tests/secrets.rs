//! Secrets and configs, on real containerd, on two nodes (loopback): a
//! secret reaches only the node that runs a task using it, lives there in
//! memory and on a tmpfs bound into the container, and is found in no
//! file of either node's data dir, in no daemon log and not in the
//! container's rootfs; a config is read inside the task; target, uid and
//! mode are as asked; what is in use cannot be removed; rotation by
//! `--secret-rm`/`--secret-add`; bad input is refused with the reason.
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::harness::*;

/// `shoal_files_held`: the secrets and configs the node holds in memory.
fn files_held(addr: &str) -> u64 {
    let out = scrape(addr);
    out.lines()
        .find_map(|l| l.strip_prefix("shoal_files_held "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no shoal_files_held in {out}"))
}

/// Every file under `dir` whose bytes hold `needle` (symlinks not
/// followed; unreadable files skipped).
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if meta.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

/// The line of `/proc/PID/mountinfo` for mount point `target`.
fn mount_line(pid: u32, target: &str) -> String {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some(target))
        .unwrap_or_else(|| panic!("{target} is not mounted in the task:\n{info}"))
        .to_string()
}

/// The upper (writable) dir of the task's root filesystem, on the node's
/// disk: what the container wrote.
fn rootfs_upper(pid: u32) -> String {
    let line = mount_line(pid, "/");
    line.split([',', ' '])
        .find_map(|o| o.strip_prefix("upperdir="))
        .unwrap_or_else(|| panic!("no upperdir in {line}"))
        .to_string()
}

#[test]
fn a_secret_reaches_only_its_node_in_memory_and_never_a_disk() {
    let (manager, m_metrics) = Daemon::with_metrics();
    manager.cli_ok(&["init"]);
    manager.load_image("busybox");
    let (worker, w_metrics) = Daemon::with_metrics();
    let addr = format!("127.0.0.1:{}", manager.port);
    let out = worker.cli(&["join", "--token", &manager.join_token(), &addr]);
    assert!(out.status.success(), "join: {}", stderr(&out));
    let waddr = format!("127.0.0.1:{}", worker.port);
    assert!(
        wait_until(WAIT, || manager.node_status(&waddr) == "ready"),
        "the worker never became ready"
    );

    // A secret no other file holds: random, made here.
    let token = format!("s3cret-{:x}", rand_u64());
    let secret_file = manager.dir().join("pw.txt");
    std::fs::write(&secret_file, &token).unwrap();
    manager.cli_ok(&["secret", "create", "db_pw", secret_file.to_str().unwrap()]);
    std::fs::remove_file(&secret_file).unwrap();
    let conf = manager.dir().join("app.conf");
    std::fs::write(&conf, "listen 8080\n").unwrap();
    manager.cli_ok(&["config", "create", "app_conf", conf.to_str().unwrap()]);

    // On the manager only. The task prints the secret's digest, never
    // the secret; and the config itself, its target, uid and mode.
    let mid = manager.node_id(&addr);
    let constraint = format!("node.id=={mid}");
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "db",
        "--constraint",
        &constraint,
        "--secret",
        "db_pw",
        "--secret",
        "source=db_pw,target=/etc/pw2,uid=7,gid=8,mode=0400",
        "--config",
        "source=app_conf,target=/etc/app.conf",
        "busybox",
        "sh",
        "-c",
        "sha256sum /run/secrets/db_pw; cat /etc/app.conf; stat -c 'mode=%a uid=%u gid=%g' /etc/pw2; \
         trap 'exit 0' TERM; while true; do sleep 1; done",
    ]);
    let ids = manager.wait_running("db", 1);
    let id = ids.iter().next().unwrap().clone();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    };
    let mut logs = String::new();
    assert!(
        wait_until(WAIT, || {
            logs = stdout(&manager.cli(&["service", "logs", "db"]));
            logs.contains("mode=")
        }),
        "the task never wrote its checks: {logs}"
    );
    assert!(
        logs.contains(&digest),
        "the task read another secret: {logs}"
    );
    assert!(logs.contains("listen 8080"), "{logs}");
    assert!(logs.contains("mode=400 uid=7 gid=8"), "{logs}");

    // In the task: a tmpfs, bound read-only.
    let pid = manager.ctr_tasks()[&id].0;
    let line = mount_line(pid, "/run/secrets/db_pw");
    assert!(line.contains(" - tmpfs "), "{line}");
    assert!(line.split(' ').nth(5).unwrap().starts_with("ro"), "{line}");

    // In memory on the manager (the secret and the config), never sent
    // to the worker.
    assert_eq!(files_held(&m_metrics), 2);
    assert_eq!(files_held(&w_metrics), 0);

    // On no disk: the data dirs (stores, agent.redb, logs), the daemons'
    // logs, the container's writable layer.
    let needle = token.as_bytes();
    for d in [&manager, &worker] {
        let found = files_holding(d.dir(), needle);
        assert!(found.is_empty(), "the secret is on disk in {found:?}");
    }
    let upper = rootfs_upper(pid);
    let found = files_holding(Path::new(&upper), needle);
    assert!(found.is_empty(), "the secret is in the rootfs: {found:?}");
    let inspect = manager.cli_ok(&["secret", "inspect", "db_pw"]);
    assert!(
        !inspect.contains(&token),
        "inspect shows the secret: {inspect}"
    );
    assert!(inspect.contains("\"db\""), "{inspect}");

    // In use: not removed. Rotation: a new secret, swapped in.
    let out = manager.cli(&["secret", "rm", "db_pw"]);
    assert!(
        stderr(&out).contains("secret db_pw is in use by service db"),
        "{}",
        stderr(&out)
    );
    let out = manager.cli(&["config", "rm", "app_conf"]);
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    let mut create = std::process::Command::new(&manager.cli_binary);
    create
        .env_remove("SHOAL_SOCKET")
        .arg("--socket")
        .arg(&manager.socket)
        .args(["secret", "create", "db_pw2", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = create.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"rotated").unwrap();
    }
    let out = finish(child, Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    manager.update_refused(
        "db",
        &[(
            &["--secret-rm", "nothing"][..],
            "service db uses no secret nothing",
        )],
    );
    manager.cli_ok(&[
        "service",
        "update",
        "--secret-rm",
        "db_pw",
        "--secret-add",
        "source=db_pw2,target=db_pw",
        "db",
    ]);
    let rotated = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"rotated"))
    };
    assert!(
        wait_until(Duration::from_secs(60), || {
            stdout(&manager.cli(&["service", "logs", "db"])).contains(&rotated)
        }),
        "the new task never read the new secret\n{}",
        manager.describe("db")
    );
    // The old secret is no longer used: it goes, from the store and from
    // the node's memory.
    manager.cli_ok(&["secret", "rm", "db_pw"]);
    assert!(
        wait_until(WAIT, || files_held(&m_metrics) == 2),
        "the node still holds {} files",
        files_held(&m_metrics)
    );

    // Once the service goes, its tasks' tmpfs go, and the node holds
    // nothing.
    manager.cli_ok(&["service", "rm", "db"]);
    assert!(
        wait_until(WAIT, || files_held(&m_metrics) == 0),
        "the node still holds {} files",
        files_held(&m_metrics)
    );
    assert!(
        wait_until(WAIT, || {
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            !mounts.lines().any(|l| {
                l.contains("/run/shoal/files/")
                    && l.split(' ')
                        .nth(4)
                        .is_some_and(|p| ids.iter().any(|i| p.ends_with(i.as_str())))
            })
        }),
        "the task's tmpfs is still mounted"
    );
}

#[test]
fn bad_secrets_and_configs_are_refused_with_the_reason() {
    let d = Daemon::cluster();
    let file = d.dir().join("secret.txt");
    std::fs::write(&file, "x").unwrap();
    let path = file.to_str().unwrap();
    d.cli_ok(&["secret", "create", "a", path]);
    let big = d.dir().join("big");
    std::fs::write(&big, vec![b'x'; 600 * 1024]).unwrap();
    let empty = d.dir().join("empty");
    std::fs::write(&empty, "").unwrap();
    for (args, want) in [
        (
            vec!["secret", "create", "a", path],
            "secret a already exists",
        ),
        (vec!["secret", "create", "a/b", path], "invalid secret name"),
        (
            vec!["secret", "create", "b", big.to_str().unwrap()],
            "at most 500 KiB",
        ),
        (
            vec!["secret", "create", "b", empty.to_str().unwrap()],
            "cannot be empty",
        ),
        (
            vec!["secret", "create", "b", "/nonexistent"],
            "cannot read /nonexistent",
        ),
        (vec!["secret", "rm", "nope"], "secret nope not found"),
        (vec!["config", "inspect", "a"], "config a not found"),
    ] {
        let out = d.cli(&args);
        assert!(!out.status.success(), "{args:?} was taken");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    // A config of 600 KiB is fine (its limit is 1000 KiB).
    d.cli_ok(&["config", "create", "big", big.to_str().unwrap()]);
    for (flag, want) in [
        ("nope", "secret nope not found"),
        ("source=a,target=../etc/x", "without '..'"),
        ("source=a,mode=999", "invalid mode"),
        ("source=a,colour=red", "unknown key"),
    ] {
        let out = d.cli(&[
            "service", "create", "--name", "s", "--secret", flag, "busybox", "true",
        ]);
        assert!(!out.status.success(), "{flag} was taken");
        assert!(stderr(&out).contains(want), "{flag}: {}", stderr(&out));
    }
    let out = d.cli(&[
        "service",
        "create",
        "--name",
        "s",
        "--secret",
        "a",
        "--secret",
        "source=a,target=a",
        "busybox",
        "true",
    ]);
    assert!(stderr(&out).contains("same target"), "{}", stderr(&out));
}

/// A pseudo-random number, from the clock and the process.
fn rand_u64() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
}
