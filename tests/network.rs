//! Networks as objects: `network create|ls|inspect|rm`, subnets taken from
//! the cluster's pool and never shared, names unique, and a network that a
//! service uses kept until the service leaves it.

mod common;

use std::collections::{BTreeMap, BTreeSet};

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

/// The body of `GET /PATH` from a web server at `addr` (port 80), from the
/// host, with short timeouts (busybox's static wget crashes on this host).
fn fetch(addr: &str, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let t = std::time::Duration::from_secs(3);
    let sock: std::net::SocketAddr = format!("{addr}:80").parse().map_err(|e| format!("{e}"))?;
    let mut c =
        std::net::TcpStream::connect_timeout(&sock, t).map_err(|e| format!("{addr}: {e}"))?;
    c.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
    c.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut all = String::new();
    c.read_to_string(&mut all)
        .map_err(|e| format!("{addr}: {e}"))?;
    match all.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.to_string())
        }
        _ => Err(format!("{addr}/{path}: {all}")),
    }
}

/// A web server on port 80 whose index is the task's hostname and which
/// also serves its /etc/hosts and /etc/resolv.conf.
const WEB: &[&str] = &[
    "busybox",
    "sh",
    "-c",
    "mkdir -p /www && hostname > /www/index.html && cp /etc/hosts /etc/resolv.conf /www/ && exec httpd -f -p 80 -h /www",
];

fn addresses(d: &Daemon, service: &str) -> Vec<String> {
    d.ps(service)
        .iter()
        .filter(|t| s(t, "state") == "running")
        .map(|t| {
            t["addresses"][0]
                .as_str()
                .unwrap_or_else(|| panic!("a running task has no address: {t}"))
                .to_string()
        })
        .collect()
}

#[test]
fn three_replicas_bind_one_port_each_in_its_own_network() {
    let mut d = Daemon::cluster();
    let subnet = s(&d.nodes()[0], "bridge_subnet").to_string();
    let prefix = subnet.trim_end_matches(".0/24").to_string();
    assert!(!prefix.is_empty() && subnet.ends_with(".0/24"), "{subnet}");

    let mut args = vec!["service", "create", "--name", "web", "--replicas", "3"];
    args.extend_from_slice(WEB);
    d.cli_ok(&args);
    // All three listen on port 80 of the same node: each in its own
    // namespace, where docker-less host networking gave "address in use".
    let ids = d.wait_running("web", 3);
    let addrs = addresses(&d, "web");
    assert_eq!(addrs.len(), 3, "{addrs:?}");
    let distinct: std::collections::BTreeSet<&String> = addrs.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "every task has its own address: {addrs:?}"
    );
    for a in &addrs {
        assert!(
            a.starts_with(&format!("{prefix}.")),
            "{a} is not in {subnet}"
        );
        assert_ne!(a, &format!("{prefix}.1"), "the gateway is not a task's");
    }
    // Each answers at its address from the host, as itself.
    for t in d.ps("web").iter().filter(|t| s(t, "state") == "running") {
        let a = t["addresses"][0].as_str().unwrap();
        let mut body = String::new();
        assert!(
            wait_until(WAIT, || {
                body = fetch(a, "").unwrap_or_default();
                !body.is_empty()
            }),
            "task at {a} does not answer\n{}",
            d.log_tail()
        );
        assert_eq!(
            body.trim(),
            &s(t, "id")[..12],
            "{a} answered as another task"
        );
        let hosts = fetch(a, "hosts").unwrap();
        assert!(
            hosts
                .lines()
                .any(|l| l.starts_with(a) && l.contains(&s(t, "id")[..12])),
            "{hosts}"
        );
        assert!(hosts.contains("localhost"), "{hosts}");
        let resolv = fetch(a, "resolv.conf").unwrap();
        assert!(resolv.contains("nameserver"), "{resolv}");
        assert!(
            !resolv.contains("nameserver 127."),
            "a host stub is unreachable from a task: {resolv}"
        );
    }
    // The container joined a namespace of its own.
    let id = ids.iter().next().unwrap();
    let spec = d.ctr_spec(id);
    let ns = spec["linux"]["namespaces"].as_array().unwrap();
    assert!(
        ns.iter()
            .any(|n| n["type"] == "network" && n["path"].is_string()),
        "{spec}"
    );

    // A restarted daemon keeps its tasks' networking: same addresses, still
    // answering.
    d.restart();
    d.wait_running("web", 3);
    let mut again = addresses(&d, "web");
    again.sort();
    let mut before = addrs.clone();
    before.sort();
    assert_eq!(again, before);
    for a in &addrs {
        assert!(
            fetch(a, "").is_ok(),
            "{a} stopped answering after a restart"
        );
    }

    // Gone with the service: no address answers, the namespaces are freed.
    d.cli_ok(&["service", "rm", "web"]);
    let netns_dir = std::path::PathBuf::from("/run/shoal/net")
        .join(subnet.replace('/', "_"))
        .join("netns");
    assert!(
        wait_until(WAIT, || std::fs::read_dir(&netns_dir)
            .map(|r| r.count() == 0)
            .unwrap_or(true)),
        "task network namespaces left in {}: {:?}",
        netns_dir.display(),
        std::fs::read_dir(&netns_dir)
            .map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    for a in &addrs {
        assert!(fetch(a, "").is_err(), "{a} still answers");
    }
}

