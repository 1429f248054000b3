//! Images on small disks: image garbage collection between the cluster's
//! water marks, on a node whose containerd keeps its images on a tmpfs
//! that fills up as an SD card does; and `image ls|rm|prune --all-nodes`
//! across a two-node cluster.
//!
//! Needs root and containerd (`bash tests/run`).

mod common;

use common::containerd::OwnContainerd;
use common::harness::*;
use common::image::{build, Format, Options};
use serde_json::Value;

fn load(d: &Daemon, name: &str, filler: usize) {
    let mut o = Options::new(name, host_arch(), Format::Oci);
    o.filler = filler;
    o.version = Some(name.to_string());
    let tar = build(d.dir(), &o);
    d.cli_ok(&["image", "load", tar.to_str().unwrap()]);
    let _ = std::fs::remove_file(tar);
}

/// `image ls --all-nodes`, as JSON.
fn all_nodes(d: &Daemon) -> Vec<Value> {
    d.cli_json(&["image", "ls", "--all-nodes"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn names(node: &Value) -> Vec<String> {
    node["images"]
        .as_array()
        .map(|a| a.iter().map(|i| s(i, "name").to_string()).collect())
        .unwrap_or_default()
}

fn disk_percent(node: &Value) -> f64 {
    let used = node["disk"]["used_bytes"].as_f64().unwrap_or(0.0);
    let total = node["disk"]["total_bytes"].as_f64().unwrap_or(1.0);
    used * 100.0 / total
}

#[test]
fn gc_frees_the_disk_down_to_the_low_mark_and_keeps_images_in_use() {
    // 5 images of about 15 MB each (their content and their unpacked
    // snapshot: about 30 MB of disk each) on a 256 MB disk.
    let c = OwnContainerd::start_on_tmpfs(256);
    let mut d = Daemon::new(&c.socket);
    d.spawn();
    d.wait_ready().expect("the daemon did not start");
    d.cli_ok(&["init"]);
    // Fillers of different lengths: layers that share nothing.
    for (i, n) in ["old1", "old2", "old3", "old4", "used"].iter().enumerate() {
        load(&d, n, 15_000_000 + i * 4096);
    }
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "keep",
        "--stop-grace-period",
        "1s",
        "used",
        "sleep",
        "3600",
    ]);
    assert!(
        wait_until(WAIT, || d.running("keep").len() == 1),
        "the service did not run\n{}",
        d.describe("keep")
    );
    let before = all_nodes(&d);
    assert_eq!(before.len(), 1);
    assert_eq!(names(&before[0]).len(), 5, "{before:?}");
    let full = disk_percent(&before[0]);
    assert!(
        (40.0..85.0).contains(&full),
        "the test expects the images to fill 40-85% of the disk, not {full:.0}%"
    );
    // At the default marks (85%/80%) nothing goes.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(names(&all_nodes(&d)[0]).len(), 5);

    // Marks below today's fill: the node collects at once.
    let high = (full as u8 - 10).to_string();
    d.cli_ok(&[
        "cluster",
        "update",
        "--image-gc-high",
        &high,
        "--image-gc-low",
        "20",
        "--image-gc-min-age",
        "0s",
    ]);
    let collected = || {
        let n = &all_nodes(&d)[0];
        (names(n), disk_percent(n))
    };
    assert!(
        wait_until(WAIT, || collected().1 < 20.0 || collected().0.len() == 1),
        "image GC did not bring the disk below 20%: {:?}\n{}",
        collected(),
        d.log_tail()
    );
    let (left, after) = collected();
    assert!(
        left.iter().any(|n| n.contains("/used:")),
        "the image in use was removed: {left:?}"
    );
    assert!(left.len() < 5, "nothing was collected: {left:?}");
    assert!(
        after < full - 10.0,
        "the disk did not shrink: {full:.0}% → {after:.0}%"
    );
    assert!(
        after < 20.0,
        "the disk is not below the low-water mark: {after:.0}% ({left:?})"
    );
    assert!(
        std::fs::read_to_string(&d.log)
            .unwrap_or_default()
            .contains("image GC removed unused images"),
        "the daemon log does not say what GC did"
    );
    // The task is untouched, and its image still starts containers.
    assert_eq!(d.running("keep").len(), 1);
    d.cli_ok(&["service", "scale", "keep=2"]);
    assert!(
        wait_until(WAIT, || d.running("keep").len() == 2),
        "the kept image no longer runs\n{}",
        d.describe("keep")
    );
}

#[test]
fn image_ls_rm_and_prune_act_on_every_node() {
    let m = Daemon::cluster();
    let mut w = Daemon::new(CONTAINERD_SOCKET);
    w.spawn();
    w.wait_ready().expect("the worker did not start");
    let token = m.cli_ok(&["join-token", "worker", "-q"]);
    w.cli_ok(&[
        "join",
        "--token",
        token.trim(),
        &format!("127.0.0.1:{}", m.port),
    ]);
    let waddr = format!("127.0.0.1:{}", w.port);
    assert!(
        wait_until(WAIT, || m.node_status(&waddr) == "ready"),
        "the worker never became ready"
    );
    for d in [&m, &w] {
        load(d, "app", 0);
        load(d, "spare", 0);
    }
    load(&w, "extra", 0);
    m.cli_ok(&[
        "service",
        "create",
        "--name",
        "app",
        "--mode",
        "global",
        "--stop-grace-period",
        "1s",
        "app",
        "sleep",
        "3600",
    ]);
    assert!(
        wait_until(WAIT, || m.running("app").len() == 2),
        "the global service did not run on both nodes\n{}",
        m.describe("app")
    );

    // ls: both nodes, what each holds, what is in use, and the disk.
    let nodes = all_nodes(&m);
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    for n in &nodes {
        assert!(n["error"].is_null(), "{n}");
        assert!(n["disk"]["total_bytes"].as_u64().unwrap_or(0) > 0, "{n}");
        let app = n["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| s(i, "name").ends_with("/app:latest"))
            .unwrap_or_else(|| panic!("no app image on {n}"));
        assert_eq!(app["in_use"], true, "{n}");
        let spare = n["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| s(i, "name").ends_with("/spare:latest"))
            .unwrap_or_else(|| panic!("no spare image on {n}"));
        assert_eq!(spare["in_use"], false, "{n}");
    }
    let table = m.cli_ok(&["image", "ls", "--all-nodes"]);
    assert!(
        table.contains("IN USE") && table.contains("IMAGE DISK"),
        "{table}"
    );

    // rm: refused where in use, done where not.
    let out = m.cli(&["image", "rm", "--all-nodes", "app"]);
    assert!(!out.status.success(), "removing an image in use succeeded");
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    assert!(all_nodes(&m)
        .iter()
        .all(|n| names(n).iter().any(|i| i.ends_with("/app:latest"))));
    let out = m.cli_ok(&["image", "rm", "--all-nodes", "spare"]);
    assert_eq!(out.matches("removed").count(), 2, "{out}");
    assert!(all_nodes(&m)
        .iter()
        .all(|n| !names(n).iter().any(|i| i.ends_with("/spare:latest"))));
    let out = m.cli(&["image", "rm", "--all-nodes", "nosuchimage"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no node has image"),
        "{}",
        stderr(&out)
    );

    // prune: every unused image, on every node; images in use stay.
    let out = m.cli_ok(&["image", "prune", "--all-nodes", "--force"]);
    assert!(out.contains("extra"), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    for n in all_nodes(&m) {
        let held = names(&n);
        assert!(held.iter().any(|i| i.ends_with("/app:latest")), "{held:?}");
        assert!(
            !held.iter().any(|i| i.ends_with("/extra:latest")),
            "{held:?}"
        );
    }
    // The manager's own busybox (loaded by the harness, unused) went too.
    assert!(!names(&all_nodes(&m)[0])
        .iter()
        .chain(names(&all_nodes(&m)[1]).iter())
        .any(|i| i.contains("busybox")));
    // And the service is still running on both.
    assert_eq!(m.running("app").len(), 2);
}
