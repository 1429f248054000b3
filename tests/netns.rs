//! Hosts on a LAN, built from network namespaces on a bridge
//! (`common/netns.rs`): each daemon has its own IP, listens on
//! `IP:4290`, and finds managers over real multicast. Proves, with real
//! daemons and containers:
//! - a join with no address, over mDNS;
//! - a node whose link goes down is marked down and its tasks move (and it
//!   drops the moved task once its link is back);
//! - a worker finds its manager again over mDNS after the manager's IP
//!   changes;
//! - of three managers, a leader cut off from the others cannot commit,
//!   while the other two elect a leader and take writes; once the cable
//!   is back, all three agree again and nothing acknowledged is lost;
//! - tasks on two hosts reach each other's network over WireGuard only;
//! - a network in clear crosses by VXLAN, an encrypted one never does;
//! - a port published in ingress mode answers on a host that runs none of
//!   its tasks (the routing mesh), and a host that goes down leaves it.
//!
//! Needs root, iproute2, nsenter and a running containerd
//! (`bash .ci/start-containerd`). Run with `--test-threads=1` on a small
//! machine.

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use common::harness::*;
use common::managers::*;
use netns::{Lan, NetDaemon};

/// The service's tasks meant to run (desired state running), as
/// (node id, state, container id).
fn live_tasks(manager: &NetDaemon, service: &str) -> Vec<(String, String, String)> {
    manager
        .ps(service)
        .iter()
        .filter(|t| s(t, "desired_state") == "running")
        .map(|t| {
            (
                s(t, "node_id").to_string(),
                s(t, "state").to_string(),
                container_id(t),
            )
        })
        .collect()
}

/// `shoal join --token T` with no address: the worker's daemon browses
/// mDNS on its host. Asserts it joined and said it found the manager so.
fn join_by_mdns(worker: &NetDaemon, manager: &NetDaemon) {
    let t = manager.join_token();
    let started = Instant::now();
    let out = worker.cli(&["join", "--token", &t]);
    assert!(
        out.status.success(),
        "join with no address failed: {}{}\n{}",
        stdout(&out),
        stderr(&out),
        worker.log_tail()
    );
    let text = stdout(&out);
    assert!(
        text.contains("found by mDNS") && text.contains(&manager.addr),
        "join should say it found the manager at {} by mDNS:\n{text}",
        manager.addr
    );
    eprintln!("join by mDNS took {:?}", started.elapsed());
}

/// A manager on h1 and a worker on h2 that joined over mDNS, both with the
/// busybox image, both ready.
fn manager_and_worker(lan: &Lan) -> (NetDaemon, NetDaemon) {
    let manager = lan.host(1).spawn_daemon();
    manager.cli_ok(&["init"]);
    manager.load_image("busybox");
    let worker = lan.host(2).spawn_daemon();
    worker.load_image("busybox");
    join_by_mdns(&worker, &manager);
    assert!(
        wait_until(WAIT, || manager.node_status(&worker.addr) == "ready"),
        "the worker never became ready: {:?}\n{}",
        manager.nodes(),
        worker.log_tail()
    );
    (manager, worker)
}

#[test]
fn a_worker_joins_with_no_address_over_mdns() {
    let t0 = Instant::now();
    let lan = Lan::new(2);
    let manager = lan.host(1).spawn_daemon();
    let init = manager.cli_ok(&["init"]);
    assert!(init.contains(&manager.addr), "{init}");
    let worker = lan.host(2).spawn_daemon();
    join_by_mdns(&worker, &manager);

    let ready = || {
        let ns = manager.nodes();
        ns.len() == 2 && ns.iter().all(|n| s(n, "status") == "ready")
    };
    assert!(
        wait_until(WAIT, ready),
        "expected 2 ready nodes: {:?}",
        manager.nodes()
    );
    let ns = manager.nodes();
    let mut addrs: Vec<&str> = ns.iter().map(|n| s(n, "addr")).collect();
    addrs.sort();
    assert_eq!(
        addrs,
        [manager.addr.as_str(), worker.addr.as_str()],
        "{ns:?}"
    );
    eprintln!("took {:?}", t0.elapsed());
}