#[test]
fn a_task_on_the_host_network_shares_the_node_s_namespace() {
    let d = Daemon::cluster();
    d.sleeper("hosty", &["--network", "host"]);
    let ids = d.wait_running("hosty", 1);
    let spec = d.ctr_spec(ids.iter().next().unwrap());
    let ns = spec["linux"]["namespaces"].as_array().unwrap();
    assert!(!ns.iter().any(|n| n["type"] == "network"), "{spec}");
    let t = &d.ps("hosty")[0];
    assert!(t.get("addresses").is_none(), "{t}");
    let inspect = d.cli_json(&["service", "inspect", "hosty"]);
    assert_eq!(inspect["spec"]["networks"], serde_json::json!(["host"]));
}

/// A TCP port that nothing on this machine listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The first global IPv4 address of this machine, if it has one: a node
/// address that is not loopback.
fn global_address() -> Option<String> {
    let out =
        run(std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]));
    stdout(&out)
        .lines()
        .filter(|l| !l.contains(" shl"))
        .find_map(|l| {
            l.split_whitespace()
                .nth(3)?
                .split('/')
                .next()
                .map(String::from)
        })
}

/// `GET /` on `addr:port`; the body, trimmed.
fn get(addr: &str, port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let t = std::time::Duration::from_secs(3);
    let sock: std::net::SocketAddr = format!("{addr}:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut c =
        std::net::TcpStream::connect_timeout(&sock, t).map_err(|e| format!("{sock}: {e}"))?;
    c.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
    c.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut all = String::new();
    c.read_to_string(&mut all)
        .map_err(|e| format!("{sock}: {e}"))?;
    all.split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .ok_or_else(|| format!("{sock}: {all}"))
}

#[test]
fn a_published_port_answers_on_the_node_and_spreads_over_its_tasks() {
    let d = Daemon::cluster();
    let port = free_port();
    let publish = format!("published={port},target=80");
    let mut args = vec![
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--publish",
        &publish,
    ];
    args.extend_from_slice(WEB);
    d.cli_ok(&args);
    d.wait_running("web", 2);
    let hosts: std::collections::BTreeSet<String> = d
        .ps("web")
        .iter()
        .filter(|t| s(t, "state") == "running")
        .map(|t| s(t, "id")[..12].to_string())
        .collect();
    let inspect = d.cli_json(&["service", "inspect", "web"]);
    assert_eq!(
        inspect["spec"]["ports"],
        serde_json::json!([{"published": port, "target": 80, "protocol": "tcp", "mode": "ingress"}]),
        "{inspect}"
    );

    // From the node itself, on loopback and on its LAN address: every
    // answer comes from one of the tasks, and both answer in turn.
    let mut addrs = vec!["127.0.0.1".to_string()];
    addrs.extend(global_address());
    for addr in &addrs {
        let mut seen = std::collections::BTreeSet::new();
        assert!(
            wait_until(WAIT, || {
                if let Ok(body) = get(addr, port) {
                    assert!(
                        hosts.contains(&body),
                        "{addr}:{port} answered {body:?}, not one of {hosts:?}"
                    );
                    seen.insert(body);
                }
                seen.len() == 2
            }),
            "{addr}:{port} reached only {seen:?} of {hosts:?}\n{}",
            d.log_tail()
        );
    }

    // From a task, to the node's address on the bridge (its gateway): the
    // same port reaches the web tasks, itself included (hairpin).
    let subnet = s(&d.nodes()[0], "bridge_subnet").to_string();
    let gateway = subnet.replace(".0/24", ".1");
    let probe = format!(
        "while true; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {gateway} {port}; sleep 1; done"
    );
    d.cli_ok(&[
        "service", "create", "--name", "client", "busybox", "sh", "-c", &probe,
    ]);
    d.wait_running("client", 1);
    assert!(
        wait_until(WAIT, || {
            let out = d.cli(&["service", "logs", "client"]);
            hosts.iter().any(|h| stdout(&out).contains(h.as_str()))
        }),
        "a task did not reach the published port through {gateway}:{port}: {}",
        stdout(&d.cli(&["service", "logs", "client"]))
    );

    // A port is published by one service only.
    let err = one_line_error(&d.cli(&[
        "service",
        "create",
        "--name",
        "other",
        "--replicas",
        "0",
        "--publish",
        &publish,
        "busybox",
    ]));
    assert!(
        err.contains(&format!(
            "port {port}/tcp is already published by service web"
        )),
        "{err}"
    );
    let err = one_line_error(&d.cli(&[
        "service",
        "create",
        "--name",
        "hosted",
        "--replicas",
        "0",
        "--network",
        "host",
        "-p",
        "9:9",
        "busybox",
    ]));
    assert!(err.contains("host network"), "{err}");

    // Unpublished: the port no longer answers; published again on another.
    d.cli_ok(&[
        "service",
        "update",
        "--publish-rm",
        &port.to_string(),
        "web",
    ]);
    d.wait_running("web", 2);
    assert!(
        wait_until(WAIT, || get("127.0.0.1", port).is_err()),
        "port {port} still answers after --publish-rm"
    );
    let port2 = free_port();
    d.cli_ok(&[
        "service",
        "update",
        "--publish-add",
        &format!("{port2}:80"),
        "web",
    ]);
    assert!(
        wait_until(WAIT, || get("127.0.0.1", port2)
            .is_ok_and(|b| b.len() == 12)),
        "port {port2} does not answer after --publish-add\n{}",
        d.describe("web")
    );
}

/// The address of the one running task of `service`.
fn address_of(d: &Daemon, service: &str) -> String {
    d.wait_running(service, 1);
    addresses(d, service).pop().expect("an address")
}

#[test]
fn tasks_reach_the_tasks_of_their_networks_and_no_others() {
    let d = Daemon::cluster();
    d.cli_ok(&["network", "create", "front"]);
    d.cli_ok(&["network", "create", "back"]);
    let web = |name: &str, network: Option<&str>| {
        let mut args = vec!["service", "create", "--name", name];
        if let Some(n) = network {
            args.extend(["--network", n]);
        }
        args.extend_from_slice(WEB);
        d.cli_ok(&args);
    };
    web("a", Some("front"));
    web("c", Some("back"));
    web("plain", None);
    let (a, c, plain) = (
        address_of(&d, "a"),
        address_of(&d, "c"),
        address_of(&d, "plain"),
    );
    // From a task on front: a answers, c (back) and plain (no network) do
    // not. Each line says which was asked and what came back.
    let probe = format!(
        "while true; do for t in a={a} c={c} plain={plain}; do \
         echo \"${{t%%=*}}: $(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 ${{t#*=}} 80 | tail -n 1)\"; \
         done; sleep 1; done"
    );
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "b",
        "--network",
        "front",
        "busybox",
        "sh",
        "-c",
        &probe,
    ]);
    d.wait_running("b", 1);
    let logs = || stdout(&d.cli(&["service", "logs", "b"]));
    // A line `WHO: BODY` with a body: WHO answered.
    let answered = |who: &str, text: &str| {
        text.lines().any(|l| {
            l.split_once(&format!("{who}: "))
                .is_some_and(|(pre, rest)| {
                    (pre.is_empty() || pre.ends_with(' ') || pre.ends_with('|'))
                        && !rest.trim().is_empty()
                })
        })
    };
    assert!(
        wait_until(WAIT, || logs()
            .lines()
            .filter(|l| l.contains("a: "))
            .count()
            >= 3
            && answered("a", &logs())),
        "a task on front did not reach another on front:\n{}",
        logs()
    );
    let text = logs();
    assert!(
        !answered("c", &text),
        "a task on front reached one on back:\n{text}"
    );
    assert!(
        !answered("plain", &text),
        "a task on front reached one on no network:\n{text}"
    );
    // And the same from a task on no network: it reaches its peers, not a.
    let probe2 = format!(
        "while true; do for t in a={a} plain={plain}; do \
         echo \"${{t%%=*}}: $(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 ${{t#*=}} 80 | tail -n 1)\"; \
         done; sleep 1; done"
    );
    d.cli_ok(&[
        "service", "create", "--name", "e", "busybox", "sh", "-c", &probe2,
    ]);
    d.wait_running("e", 1);
    let logs2 = || stdout(&d.cli(&["service", "logs", "e"]));
    assert!(
        wait_until(WAIT, || answered("plain", &logs2())
            && logs2().lines().filter(|l| l.contains("a: ")).count() >= 3),
        "a task on no network did not reach another:\n{}",
        logs2()
    );
    assert!(
        !answered("a", &logs2()),
        "a task on no network reached one on front:\n{}",
        logs2()
    );
}

