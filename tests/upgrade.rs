//! Upgrade in place: a data dir written by 254a909, the last release that
//! stored format 1 (postcard), opens with this build, which keeps the
//! cluster, its services and its tasks and adopts the running containers
//! without starting duplicates (docs/formats.md).
//!
//! Needs root, a running containerd, and the 254a909 binary that
//! `bash tests/old-release.sh` builds from this repository's history
//! (`bash tests/run` does both).

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::harness::*;
use common::old_release::*;

#[test]
fn a_data_dir_of_the_last_format_1_release_upgrades_in_place() {
    // The old release makes a cluster with a service running, and a Raft
    // snapshot on disk.
    let mut d = old_daemon();
    d.cli_ok(&["init"]);
    d.cli_ok(&["cluster", "update", "--snapshot-interval", "10"]);
    d.load_image("busybox");
    d.sleeper(
        "web",
        &[
            "--replicas",
            "2",
            "--env",
            "GREETING=hello",
            "--label",
            "tier=front",
        ],
    );
    let ids = d.wait_running("web", 2);
    d.sleeper("other", &[]);
    d.wait_running("other", 1);
    let snapshot = d.data_dir.join("raft-snapshot");
    assert!(
        wait_until(WAIT, || snapshot.exists()),
        "the old release wrote no Raft snapshot\n{}",
        d.log_tail()
    );
    let pids = d.running_pids();
    let node = s(&d.cli_json(&["node", "ls"])[0], "id").to_string();
    let before = d.describe("web");
    let status = d.stop();
    assert!(status.success(), "the old release did not stop cleanly");

    // This build on the same data dir.
    d.binary = PathBuf::from(SHOAL);
    d.cli_binary = PathBuf::from(SHOAL);
    d.start_again();
    assert!(
        wait_until(WAIT, || d.running("web") == ids),
        "after the upgrade the same 2 tasks of web must be running\n{}\n{}",
        d.describe("web"),
        d.log_tail()
    );
    let names: BTreeSet<String> = d
        .services()
        .iter()
        .map(|v| s(v, "name").to_string())
        .collect();
    assert_eq!(names, BTreeSet::from(["web".into(), "other".into()]));
    let inspect = d.cli_ok(&["service", "inspect", "web"]);
    assert!(inspect.contains("GREETING=hello"), "{inspect}");
    assert!(inspect.contains("tier"), "{inspect}");
    assert_eq!(s(&d.cli_json(&["node", "ls"])[0], "id"), node, "same node");

    // A write through the upgraded store: the service scales, and the
    // loops that placed the new task have seen the old ones as running.
    d.cli_ok(&["service", "scale", "web=3"]);
    let three = d.wait_running("web", 3);
    assert!(
        three.is_superset(&ids),
        "the old tasks were kept: {three:?}"
    );
    let now = d.running_pids();
    for (id, pid) in &pids {
        assert_eq!(
            now.get(id),
            Some(pid),
            "container {id} was adopted, not restarted\nbefore:\n{before}\nafter:\n{}",
            d.describe("web")
        );
    }
    let mut all = three.clone();
    all.extend(d.running("other"));
    assert_eq!(d.ctr_containers(), all, "no duplicate container");

    // Values of both formats on disk now; a restart reads them all.
    d.restart();
    assert!(
        wait_until(WAIT, || d.running("web") == three),
        "after a restart of the upgraded node\n{}",
        d.describe("web")
    );
    assert_eq!(d.ctr_containers(), all, "no duplicate container");
}