#[test]
fn a_node_whose_link_goes_down_is_marked_down_and_its_tasks_move() {
    let t0 = Instant::now();
    let lan = Lan::new(2);
    let (manager, worker) = manager_and_worker(&lan);
    manager.sleeper("web", &["--replicas", "2", "--stop-grace-period", "1s"]);
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 1
            && worker.ctr_running().len() == 1),
        "expected one container on each host; h1 runs {:?}, h2 runs {:?}\n{}",
        manager.ctr_running(),
        worker.ctr_running(),
        manager.describe("web")
    );

    lan.link_down(2);
    let cut = Instant::now();
    assert!(
        wait_until(WAIT, || manager.node_status(&worker.addr) == "down"),
        "h2 was never marked down: {:?}",
        manager.nodes()
    );
    let marked_down = cut.elapsed();
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 2),
        "the task of h2 was not replaced on h1\n{}",
        manager.describe("web")
    );
    // Both replicas on h1, in containerd and in what shoal reports. (The
    // replaced task on h2 keeps its last known state until h2 is heard
    // from again, as in Swarm: only tasks meant to run count.)
    let h1 = manager.node_id(&manager.addr);
    let on_h1 = || {
        let live = live_tasks(&manager, "web");
        live.len() == 2
            && live
                .iter()
                .all(|(node, state, _)| *node == h1 && state == "running")
            && live
                .iter()
                .map(|(_, _, c)| c.clone())
                .collect::<BTreeSet<_>>()
                == manager.ctr_running()
    };
    assert!(
        wait_until(WAIT, on_h1),
        "expected both replicas running on h1 ({h1}); shoal: {:?}, containerd on h1: {:?}\n{}",
        live_tasks(&manager, "web"),
        manager.ctr_running(),
        manager.describe("web")
    );
    let moved = cut.elapsed();
    eprintln!("link down: marked down after {marked_down:?}, both replicas on h1 after {moved:?}");
    // Loose bound for a busy 2-core machine: the goal is 5 s, bench/
    // measures it.
    assert!(moved < Duration::from_secs(30), "took {moved:?}");

    // Keep the cable out longer than the HTTP/2 keepalive (5 s + 5 s), so
    // the worker's session is lost for good and it must reconnect. Then
    // cable back in: h2 is ready again and drops the task that moved.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(cut.elapsed()));
    lan.link_up(2);
    let plugged = Instant::now();
    assert!(
        wait_until(WAIT, || manager.node_status(&worker.addr) == "ready"),
        "h2 did not come back: {:?}\n{}",
        manager.nodes(),
        worker.log_tail()
    );
    assert!(
        wait_until(WAIT, || worker.ctr_running().is_empty()),
        "h2 kept running a task that was replaced: {:?}\n{}",
        worker.ctr_running(),
        manager.describe("web")
    );
    assert_eq!(manager.ctr_running().len(), 2);
    eprintln!(
        "link up: h2 ready and its stale task gone after {:?}",
        plugged.elapsed()
    );
    eprintln!("took {:?}", t0.elapsed());
}