/// Lines `vip: BODY` of a probe task's logs: the bodies that came back.
fn vip_answers(d: &Daemon, probe: &str) -> (usize, BTreeSet<String>) {
    let text = stdout(&d.cli(&["service", "logs", probe]));
    let mut rounds = 0;
    let mut bodies = BTreeSet::new();
    for l in text.lines() {
        if let Some((_, body)) = l.split_once("vip: ") {
            rounds += 1;
            if !body.trim().is_empty() {
                bodies.insert(body.trim().to_string());
            }
        }
    }
    (rounds, bodies)
}

#[test]
fn a_service_s_virtual_ip_spreads_over_its_tasks_for_its_network_only() {
    let d = Daemon::cluster();
    d.cli_ok(&["network", "create", "front"]);
    let subnet = s(&d.cli_json(&["network", "inspect", "front"]), "subnet").to_string();
    let mut args = vec![
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--network",
        "front",
    ];
    args.extend_from_slice(WEB);
    d.cli_ok(&args);
    // Its VIP is an address of the network's subnet, the network's own.
    let web = d.cli_json(&["service", "inspect", "web"]);
    let vip = web["vips"][0]["addr"]
        .as_str()
        .unwrap_or_else(|| panic!("no virtual IP: {web}"))
        .to_string();
    let net: ipnet::Ipv4Net = subnet.parse().unwrap();
    let addr: std::net::Ipv4Addr = vip.parse().unwrap();
    assert!(net.contains(&addr), "VIP {vip} is not in {subnet}");
    // Another service on the network gets another one.
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "api",
        "--replicas",
        "0",
        "--network",
        "front",
        "busybox",
    ]);
    let api = d.cli_json(&["service", "inspect", "api"]);
    assert_ne!(s(&api["vips"][0], "addr"), vip, "two services share a VIP");
    d.wait_running("web", 2);

    let probe = format!(
        "while true; do echo \"vip: $(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {vip} 80 | tail -n 1)\"; sleep 0.3; done"
    );
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "probe",
        "--network",
        "front",
        "busybox",
        "sh",
        "-c",
        &probe,
    ]);
    d.cli_ok(&[
        "service", "create", "--name", "outsider", "busybox", "sh", "-c", &probe,
    ]);
    // From a task of the network: both tasks answer, by their hostnames.
    assert!(
        wait_until(WAIT, || vip_answers(&d, "probe").1.len() == 2),
        "the VIP did not reach both tasks: {:?}",
        vip_answers(&d, "probe")
    );
    // From a task on no network: the VIP answers nothing.
    assert!(
        wait_until(WAIT, || vip_answers(&d, "outsider").0 >= 3),
        "the outsider probe did not run"
    );
    let (_, bodies) = vip_answers(&d, "outsider");
    assert!(
        bodies.is_empty(),
        "a task on no network reached the VIP: {bodies:?}"
    );
}

