//! Networks as objects: `network create|ls|inspect|rm`, subnets taken from
//! the cluster's pool and never shared, names unique, and a network that a
//! service uses kept until the service leaves it.

mod common;

use common::harness::*;
use serde_json::Value;

fn networks(d: &Daemon) -> Vec<Value> {
    d.cli_json(&["network", "ls"])
        .as_array()
        .cloned()
        .expect("network ls is a list")
}

#[test]
fn networks_are_created_listed_and_removed_with_their_subnets() {
    let d = Daemon::start();
    d.cli_ok(&["init", "--default-addr-pool", "10.77.0.0/16"]);

    // The predefined networks are there from the start.
    let names: Vec<String> = networks(&d)
        .iter()
        .map(|n| s(n, "name").to_string())
        .collect();
    assert_eq!(names, ["bridge", "host"]);

    // An overlay gets the next free /24 of the pool: the node's own bridge
    // holds the first.
    let id = d
        .cli_ok(&["network", "create", "backend"])
        .trim()
        .to_string();
    let n = d.cli_json(&["network", "inspect", "backend"]);
    assert_eq!(s(&n, "id"), id);
    assert_eq!(s(&n, "driver"), "overlay");
    assert_eq!(s(&n, "subnet"), "10.77.1.0/24", "{n}");
    assert_eq!(s(&n, "gateway"), "10.77.1.1");
    assert_eq!(n["encrypted"], true, "overlays are encrypted by default");
    let node = &d.nodes()[0];
    assert_eq!(s(node, "bridge_subnet"), "10.77.0.0/24", "{node}");

    let plain = d.cli_ok(&[
        "network",
        "create",
        "--opt",
        "encrypted=false",
        "--label",
        "team=a",
        "lan",
    ]);
    assert!(!plain.trim().is_empty());
    let lan = d.cli_json(&["network", "inspect", "lan"]);
    assert_eq!(lan["encrypted"], false);
    assert_eq!(s(&lan, "subnet"), "10.77.2.0/24");
    assert_eq!(lan["labels"]["team"], "a");

    // An explicit subnet that overlaps is refused, naming what holds it.
    let err = one_line_error(&d.cli(&["network", "create", "--subnet", "10.77.1.128/25", "other"]));
    assert!(
        err.contains("overlaps 10.77.1.0/24 of network backend"),
        "{err}"
    );
    let err = one_line_error(&d.cli(&["network", "create", "--subnet", "10.77.0.0/16", "other"]));
    assert!(err.contains("overlaps"), "{err}");
    // One outside the pool is fine.
    d.cli_ok(&[
        "network",
        "create",
        "--subnet",
        "192.168.240.0/24",
        "--gateway",
        "192.168.240.254",
        "outside",
    ]);
    let o = d.cli_json(&["network", "inspect", "outside"]);
    assert_eq!(s(&o, "gateway"), "192.168.240.254");

    // Names are unique, and bad input is named.
    let err = one_line_error(&d.cli(&["network", "create", "backend"]));
    assert!(err.contains("already exists"), "{err}");
    for (args, want) in [
        (vec!["network", "create", "host"], "reserved"),
        (
            vec!["network", "create", "bad/name"],
            "invalid network name",
        ),
        (
            vec!["network", "create", "--subnet", "10.1.2.3/24", "x"],
            "host bits",
        ),
        (
            vec!["network", "create", "--subnet", "300.1.2.0/24", "x"],
            "300.1.2.0/24",
        ),
        (
            vec!["network", "create", "--gateway", "10.9.9.1", "x"],
            "--gateway needs --subnet",
        ),
        (
            vec!["network", "create", "--opt", "mtu=9000", "x"],
            "unknown option",
        ),
        (
            vec![
                "network",
                "create",
                "--driver",
                "bridge",
                "--opt",
                "encrypted=true",
                "x",
            ],
            "encrypted",
        ),
    ] {
        let err = one_line_error(&d.cli(&args));
        assert!(err.contains(want), "`shoal {}`: {err}", args.join(" "));
    }

    // A service joins it by name; the network then cannot be removed.
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "api",
        "--replicas",
        "0",
        "--network",
        "backend",
        "busybox",
    ]);
    let err = one_line_error(&d.cli(&["network", "rm", "backend"]));
    assert!(err.contains("in use by service api"), "{err}");
    let err = one_line_error(&d.cli(&[
        "service",
        "create",
        "--name",
        "lost",
        "--replicas",
        "0",
        "--network",
        "nope",
        "busybox",
    ]));
    assert!(err.contains("network nope not found"), "{err}");
    let err = one_line_error(&d.cli(&[
        "service",
        "create",
        "--name",
        "mixed",
        "--replicas",
        "0",
        "--network",
        "host",
        "--network",
        "lan",
        "busybox",
    ]));
    assert!(err.contains("host network cannot be combined"), "{err}");
    let api = d.cli_json(&["service", "inspect", "api"]);
    assert_eq!(api["spec"]["networks"], serde_json::json!([id]), "{api}");
    let ls = networks(&d);
    let backend = ls
        .iter()
        .find(|n| s(n, "name") == "backend")
        .expect("listed");
    assert_eq!(backend["services"], serde_json::json!(["api"]));

    d.cli_ok(&["service", "rm", "api"]);
    d.cli_ok(&["network", "rm", "backend", "lan", "outside"]);
    let names: Vec<String> = networks(&d)
        .iter()
        .map(|n| s(n, "name").to_string())
        .collect();
    assert_eq!(names, ["bridge", "host"]);
    let err = one_line_error(&d.cli(&["network", "rm", "bridge"]));
    assert!(err.contains("predefined"), "{err}");
    // The freed subnet is given again.
    d.cli_ok(&["network", "create", "again"]);
    assert_eq!(
        s(&d.cli_json(&["network", "inspect", "again"]), "subnet"),
        "10.77.1.0/24"
    );
}

#[test]
fn init_refuses_a_bad_pool() {
    let d = Daemon::start();
    for (pool, want) in [
        ("10.0.0.0/30", "between /8 and /24"),
        ("nonsense", "nonsense"),
    ] {
        let err = one_line_error(&d.cli(&["init", "--default-addr-pool", pool]));
        assert!(err.contains(want), "{pool}: {err}");
    }
    d.cli_ok(&["init", "--default-addr-pool", "10.78.0.0/20"]);
}