#[test]
fn a_worker_finds_its_manager_again_over_mdns_after_the_manager_ip_changes() {
    let t0 = Instant::now();
    let lan = Lan::new(2);
    let (mut manager, worker) = manager_and_worker(&lan);
    let old = manager.addr.clone();

    // The manager goes away, and comes back at another address (same data
    // dir): all the worker knows is now stale.
    let status = manager.stop();
    assert!(status.success(), "manager did not stop cleanly: {status}");
    lan.set_ip(1, lan.addr(11));
    manager.start();
    let moved = Instant::now();
    assert_ne!(manager.addr, old);
    assert_eq!(manager.addr, lan.host(1).addr());

    // Only a worker with a live session can run this: the task can only
    // be placed on the worker and reach it through the session.
    manager.sleeper("after", &["--constraint", "node.role==worker"]);
    assert!(
        wait_until(WAIT, || worker.ctr_running().len() == 1
            && manager.running("after") == worker.ctr_running()),
        "the task never ran on the worker: h2 runs {:?}\n{}\n{}",
        worker.ctr_running(),
        manager.describe("after"),
        worker.log_tail()
    );
    let back = moved.elapsed();
    assert_eq!(
        manager.node_status(&worker.addr),
        "ready",
        "{:?}",
        manager.nodes()
    );
    assert!(
        manager.ctr_running().is_empty(),
        "the task ran on the manager: {:?}",
        manager.ctr_running()
    );
    // And it was mDNS that told the worker where the manager went.
    let log = std::fs::read_to_string(&worker.log).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("found managers over mDNS") && l.contains(&manager.addr)),
        "the worker did not find {} over mDNS\n{}",
        manager.addr,
        worker.log_tail()
    );
    // The cluster hands out the new address, not the stale one: `node ls`
    // shows it, and the worker keeps it for its next reconnect.
    let me = manager
        .nodes()
        .into_iter()
        .find(|n| s(n, "role") == "manager")
        .expect("manager row");
    assert_eq!(s(&me, "addr"), manager.addr, "{me:?}");
    assert!(
        wait_until(WAIT, || {
            std::fs::read_to_string(worker.data_dir.join("managers.json"))
                .unwrap_or_default()
                .contains(&manager.addr)
        }),
        "the worker does not know the manager's new address"
    );
    eprintln!(
        "manager moved {old} -> {}: task running on the worker {back:?} after the restart",
        manager.addr
    );
    eprintln!("took {:?}", t0.elapsed());
}

/// `service create --name NAME --replicas 0 busybox` on `m`: a write to
/// the store and nothing else.
fn create_empty(m: &NetDaemon, name: &str) -> Output {
    m.cli(&[
        "service",
        "create",
        "--name",
        name,
        "--replicas",
        "0",
        "busybox",
    ])
}

/// Whether `m` answers `node ls` with one leader, `leader` (a node id), and
/// every other manager reachable, `managers` in all.
fn agrees_on(m: &NetDaemon, leader: &str, managers: usize) -> bool {
    let Some(nodes) = try_nodes(m) else {
        return false;
    };
    let mut statuses: Vec<(&str, &str)> = nodes
        .iter()
        .filter(|n| s(n, "role") == "manager")
        .map(|n| (s(n, "manager_status"), s(n, "id")))
        .collect();
    statuses.sort();
    statuses.len() == managers
        && statuses[0] == ("leader", leader)
        && statuses[1..].iter().all(|(st, _)| *st == "reachable")
}

/// A manager on each of the LAN's three hosts (h1 inits, h2 and h3 join
/// it by address with the manager token), all agreeing on who leads.
/// Returns them and the leader's node id.
fn three_managers_on(lan: &Lan) -> (Vec<NetDaemon>, String) {
    let mut ms = vec![lan.host(1).spawn_daemon()];
    ms[0].cli_ok(&["init"]);
    ms[0].load_image("busybox");
    let token = ms[0].manager_token();
    for i in 2..=3 {
        let m = lan.host(i).spawn_daemon();
        m.load_image("busybox");
        join_manager_at(&m, &token, &ms[0].addr);
        ms.push(m);
    }
    let leader = leader_id(&ms[0]);
    for m in &ms {
        assert!(
            wait_until(WAIT, || agrees_on(m, &leader, 3)),
            "expected {leader} to lead and two reachable managers, got {:?}\n{}",
            try_nodes(m),
            m.log_tail()
        );
    }
    (ms, leader)
}