/// The addresses each name had in the last whole round of a DNS probe's
/// logs (`== NAME` then busybox nslookup's answer, rounds ended by
/// `== end`), and whether its server said there was no such name.
fn lookups(d: &Daemon, probe: &str) -> BTreeMap<String, (BTreeSet<String>, bool)> {
    let text = stdout(&d.cli(&["service", "logs", probe]));
    let mut rounds: Vec<BTreeMap<String, (BTreeSet<String>, bool)>> = vec![BTreeMap::new()];
    let mut name = String::new();
    for l in text.lines() {
        if let Some((_, marker)) = l.split_once("== ") {
            if marker.trim() == "end" {
                rounds.push(BTreeMap::new());
            } else {
                name = marker.trim().to_string();
                rounds.last_mut().unwrap().entry(name.clone()).or_default();
            }
            continue;
        }
        let Some(entry) = rounds.last_mut().unwrap().get_mut(&name) else {
            continue;
        };
        if l.contains("NXDOMAIN") {
            entry.1 = true;
        }
        // "Address: 10.1.2.3" is an answer; the server's own line has a port.
        if let Some((_, a)) = l.split_once("Address:") {
            if a.trim().parse::<std::net::Ipv4Addr>().is_ok() {
                entry.0.insert(a.trim().to_string());
            }
        }
    }
    rounds.pop();
    rounds.pop().unwrap_or_default()
}

