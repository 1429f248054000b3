//! A mixed-arch cluster on one x86 machine: an aarch64 shoal, run under
//! qemu-aarch64-static, joins an x86 manager by address (mDNS does not work
//! under qemu-user) and runs arm64 containers through binfmt. An arm64-only
//! image lands on the ARM worker, whose containers print `aarch64`; an
//! amd64-only image never does, and a task that can go nowhere says why.
//! A multi-arch index pulled from a registry runs on both, each node
//! pulling the manifest of its own platform.
//!
//! Needs root, containerd and `sudo bash .ci/prepare-arm` (the aarch64
//! build, qemu and binfmt, an arm64 busybox); CI runs it first.

mod common;

use std::path::{Path, PathBuf};

use common::harness::*;
use common::image::{build, Format, Options};
use common::registry::Registry;
use serde_json::Value;

const PREPARE: &str =
    "run the tests with `bash tests/run` (as root), which runs `.ci/prepare-arm` first";

fn required(path: PathBuf, what: &str) -> PathBuf {
    if !path.exists() {
        panic!("this test needs {what} at {}: {PREPARE}", path.display());
    }
    path
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ps(d: &Daemon, service: &str) -> Vec<Value> {
    d.ps(service)
}

#[test]
fn arm64_images_run_on_the_arm_worker_and_amd64_ones_never_do() {
    require_root_and_containerd();
    let arm_shoal = required(
        root().join("target/aarch64-unknown-linux-musl/qemu-test/shoal"),
        "an aarch64 shoal",
    );
    let arm_busybox = required(
        root().join("target/arm64-busybox/bin/busybox"),
        "an arm64 busybox",
    );
    let binfmt =
        std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap_or_default();
    assert!(
        binfmt
            .lines()
            .any(|l| l.starts_with("flags:") && l.contains('F')),
        "qemu-aarch64 must be registered with binfmt_misc with the F flag: {PREPARE}"
    );

    let manager = Daemon::cluster();
    let mut worker = Daemon::new(CONTAINERD_SOCKET);
    worker.binary = arm_shoal;
    worker.spawn();
    worker
        .wait_ready()
        .expect("the aarch64 daemon did not start under qemu");

    // An arm64-only image, on the ARM worker only; an amd64-only one on both.
    let mut arm = Options::new("armbox", "arm64", Format::Oci);
    arm.busybox = arm_busybox;
    let arm_tar = build(worker.dir(), &arm);
    worker.cli_ok(&["image", "load", arm_tar.to_str().unwrap()]);
    let x86_tar = build(worker.dir(), &Options::new("x86box", "amd64", Format::Oci));
    worker.cli_ok(&["image", "load", x86_tar.to_str().unwrap()]);
    manager.cli_ok(&["image", "load", x86_tar.to_str().unwrap()]);

    let token = manager.cli_ok(&["join-token", "worker", "-q"]);
    let addr = format!("127.0.0.1:{}", manager.port);
    let out = worker.cli(&["join", "--token", token.trim(), &addr]);
    assert!(out.status.success(), "join failed: {}", stderr(&out));
    let waddr = format!("127.0.0.1:{}", worker.port);
    let worker_row = || {
        manager
            .cli_json(&["node", "ls"])
            .as_array()
            .unwrap()
            .iter()
            .find(|n| s(n, "addr") == waddr)
            .cloned()
    };
    assert!(
        wait_until(WAIT, || worker_row()
            .is_some_and(|n| s(&n, "status") == "ready")),
        "the ARM worker never became ready:\n{}",
        worker.log_tail()
    );
    assert_eq!(s(&worker_row().unwrap(), "platform"), "linux/arm64");

    // arm64-only: lands on the ARM worker, and really runs as aarch64.
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "arm",
        "armbox",
        "sh",
        "-c",
        "uname -m; sleep 3600",
    ]);
    assert!(
        wait_until(WAIT, || worker.ctr_running().len() == 1),
        "the arm64 task did not run on the ARM worker\n{}",
        manager.describe("arm")
    );
    assert!(
        manager.ctr_running().is_empty(),
        "an arm64 task ran on the x86 manager"
    );
    assert!(
        wait_until(WAIT, || stdout(&manager.cli(&["service", "logs", "arm"]))
            .contains("aarch64")),
        "the arm64 container did not print aarch64: {}",
        stdout(&manager.cli(&["service", "logs", "arm"]))
    );

    // amd64-only: never on the ARM worker, though it has the image.
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "x86",
        "--replicas",
        "2",
        "x86box",
        "sleep",
        "3600",
    ]);
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 2),
        "the amd64 tasks did not run on the manager\n{}",
        manager.describe("x86")
    );
    assert_eq!(
        worker.ctr_running().len(),
        1,
        "an amd64 task ran on the ARM worker"
    );

    // And where it can go nowhere, its status says why: the image (pinned
    // to the one copy the nodes hold) has nothing for the worker's arm64.
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "stuck",
        "--constraint",
        "node.role==worker",
        "x86box",
        "sleep",
        "3600",
    ]);
    let why = || {
        ps(&manager, "stuck")
            .first()
            .map(|t| (s(t, "state").to_string(), s(t, "message").to_string()))
            .unwrap_or_default()
    };
    assert!(
        wait_until(WAIT, || why()
            .1
            .contains("1 node: image has no linux/arm64")),
        "expected the task to say why it cannot be placed: {:?}",
        why()
    );
    assert_eq!(why().0, "pending");

    // A multi-arch index from a registry: each node pulls the half for its
    // own platform, and the containers say which arch they run on.
    let reg = Registry::start_plain();
    let tmp = tempfile::tempdir().unwrap();
    reg.push_multiarch(tmp.path(), "multi/app:1", &[host_arch(), "arm64"]);
    let image = format!("{}/multi/app:1", reg.addr());
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "multi",
        "--mode",
        "global",
        &image,
        "sh",
        "-c",
        "echo arch=$(uname -m); sleep 3600",
    ]);
    let running = || {
        ps(&manager, "multi")
            .iter()
            .filter(|t| s(t, "state") == "running")
            .count()
    };
    assert!(
        wait_until(WAIT, || running() == 2),
        "the index did not run on both nodes\n{}",
        manager.describe("multi")
    );
    let logs = || stdout(&manager.cli(&["service", "logs", "multi"]));
    assert!(
        wait_until(WAIT, || {
            let l = logs();
            l.contains("arch=aarch64") && l.contains(&format!("arch={}", std::env::consts::ARCH))
        }),
        "each node must run its own arch of the index: {}",
        logs()
    );
    // The ARM worker pulled the arm64 manifest of the index, pinned once.
    let tasks = ps(&manager, "multi");
    let pinned: Vec<&str> = tasks.iter().map(|t| s(t, "image")).collect();
    assert!(
        pinned
            .iter()
            .all(|i| i.contains("@sha256:") && *i == pinned[0]),
        "both nodes run the one pinned index digest: {pinned:?}"
    );
}