#[test]
fn a_partitioned_leader_cannot_commit_and_the_majority_carries_on() {
    let t0 = Instant::now();
    let lan = Lan::new(3);
    let (ms, leader) = three_managers_on(&lan);
    let out = create_empty(&ms[0], "before");
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<String> = ms.iter().map(|m| self_id(m)).collect();
    let old = ids
        .iter()
        .position(|id| *id == leader)
        .expect("the leader is one of the managers");
    let majority: Vec<&NetDaemon> = (0..3).filter(|i| *i != old).map(|i| &ms[i]).collect();

    // Cut the leader's cable.
    lan.link_down(old + 1);
    let cut = Instant::now();
    // A write sent to a follower at once waits for the other two to elect
    // one of them (about 2 s; a write waits up to 5 s for a leader), and
    // goes through. So does one on the other follower, then.
    let out = create_empty(majority[0], "during");
    assert!(
        out.status.success(),
        "a write on a follower failed {:?} after the leader's cable was cut: {}\n{}",
        cut.elapsed(),
        stderr(&out),
        majority[0].log_tail()
    );
    eprintln!(
        "leader h{} cut off: a write on a follower went through after {:?}",
        old + 1,
        cut.elapsed()
    );
    let mut new = String::new();
    assert!(
        wait_until(WAIT, || {
            new = try_leader(majority[0]).unwrap_or_default();
            !new.is_empty() && new != leader
        }),
        "the majority shows no new leader: {new:?}\n{}",
        majority[0].log_tail()
    );
    assert!(ids.contains(&new), "the new leader {new} is not a manager");
    let out = create_empty(majority[1], "during-2");
    assert!(out.status.success(), "{}", stderr(&out));
    let want: BTreeSet<String> = ["before", "during", "during-2"].map(String::from).into();
    for m in &majority {
        assert_eq!(service_names(m), want, "services on the majority");
    }

    // The old leader cannot commit: its write is refused, and says why.
    let started = Instant::now();
    let out = create_empty(&ms[old], "stale");
    let err = one_line_error(&out);
    assert!(
        err.contains("no quorum: 1 of 3 managers reachable"),
        "the cut-off leader's write failed unclearly: {err}"
    );
    eprintln!(
        "cut-off leader refused a write after {:?}",
        started.elapsed()
    );

    // Cable back in: the old leader follows the new one, catches up and
    // drops what it could not commit; all three agree on one leader.
    lan.link_up(old + 1);
    let plugged = Instant::now();
    for m in &ms {
        assert!(
            wait_until(WAIT, || agrees_on(m, &new, 3)),
            "expected {new} to lead and two reachable managers, got {:?}\n{}",
            try_nodes(m),
            m.log_tail()
        );
    }
    let healed = plugged.elapsed();
    let all_list = |want: &BTreeSet<String>| {
        for (i, m) in ms.iter().enumerate() {
            assert!(
                wait_until(WAIT, || try_service_names(m).as_ref() == Some(want)),
                "h{} lists {:?}, expected {want:?}\n{}",
                i + 1,
                try_service_names(m),
                m.log_tail()
            );
        }
    };
    all_list(&want);
    // And the refused write stays refused: a write made after it, through
    // the old leader, reaches every manager, and the log is in order, so
    // had "stale" ever been committed, it would be there before "after".
    let out = create_empty(&ms[old], "after");
    assert!(out.status.success(), "{}", stderr(&out));
    let mut want = want;
    want.insert("after".to_string());
    all_list(&want);
    eprintln!(
        "cable back: all agree after {healed:?}; took {:?}",
        t0.elapsed()
    );
}

/// Raft does not freeze a manager's address into the membership: a
/// follower that comes back at another IP (same data dir, as after a new
/// DHCP lease) announces it, and the leader replicates to it there.
#[test]
fn a_manager_that_moves_to_another_ip_is_reached_there() {
    let lan = Lan::new(3);
    let (mut ms, leader) = three_managers_on(&lan);
    let ids: Vec<String> = ms.iter().map(|m| self_id(m)).collect();
    let l = ids.iter().position(|id| *id == leader).expect("a leader");
    let f = (0..3).rev().find(|i| *i != l).expect("a follower");
    let old = ms[f].addr.clone();

    let status = ms[f].stop();
    assert!(
        status.success(),
        "h{} did not stop cleanly: {status}",
        f + 1
    );
    lan.set_ip(f + 1, lan.addr(21 + f as u8));
    ms[f].start();
    let new = ms[f].addr.clone();
    assert_ne!(new, old);

    // The leader lists it at its new address, as a reachable manager.
    assert!(
        wait_until(WAIT, || try_nodes(&ms[l]).is_some_and(|nodes| nodes
            .iter()
            .any(|n| s(n, "id") == ids[f]
                && s(n, "addr") == new
                && s(n, "manager_status") == "reachable"))),
        "the leader does not list h{} as reachable at {new}: {:?}\n{}",
        f + 1,
        try_nodes(&ms[l]),
        ms[f].log_tail()
    );
    // A write on the leader reaches it: its current read waits until it
    // has applied what the leader committed, which only replication to
    // the new address can bring.
    let out = create_empty(&ms[l], "after-move");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(WAIT, || try_service_names(&ms[f])
            .is_some_and(|names| names.contains("after-move"))),
        "h{} never saw the write made after its move\n{}",
        f + 1,
        ms[f].log_tail()
    );
    let now = leader_id(&ms[l]);
    for m in &ms {
        assert!(
            wait_until(WAIT, || agrees_on(m, &now, 3)),
            "the managers do not agree after the move: {:?}",
            try_nodes(m)
        );
    }
}