#[test]
fn tasks_find_the_services_of_their_networks_by_name() {
    let d = Daemon::cluster();
    d.cli_ok(&["network", "create", "front"]);
    d.cli_ok(&["network", "create", "back"]);
    let sleeper = ["busybox", "sleep", "3600"];
    let create = |name: &str, network: &str, extra: &[&str]| {
        let mut args = vec!["service", "create", "--name", name, "--network", network];
        args.extend_from_slice(extra);
        args.extend_from_slice(&sleeper);
        d.cli_ok(&args);
    };
    create("db", "front", &["--replicas", "2"]);
    create(
        "rr",
        "front",
        &["--replicas", "2", "--endpoint-mode", "dnsrr"],
    );
    create("hidden", "back", &[]);
    let db = d.cli_json(&["service", "inspect", "db"]);
    let vip = s(&db["vips"][0], "addr").to_string();
    let rr = d.cli_json(&["service", "inspect", "rr"]);
    assert_eq!(s(&rr["spec"], "endpoint_mode"), "dnsrr", "{rr}");
    assert!(
        rr["vips"].as_array().is_none_or(|v| v.is_empty()),
        "a dnsrr service has no virtual IP: {rr}"
    );
    d.wait_running("db", 2);
    d.wait_running("rr", 2);
    d.wait_running("hidden", 1);

    let probe = "cat /etc/resolv.conf; while true; do \
                 for n in db tasks.db rr hidden tasks.hidden; do echo \"== $n\"; nslookup -type=a $n 2>&1; done; \
                 echo '== end'; sleep 1; done";
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "probe",
        "--network",
        "front",
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    let want = |name: &str| -> BTreeSet<String> {
        match name {
            "db" => BTreeSet::from([vip.clone()]),
            "tasks.db" => addresses(&d, "db").into_iter().collect(),
            "rr" => addresses(&d, "rr").into_iter().collect(),
            _ => BTreeSet::new(),
        }
    };
    let right = || {
        let got = lookups(&d, "probe");
        ["db", "tasks.db", "rr"].iter().all(|n| {
            got.get(*n)
                .is_some_and(|(a, _)| *a == want(n) && !a.is_empty())
        })
    };
    assert!(
        wait_until(WAIT, right),
        "names did not resolve as expected (db VIP {vip}, db tasks {:?}, rr tasks {:?}): {:?}\n{}",
        addresses(&d, "db"),
        addresses(&d, "rr"),
        lookups(&d, "probe"),
        stdout(&d.cli(&["service", "logs", "probe"]))
    );
    let got = lookups(&d, "probe");
    for name in ["hidden", "tasks.hidden"] {
        let (addrs, nx) = &got[name];
        assert!(
            addrs.is_empty() && *nx,
            "{name}, on a network the probe is not on, resolved: {:?}",
            got[name]
        );
    }
    let logs = stdout(&d.cli(&["service", "logs", "probe"]));
    assert!(
        logs.contains("nameserver 127.0.0.11"),
        "the task does not ask the node's DNS server:\n{logs}"
    );

    // A task that goes is gone from tasks.db, and its replacement is there.
    d.cli_ok(&["service", "scale", "db=1"]);
    assert!(
        wait_until(WAIT, || {
            let now = addresses(&d, "db");
            now.len() == 1
                && lookups(&d, "probe")
                    .get("tasks.db")
                    .is_some_and(|(a, _)| a.iter().eq(now.iter()))
        }),
        "tasks.db did not follow the scale down: {:?} vs {:?}",
        lookups(&d, "probe").get("tasks.db"),
        addresses(&d, "db")
    );
}

