//! Images shared over the LAN: nodes that need the same image fetch each
//! blob over the uplink (the registry) once, and the rest from each other
//! over their mTLS node port, checking every byte against its digest.
//!
//! Each node has a containerd of its own: nodes that shared one would
//! share its content store, and no blob would need to travel at all. The
//! registry is a real `docker-registry` on loopback whose access log
//! counts what it served. Needs root, containerd, docker-registry and
//! skopeo (`bash tests/run` installs them) and the arm64 busybox of
//! `.ci/prepare-arm` (the image is a multi-arch index, as most are).

mod common;

use common::containerd::OwnContainerd;
use common::harness::*;
use common::registry::Registry;
use serde_json::Value;

/// A cluster of `n` nodes, each with its own containerd; the first one
/// is the manager. Returns the nodes with their node ids.
fn cluster(n: usize) -> (Vec<OwnContainerd>, Vec<(Daemon, String)>) {
    let cs: Vec<OwnContainerd> = (0..n).map(|_| OwnContainerd::start()).collect();
    let mut nodes = Vec::new();
    for c in &cs {
        let mut d = Daemon::new(&c.socket);
        d.spawn();
        if let Err(e) = d.wait_ready() {
            panic!("{e}");
        }
        nodes.push(d);
    }
    nodes[0].cli_ok(&["init"]);
    let token = nodes[0].join_token();
    let addr = format!("127.0.0.1:{}", nodes[0].port);
    for w in &nodes[1..] {
        w.cli_ok(&["join", "--token", &token, &addr]);
        let waddr = format!("127.0.0.1:{}", w.port);
        assert!(
            wait_until(WAIT, || nodes[0].node_status(&waddr) == "ready"),
            "node {waddr} never became ready: {:?}",
            nodes[0].nodes()
        );
    }
    let ids: Vec<String> = nodes
        .iter()
        .map(|d| nodes[0].node_id(&format!("127.0.0.1:{}", d.port)))
        .collect();
    (cs, nodes.into_iter().zip(ids).collect())
}

fn blob_digests(reg: &Registry, index_ref: &str) -> (String, String) {
    let index: Value = serde_json::from_slice(&reg.raw_manifest(index_ref)).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == host_arch())
        .expect("a manifest for this machine");
    let repo = index_ref.split(':').next().unwrap();
    let manifest: Value = serde_json::from_slice(
        &reg.raw_manifest(&format!("{repo}@{}", m["digest"].as_str().unwrap())),
    )
    .unwrap();
    (
        manifest["config"]["digest"].as_str().unwrap().to_string(),
        manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// Tasks of `service` that run, by the node id they run on.
fn running_on(d: &Daemon, service: &str) -> Vec<String> {
    d.ps(service)
        .iter()
        .filter(|t| s(t, "state") == "running")
        .map(|t| s(t, "node_id").to_string())
        .collect()
}

#[test]
fn three_nodes_starting_one_image_fetch_each_blob_from_the_registry_once() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_plain();
    reg.push_multiarch(tmp.path(), "lan/app:1", &[host_arch(), "arm64"]);
    let (config, layer) = blob_digests(&reg, "lan/app:1");
    let (_cs, nodes) = cluster(3);
    let m = &nodes[0].0;
    let image = format!("{}/lan/app:1", reg.addr());

    // All three nodes start it at once.
    m.cli_ok(&[
        "service",
        "create",
        "--name",
        "app",
        "--replicas",
        "3",
        "--stop-grace-period",
        "1s",
        &image,
        "sleep",
        "3600",
    ]);
    let ok = wait_until(WAIT, || running_on(m, "app").len() == 3);
    assert!(ok, "3 tasks must run\n{}", m.describe("app"));
    let mut on = running_on(m, "app");
    on.sort();
    on.dedup();
    assert_eq!(on.len(), 3, "one task per node: {on:?}");

    let gets = reg.blob_gets();
    assert_eq!(
        gets.get(&layer),
        Some(&1),
        "the layer crossed the uplink once: {gets:?}"
    );
    assert_eq!(
        gets.get(&config),
        Some(&1),
        "the config crossed the uplink once: {gets:?}"
    );
    assert!(
        gets.values().all(|n| *n == 1),
        "every blob was served once by the registry: {gets:?}"
    );
    // The other two got it from a peer, and say so.
    let from_peers = nodes
        .iter()
        .filter(|(d, _)| {
            let log = std::fs::read_to_string(&d.log).unwrap_or_default();
            log.lines()
                .any(|l| l.contains("pulled") && !l.contains("peer_bytes=0"))
        })
        .count();
    assert_eq!(from_peers, 2, "two nodes must have pulled from peers");
}

#[test]
fn a_peer_that_serves_a_corrupt_blob_is_caught_and_the_registry_serves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_plain();
    reg.push_multiarch(tmp.path(), "lan/bad:1", &[host_arch(), "arm64"]);
    let (_config, layer) = blob_digests(&reg, "lan/bad:1");
    let (cs, nodes) = cluster(2);
    let (m, a_id) = (&nodes[0].0, &nodes[0].1);
    let b_id = &nodes[1].1;
    let image = format!("{}/lan/bad:1", reg.addr());

    // The manager pulls it first.
    m.cli_ok(&[
        "service",
        "create",
        "--name",
        "one",
        "--constraint",
        &format!("node.id=={a_id}"),
        &image,
        "sleep",
        "3600",
    ]);
    assert!(
        wait_until(WAIT, || running_on(m, "one").len() == 1),
        "{}",
        m.describe("one")
    );
    assert_eq!(reg.blob_gets().get(&layer), Some(&1));

    // Its copy of the layer goes bad on disk (same size, other bytes).
    let hex = layer.trim_start_matches("sha256:");
    let path = std::path::Path::new(&cs[0].dir_path())
        .join("root/io.containerd.content.v1.content/blobs/sha256")
        .join(hex);
    let len = std::fs::metadata(&path)
        .expect("the layer blob on disk")
        .len();
    std::fs::write(&path, vec![0x5a; len as usize]).unwrap();

    // The other node is handed the manager as its source, finds the bytes
    // do not match the digest, and fetches the layer from the registry.
    m.cli_ok(&[
        "service",
        "create",
        "--name",
        "two",
        "--constraint",
        &format!("node.id=={b_id}"),
        &image,
        "sleep",
        "3600",
    ]);
    assert!(
        wait_until(WAIT, || running_on(m, "two").len() == 1),
        "{}",
        m.describe("two")
    );
    assert_eq!(
        reg.blob_gets().get(&layer),
        Some(&2),
        "after the corrupt copy, the registry served the layer again: {:?}",
        reg.blob_gets()
    );
    let log = std::fs::read_to_string(&nodes[1].0.log).unwrap();
    assert!(
        log.contains("did not match its digest"),
        "the node must say the peer's blob did not match"
    );
}