/// A web server in its own network namespace: answers `GET /` with its
/// hostname.
const WEB: &str = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www";

/// The address of the one running task of `service`, on whichever node
/// runs it, once it runs.
fn task_address(m: &NetDaemon, service: &str) -> String {
    let running = || m.ps(service).into_iter().find(|t| t["state"] == "running");
    assert!(
        wait_until(WAIT, || running().is_some()),
        "{service} never ran: {:?}",
        m.ps(service)
    );
    let t = running().unwrap();
    t["addresses"][0]
        .as_str()
        .unwrap_or_else(|| panic!("a running task has no address: {t}"))
        .to_string()
}

/// Packets that arrived on a host's LAN interface.
#[derive(Debug, Clone, Copy, Default)]
struct OnLan {
    /// Addressed to a task: routed in clear, not through an overlay.
    clear: u64,
    /// For WireGuard's port.
    wireguard: u64,
    /// For VXLAN's port (networks created with `encrypted=false`).
    vxlan: u64,
}

/// Packet counters on a host's LAN interface (`eth0`), in a table of the
/// test's own.
fn count_on_lan<'a>(host: &'a netns::Host, pool: &str) -> impl Fn() -> OnLan + 'a {
    let rules = format!(
        "table inet shoaltest_lan {{\n\
         \tchain pre {{\n\
         \t\ttype filter hook prerouting priority -300; policy accept;\n\
         \t\tiifname \"eth0\" ip daddr {pool} counter name clear\n\
         \t\tiifname \"eth0\" udp dport 51820 counter name wireguard\n\
         \t\tiifname \"eth0\" udp dport 4789 counter name vxlan\n\
         \t}}\n\
         \tcounter clear {{ }}\n\
         \tcounter wireguard {{ }}\n\
         \tcounter vxlan {{ }}\n\
         }}\n"
    );
    let mut child = host
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft refused the counters");
    move || {
        let out = host
            .command("nft")
            .args(["-j", "list", "counters", "table", "inet", "shoaltest_lan"])
            .output()
            .expect("nft list counters");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut seen = OnLan::default();
        for item in v["nftables"].as_array().into_iter().flatten() {
            let c = &item["counter"];
            let n = c["packets"].as_u64().unwrap_or(0);
            match c["name"].as_str() {
                Some("clear") => seen.clear = n,
                Some("wireguard") => seen.wireguard = n,
                Some("vxlan") => seen.vxlan = n,
                _ => {}
            }
        }
        seen
    }
}