/// Where the node's conntrack sends the UDP flow from local port `from`
/// (the reply's source: the task the flow was given to), if it has one.
fn udp_flow_backend(from: u16) -> Option<String> {
    let out = std::process::Command::new("conntrack")
        .args(["-L", "-p", "udp", "--orig-port-src", &from.to_string()])
        .output()
        .expect("run conntrack (package conntrack)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?;
    // The original tuple's src= comes first, the reply's second.
    let reply_src = line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("src="))
        .nth(1)?;
    Some(reply_src.to_string())
}

/// A UDP client that keeps sending to a published port keeps going to the
/// task it was given, until that task goes: then its next datagrams go to
/// a task that is there (the node forgets the flow), not on to nowhere.
#[test]
fn a_udp_client_moves_on_when_its_task_goes() {
    let d = Daemon::cluster();
    let port = free_port();
    let publish = format!("published={port},target=9000,protocol=udp");
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "u",
        "--replicas",
        "2",
        "--publish",
        &publish,
        "--stop-grace-period",
        "1s",
        "busybox",
        "sleep",
        "3600",
    ]);
    d.wait_running("u", 2);
    let slot_address = |slot: u64| -> Option<String> {
        d.ps("u")
            .iter()
            .find(|t| {
                t["slot"] == slot
                    && s(t, "state") == "running"
                    && s(t, "desired_state") == "running"
            })
            .and_then(|t| t["addresses"][0].as_str().map(String::from))
    };
    let (one, two) = (slot_address(1).unwrap(), slot_address(2).unwrap());

    // Clients (each its own flow) until one is given slot 2's task, which
    // the scale down below removes. Each keeps sending every 100 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut pinned = None;
    for _ in 0..20 {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let from = sock.local_addr().unwrap().port();
        let stop2 = stop.clone();
        senders.push(std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = sock.send_to(b"x", ("127.0.0.1", port));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }));
        assert!(
            wait_until(WAIT, || udp_flow_backend(from).is_some()),
            "no conntrack flow for the client on port {from}"
        );
        if udp_flow_backend(from).as_deref() == Some(two.as_str()) {
            pinned = Some(from);
            break;
        }
    }
    let from = pinned.expect("20 clients, none given slot 2's task");

    d.cli_ok(&["service", "scale", "u=1"]);
    assert!(
        wait_until(WAIT, || udp_flow_backend(from).as_deref()
            == Some(one.as_str())),
        "the client still goes to {:?} after its task ({two}) went, not to {one}",
        udp_flow_backend(from)
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
}

/// A task with a health check is behind its published port only once it
/// is healthy: its server answers "early" before, and no request may
/// ever get that answer.
#[test]
fn a_published_port_sends_nothing_to_a_task_until_it_is_healthy() {
    let d = Daemon::cluster();
    let port = free_port();
    let publish = format!("published={port},target=80");
    d.cli_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--publish",
        &publish,
        "--health-cmd",
        "test -f /www/ready",
        "--health-interval",
        "1s",
        "--health-start-period",
        "30s",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo early > /www/index.html && \
         (sleep 5; echo ready > /www/index.html; touch /www/ready) & \
         exec httpd -f -p 80 -h /www",
    ]);
    let mut tried_while_starting = 0;
    let mut answer = String::new();
    let ok = wait_until(std::time::Duration::from_secs(60), || {
        let starting = d.ps("web").iter().any(|t| s(t, "state") == "starting");
        match get("127.0.0.1", port) {
            Ok(body) => {
                assert_eq!(body, "ready", "the port reached a task not yet healthy");
                answer = body;
                true
            }
            Err(_) => {
                tried_while_starting += usize::from(starting);
                false
            }
        }
    });
    assert!(ok, "the port never answered\n{}", d.describe("web"));
    assert!(
        tried_while_starting > 0,
        "the port was never tried while the task was starting\n{}",
        d.describe("web")
    );
    assert!(
        wait_until(WAIT, || d.ps("web")[0]["health"] == "healthy"),
        "{}",
        d.describe("web")
    );
}