/// Two hosts: a task on the manager's host reaches a task of its network
/// on the worker's host by its address and by its service's virtual IP,
/// over the WireGuard overlay, and not a task of another network there; and nothing addressed to a task
/// crosses the LAN in clear: what the worker's LAN interface receives for
/// the tasks' pool is none, what it receives on WireGuard's port is not.
#[test]
fn tasks_on_two_hosts_reach_their_network_over_wireguard_only() {
    let lan = Lan::new(2);
    let (manager, mut worker) = manager_and_worker(&lan);
    let pool = manager.addr_pool.clone();
    let counters = count_on_lan(lan.host(2), &pool);
    let (mid, wid) = (
        manager.node_id(&manager.addr),
        manager.node_id(&worker.addr),
    );
    manager.cli_ok(&["network", "create", "front"]);
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--network",
        "front",
        "--constraint",
        &format!("node.id=={wid}"),
        "busybox",
        "sh",
        "-c",
        WEB,
    ]);
    // The same server on another network, on the same host.
    manager.cli_ok(&["network", "create", "back"]);
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "other",
        "--network",
        "back",
        "--constraint",
        &format!("node.id=={wid}"),
        "busybox",
        "sh",
        "-c",
        WEB,
    ]);
    let web = task_address(&manager, "web");
    let other = task_address(&manager, "other");
    let inspect = manager.cli_json(&["service", "inspect", "web"]);
    let vip = inspect["vips"][0]["addr"]
        .as_str()
        .unwrap_or_else(|| panic!("web has no virtual IP: {inspect}"))
        .to_string();
    let probe = format!(
        "while true; do for t in web={web} other={other} vip={vip}; do \
         echo \"${{t%%=*}}: $(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 ${{t#*=}} 80 | tail -n 1)\"; \
         done; echo \"dns: $(nslookup -type=a tasks.web 2>&1 | grep -c 'Address: {web}$')\"; \
         echo \"vipdns: $(nslookup -type=a web 2>&1 | grep -c 'Address: {vip}$')\"; \
         echo \"otherdns: $(nslookup -type=a other 2>&1 | grep -c NXDOMAIN)\"; sleep 1; done"
    );
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "probe",
        "--network",
        "front",
        "--constraint",
        &format!("node.id=={mid}"),
        "busybox",
        "sh",
        "-c",
        &probe,
    ]);
    let probe_addr = task_address(&manager, "probe");
    // The two tasks are on different hosts, so different subnets.
    assert_ne!(
        web.rsplit_once('.').map(|p| p.0),
        probe_addr.rsplit_once('.').map(|p| p.0),
        "both tasks on one node's subnet"
    );
    let logs = || stdout(&manager.cli(&["service", "logs", "probe"]));
    let answered = |who: &str, text: &str| {
        text.lines().any(|l| {
            l.split_once(&format!("{who}: "))
                .is_some_and(|(_, rest)| !rest.trim().is_empty())
        })
    };
    assert!(
        wait_until(WAIT, || answered("web", &logs())),
        "the probe on h1 never reached web on h2 ({web}):\n{}\nmanager:\n{}\nworker:\n{}",
        logs(),
        manager.log_tail(),
        worker.log_tail()
    );
    // Its virtual IP, from the other host: to the same task.
    assert!(
        wait_until(WAIT, || answered("vip", &logs())),
        "the probe on h1 never reached web's VIP {vip}:\n{}",
        logs()
    );
    // Its name, from the other host: the node's DNS server knows the
    // tasks of the network on every node.
    assert!(
        wait_until(WAIT, || logs().lines().any(|l| l.ends_with(" dns: 1"))),
        "tasks.web did not resolve to {web} from h1:\n{}",
        logs()
    );
    // `web` is its virtual IP; `other`, a service of a network the probe
    // is not on, is no name at all.
    assert!(
        wait_until(WAIT, || logs().lines().any(|l| l.ends_with("vipdns: 1"))),
        "web did not resolve to its VIP {vip} from h1:\n{}",
        logs()
    );
    assert!(
        wait_until(WAIT, || logs().lines().any(|l| l.ends_with("otherdns: 1"))),
        "other (on another network) was not NXDOMAIN from h1:\n{}",
        logs()
    );
    // A few rounds more, then: the task on the other network never
    // answered across the overlay.
    let rounds = |t: &str| t.lines().filter(|l| l.contains("other: ")).count();
    let seen = rounds(&logs());
    assert!(
        wait_until(WAIT, || rounds(&logs()) >= seen + 3),
        "the probe stopped:\n{}",
        logs()
    );
    assert!(
        !answered("other", &logs()),
        "a task on front reached one on back on another node:\n{}",
        logs()
    );
    let OnLan {
        clear,
        wireguard,
        vxlan,
    } = counters();
    assert_eq!(vxlan, 0, "{vxlan} packets crossed by VXLAN, none should");
    assert_eq!(
        clear, 0,
        "{clear} packets for the tasks' pool crossed the LAN in clear"
    );
    assert!(
        wireguard > 0,
        "nothing arrived on WireGuard's port, yet the task answered"
    );

    // The worker's daemon restarts (its tasks keep running): it makes its
    // overlay again with the same key, and the probe gets through again.
    let status = worker.stop();
    assert!(
        status.success(),
        "the worker did not stop cleanly: {status}"
    );
    worker.start();
    let before = logs().lines().count();
    assert!(
        wait_until(WAIT, || {
            let text = logs();
            let fresh: Vec<&str> = text.lines().skip(before).collect();
            answered("web", &fresh.join("\n"))
        }),
        "after the worker restarted, the probe no longer reached web:\n{}\nworker:\n{}",
        logs(),
        worker.log_tail()
    );
}

/// What a host's kernel holds for the overlays, for failure messages:
/// rules, the VXLAN table, neighbours, forwarding entries, links.
fn overlay_state(host: &netns::Host) -> String {
    let script = "ip rule; echo '-- table 21320'; ip route show table 21320; \
                  echo '-- routes'; ip route; echo '-- links'; ip -s -d link show | grep -A7 -E 'xsh|wsh'; \
                  for x in $(ip -o link show | grep -o 'xsh[0-9a-f]*'); do \
                  echo \"-- neigh $x\"; ip neigh show dev $x; echo \"-- fdb $x\"; bridge fdb show dev $x; done; \
                  echo '-- conntrack'; conntrack -L 2>/dev/null | grep -v 'dport=4290' | head -20; \
                  echo '-- counters'; nstat -az 2>/dev/null | grep -E 'IpForw|InNoRoutes|ReversePath|InAddrErrors|OutNoRoutes|InDiscards'; \
                  echo '-- nft'; nft list ruleset";
    let out = host
        .command("sh")
        .args(["-c", script])
        .output()
        .map(|o| format!("{}{}", stdout(&o), stderr(&o)))
        .unwrap_or_else(|e| e.to_string());
    format!("--- {} ---\n{out}", host.netns())
}

/// A probe that asks `target`'s port 80 every second and logs the last
/// line of the answer (`ans: TEXT`, empty when none came).
fn probe_of(target: &str) -> String {
    format!(
        "while true; do echo \"ans: $(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {target} 80 | tail -n 1)\"; sleep 1; done"
    )
}

/// Two hosts, a network in clear (`--opt encrypted=false`) and an
/// encrypted one: a task on both, on h1, reaches a task on both on h2
/// through WireGuard only (nothing on VXLAN's port), and then a task of
/// the network in clear only on h2 through VXLAN, which carries it
/// between the hosts' own addresses (nothing addressed to a task on the
/// LAN either).
#[test]
fn a_network_in_clear_crosses_by_vxlan_and_an_encrypted_one_never_does() {
    let lan = Lan::new(2);
    let (manager, worker) = manager_and_worker(&lan);
    let pool = manager.addr_pool.clone();
    let counters = count_on_lan(lan.host(2), &pool);
    let (mid, wid) = (
        manager.node_id(&manager.addr),
        manager.node_id(&worker.addr),
    );
    manager.cli_ok(&["network", "create", "--opt", "encrypted=false", "lan"]);
    manager.cli_ok(&["network", "create", "vault"]);
    let net = manager.cli_json(&["network", "inspect", "lan"]);
    assert_eq!(net["encrypted"], false, "{net}");
    let on_worker = format!("node.id=={wid}");
    let on_manager = format!("node.id=={mid}");
    // safe shares both networks with the probe: one encrypted network in
    // common is enough to keep their traffic encrypted.
    for (name, networks) in [("web", &["lan"][..]), ("safe", &["lan", "vault"][..])] {
        let mut args = vec!["service", "create", "--name", name];
        for n in networks {
            args.extend(["--network", n]);
        }
        args.extend(["--constraint", &on_worker, "busybox", "sh", "-c", WEB]);
        manager.cli_ok(&args);
    }
    let (web, safe) = (
        task_address(&manager, "web"),
        task_address(&manager, "safe"),
    );
    let answered = |service: &str| {
        let text = stdout(&manager.cli(&["service", "logs", service]));
        text.lines().any(|l| {
            l.split_once("ans: ")
                .is_some_and(|(_, rest)| !rest.trim().is_empty())
        })
    };
    let probe = |name: &str, target: &str| {
        manager.cli_ok(&[
            "service",
            "create",
            "--name",
            name,
            "--network",
            "lan",
            "--network",
            "vault",
            "--constraint",
            &on_manager,
            "busybox",
            "sh",
            "-c",
            &probe_of(target),
        ]);
    };

    // The encrypted network's task: through WireGuard, though the probe
    // is on the network in clear too.
    probe("ask-safe", &safe);
    assert!(
        wait_until(WAIT, || answered("ask-safe")),
        "the probe on h1 never reached safe on h2 ({safe}):\n{}\nmanager:\n{}\nworker:\n{}",
        stdout(&manager.cli(&["service", "logs", "ask-safe"])),
        manager.log_tail(),
        worker.log_tail()
    );
    let seen = counters();
    assert!(
        seen.wireguard > 0,
        "safe answered, but not through WireGuard: {seen:?}"
    );
    assert_eq!(
        seen.vxlan, 0,
        "the encrypted network crossed by VXLAN: {seen:?}"
    );
    assert_eq!(seen.clear, 0, "task addresses on the LAN: {seen:?}");
    manager.cli_ok(&["service", "rm", "ask-safe"]);

    // The network in clear's task: through VXLAN.
    probe("ask-web", &web);
    assert!(
        wait_until(WAIT, || answered("ask-web")),
        "the probe on h1 never reached web on h2 ({web}) over the network in clear:\n{}\n{}\n{}\nmanager:\n{}\nworker:\n{}",
        stdout(&manager.cli(&["service", "logs", "ask-web"])),
        overlay_state(lan.host(1)),
        overlay_state(lan.host(2)),
        manager.log_tail(),
        worker.log_tail()
    );
    let now = counters();
    assert!(
        now.vxlan > 0,
        "web answered, but nothing came by VXLAN: {now:?}"
    );
    assert_eq!(now.clear, 0, "task addresses on the LAN: {now:?}");
}

/// Three hosts: a port published in ingress mode by tasks on h1 and h2
/// answers on h3, which runs none of them, from both tasks in turn (the
/// routing mesh, through the overlay). A host that goes down leaves the
/// mesh: once its task is replaced, every request through h3 is answered.
#[test]
fn a_published_port_answers_on_a_node_without_its_tasks() {
    let lan = Lan::new(3);
    let (manager, worker) = manager_and_worker(&lan);
    let third = lan.host(3).spawn_daemon();
    third.load_image("busybox");
    join_by_mdns(&third, &manager);
    assert!(
        wait_until(WAIT, || manager.node_status(&third.addr) == "ready"),
        "h3 never became ready: {:?}",
        manager.nodes()
    );
    let h3 = manager.node_id(&third.addr);
    manager.cli_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--publish",
        "published=8080,target=80",
        "--constraint",
        &format!("node.id!={h3}"),
        "--stop-grace-period",
        "1s",
        "busybox",
        "sh",
        "-c",
        WEB,
    ]);
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 1
            && worker.ctr_running().len() == 1),
        "expected one task on h1 and one on h2: {}",
        manager.describe("web")
    );
    let client = lan.host(1);
    let h3_ip = lan.host(3).ip().to_string();
    let through_h3 = || client.get(&h3_ip, 8080);
    let mut seen = BTreeSet::new();
    assert!(
        wait_until(WAIT, || {
            let body = through_h3();
            if !body.is_empty() {
                seen.insert(body);
            }
            seen.len() == 2
        }),
        "h3:8080 did not reach both tasks (answers: {seen:?})\nh3:\n{}",
        third.log_tail()
    );

    lan.link_down(2);
    assert!(
        wait_until(WAIT, || manager.ctr_running().len() == 2),
        "h2's task was not replaced on h1: {}",
        manager.describe("web")
    );
    let all_answered = || (0..6).all(|_| !through_h3().is_empty());
    assert!(
        wait_until(WAIT, all_answered),
        "with h2 down, requests through h3 still fail\nh3:\n{}",
        third.log_tail()
    );
}
