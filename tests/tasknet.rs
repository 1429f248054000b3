//! Task networks on real kernel objects (`src/tasknet`): a bridge, network
//! namespaces, veth pairs and an nftables table. Each test uses its own
//! subnet 10.231.N.0/24 and removes what it made, even when it fails.
//!
//! Needs root, nft, nsenter (util-linux), ip (iproute2) and ping or
//! busybox. Run with `--test-threads=1`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use ipnet::Ipv4Net;
use shoal::tasknet::{BridgeConfig, NetError, TaskNet, TaskNetwork};

/// Fails the test (never skips it) when not root: a root-only suite that
/// passes without running would hide a broken feature.
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the tasknet tests create bridges, netns and nftables tables: run them as root"
    );
}

fn subnet(n: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 231, n, 0), 24).unwrap()
}

fn config(n: u8) -> BridgeConfig {
    BridgeConfig {
        subnet: subnet(n),
        mtu: 1500,
        overlay: None,
    }
}

fn bridge_of(n: u8) -> String {
    format!("shl0ae7{n:02x}00")
}

fn table_of(n: u8) -> String {
    format!("shoal_0ae7{n:02x}00")
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn link_exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name]).status.success()
}

fn ifindex(link: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{link}/ifindex"))
        .unwrap_or_else(|e| panic!("{link}: {e}"))
}

/// The inode of the mounted netns: it names the namespace itself.
fn netns_inode(t: &TaskNetwork) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(&t.netns).expect("netns file").ino()
}

fn nft_tables() -> String {
    text(&run("nft", &["list", "tables"]))
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One ping from inside `netns`; ping if installed, else busybox's.
fn ping_from(netns: &Path, to: Ipv4Addr) -> Output {
    let net = format!("--net={}", netns.display());
    let to = to.to_string();
    let mut args = vec![net.as_str()];
    if !have("ping") {
        args.push("busybox");
    }
    args.extend(["ping", "-c1", "-W2", &to]);
    run("nsenter", &args)
}

fn assert_ping(from: &TaskNetwork, to: Ipv4Addr) {
    let out = ping_from(&from.netns, to);
    assert!(
        out.status.success(),
        "ping {to} from {} failed:\n{}",
        from.address,
        text(&out)
    );
}

/// Removes, on drop, whatever a test left of subnet N: netns mounts, the
/// bridge, the table, and the state dir (its `TempDir`).
struct Cleanup {
    n: u8,
    dir: tempfile::TempDir,
    extra: Vec<Vec<String>>,
}

impl Cleanup {
    fn new(n: u8) -> Self {
        require_root();
        Cleanup {
            n,
            dir: tempfile::tempdir().expect("temp dir"),
            extra: Vec::new(),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("tasknet")
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        use nix::mount::{umount2, MntFlags};
        let netns = self.state_dir().join("netns");
        if let Ok(entries) = std::fs::read_dir(&netns) {
            for e in entries.flatten() {
                // Unmounting the netns frees it, and its veth pair with it.
                let _ = umount2(&e.path(), MntFlags::MNT_DETACH);
            }
        }
        let _ = umount2(&netns, MntFlags::MNT_DETACH);
        let _ = run("ip", &["link", "del", &bridge_of(self.n)]);
        let _ = run("nft", &["delete", "table", "ip", &table_of(self.n)]);
        for cmd in &self.extra {
            let args: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
            let _ = run(&cmd[0], &args);
        }
    }
}

async fn open(c: &Cleanup) -> TaskNet {
    TaskNet::open(c.state_dir(), config(c.n))
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", subnet(c.n)))
}

async fn attach(net: &TaskNet, task: &str) -> TaskNetwork {
    net.attach(task, &format!("host-{task}"), false)
        .await
        .unwrap_or_else(|e| panic!("attach {task}: {e}"))
}

/// Lets the tasks of each group reach each other (and no other task).
async fn allow(net: &TaskNet, groups: &[&[&TaskNetwork]]) {
    let groups: Vec<Vec<Ipv4Addr>> = groups
        .iter()
        .map(|g| g.iter().map(|t| t.address.addr()).collect())
        .collect();
    net.set_rules(&shoal::tasknet::Rules {
        groups,
        ..Default::default()
    })
    .await
    .expect("set_rules");
}

fn assert_no_ping(from: &TaskNetwork, to: Ipv4Addr) {
    let out = ping_from(&from.netns, to);
    assert!(
        !out.status.success(),
        "ping {to} from {} got through:\n{}",
        from.address,
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_reach_adopt_detach_and_remove() {
    let c = Cleanup::new(41);
    let net = open(&c).await;
    let bridge = bridge_of(41);
    assert_eq!(net.bridge_name(), bridge);
    assert!(link_exists(&bridge), "bridge {bridge} was not created");
    assert!(nft_tables().contains(&table_of(41)), "{}", nft_tables());
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );

    let a = attach(&net, "task-a").await;
    let b = attach(&net, "task-b").await;
    let gateway = Ipv4Addr::new(10, 231, 41, 1);
    assert_eq!(a.gateway, gateway);
    assert_ne!(a.address, b.address);
    for t in [&a, &b] {
        assert!(subnet(41).contains(&t.address.addr()), "{}", t.address);
        assert_eq!(t.address.prefix_len(), 24);
        assert_ne!(t.address.addr(), gateway);
        assert!(t.netns.exists() && link_exists(&t.veth));
    }
    // The bridge keeps its own MAC as ports come and go, so the tasks'
    // ARP entry for the gateway stays right.
    let mac = std::fs::read_to_string(format!("/sys/class/net/{bridge}/address")).unwrap();
    assert_eq!(mac.trim(), "02:73:0a:e7:29:01");
    // The lowest free addresses after the gateway.
    assert_eq!(a.address.addr(), Ipv4Addr::new(10, 231, 41, 2));
    assert_eq!(b.address.addr(), Ipv4Addr::new(10, 231, 41, 3));
    let hosts = std::fs::read_to_string(&a.hosts).unwrap();
    assert!(hosts.contains("10.231.41.2\thost-task-a"), "{hosts}");
    assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
    assert_eq!(
        std::fs::read_to_string(&a.hostname).unwrap(),
        "host-task-a\n"
    );
    let resolv = std::fs::read_to_string(&a.resolv_conf).unwrap();
    assert!(resolv.contains("nameserver "), "{resolv}");
    assert!(!resolv.contains("nameserver 127."), "{resolv}");

    // Closed until the tasks' networks are known; the gateway is reached.
    assert_no_ping(&a, b.address.addr());
    assert_ping(&a, gateway);
    allow(&net, &[&[&a, &b]]).await;
    assert_ping(&a, b.address.addr());
    assert_ping(&b, a.address.addr());
    assert_ping(&b, gateway);

    // Idempotent: the same network, nothing rebuilt (same veth, same netns).
    let before = (ifindex(&a.veth), netns_inode(&a));
    let again = attach(&net, "task-a").await;
    assert_eq!(again, a);
    assert_eq!((ifindex(&a.veth), netns_inode(&a)), before);
    assert_ping(&a, b.address.addr());

    // A restarted daemon adopts both and gives a third task another address.
    drop(net);
    let net = open(&c).await;
    assert_eq!(net.attached(), vec!["task-a", "task-b"]);
    assert_eq!(attach(&net, "task-a").await, a);
    // The rules outlived the restart: a and b still reach each other.
    assert_ping(&a, b.address.addr());
    let third = attach(&net, "task-c").await;
    assert_eq!(third.address.addr(), Ipv4Addr::new(10, 231, 41, 4));
    // On a network of its own, c reaches neither; on theirs, both.
    allow(&net, &[&[&a, &b], &[&third]]).await;
    assert_no_ping(&third, a.address.addr());
    assert_ping(&a, b.address.addr());
    allow(&net, &[&[&a, &b, &third]]).await;
    assert_ping(&third, a.address.addr());

    for (id, t) in [("task-a", &a), ("task-b", &b), ("task-c", &third)] {
        net.detach(id)
            .await
            .unwrap_or_else(|e| panic!("detach {id}: {e}"));
        assert!(!t.netns.exists(), "{} is still there", t.netns.display());
        assert!(!t.hosts.exists(), "{} is still there", t.hosts.display());
        assert!(!link_exists(&t.veth), "veth {} is still there", t.veth);
        // Idempotent.
        net.detach(id).await.unwrap();
    }
    assert!(net.attached().is_empty(), "{:?}", net.attached());
    // Freed addresses are given again.
    let d = attach(&net, "task-d").await;
    assert_eq!(d.address.addr(), Ipv4Addr::new(10, 231, 41, 2));
    // Close refuses while a task is attached.
    match net.close_and_remove().await {
        Err(NetError::StillAttached { tasks, .. }) => assert_eq!(tasks, vec!["task-d"]),
        other => panic!("close with a task attached: {other:?}"),
    }
    let net = open(&c).await;
    net.detach("task-d").await.unwrap();
    net.close_and_remove().await.expect("close_and_remove");
    assert!(!link_exists(&bridge), "bridge {bridge} is still there");
    assert!(!nft_tables().contains(&table_of(41)), "{}", nft_tables());
}

/// Binds `port` on all addresses from a thread that has entered `netns`.
fn listen_in(netns: &Path, port: u16) -> std::io::Result<TcpListener> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&netns)?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;
        // The socket stays in this netns after the thread ends.
        TcpListener::bind(("0.0.0.0", port))
    })
    .join()
    .expect("listener thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_bind_the_same_port() {
    let c = Cleanup::new(42);
    let net = open(&c).await;
    let a = attach(&net, "web-1").await;
    let b = attach(&net, "web-2").await;
    allow(&net, &[&[&a, &b]]).await;
    let la = listen_in(&a.netns, 8080).expect("bind 8080 in task a");
    let lb = listen_in(&b.netns, 8080).expect("bind 8080 in task b");

    // Task a talks to task b's port 8080 across the bridge.
    let (a_ns, b_addr) = (a.netns.clone(), b.address.addr());
    let client = std::thread::spawn(move || -> std::io::Result<String> {
        let f = std::fs::File::open(&a_ns)?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let mut s = TcpStream::connect((b_addr, 8080))?;
        s.write_all(b"hello")?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        Ok(reply)
    });
    let (mut conn, peer) = lb.accept().expect("accept in task b");
    assert_eq!(
        peer.ip(),
        a.address.addr(),
        "tasks see each other's real address"
    );
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf).unwrap();
    conn.write_all(b"world").unwrap();
    drop(conn);
    assert_eq!(client.join().unwrap().expect("client"), "world");
    drop((la, lb));

    for t in ["web-1", "web-2"] {
        net.detach(t).await.unwrap();
    }
    net.close_and_remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_attaches_get_distinct_addresses() {
    let c = Cleanup::new(43);
    let net = Arc::new(open(&c).await);
    let ids: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
    let mut joins = Vec::new();
    // Each id twice, at once: one network per task, one address per network.
    for id in ids.iter().chain(ids.iter()) {
        let (net, id) = (net.clone(), id.clone());
        joins.push(tokio::spawn(async move {
            (id.clone(), attach(&net, &id).await)
        }));
    }
    let mut by_task = std::collections::HashMap::new();
    for j in joins {
        let (id, t) = j.await.unwrap();
        if let Some(first) = by_task.insert(id.clone(), t.clone()) {
            assert_eq!(first, t, "two answers for {id}");
        }
    }
    let mut addrs: Vec<Ipv4Addr> = by_task.values().map(|t| t.address.addr()).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), ids.len(), "{addrs:?}");
    for id in &ids {
        net.detach(id).await.unwrap();
    }
    let Ok(net) = Arc::try_unwrap(net) else {
        panic!("the TaskNet is still shared")
    };
    net.close_and_remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attach_cut_short_is_completed() {
    let c = Cleanup::new(44);
    let net = open(&c).await;
    // Its veth deleted behind our back: attach rebuilds, same address.
    let a = attach(&net, "task-a").await;
    assert!(run("ip", &["link", "del", &a.veth]).status.success());
    let again = attach(&net, "task-a").await;
    assert_eq!(again, a);
    assert!(link_exists(&a.veth));
    assert_ping(&a, a.gateway);
    drop(net);

    // What a crash between the first steps leaves: a record that is not
    // complete and an empty netns file. A restart adopts its address.
    let state = c.state_dir();
    std::fs::create_dir_all(state.join("tasks/task-z")).unwrap();
    std::fs::write(
        state.join("tasks/task-z/state"),
        "address=10.231.44.9\nveth=vsh0000000000\ncomplete=false\n",
    )
    .unwrap();
    std::fs::write(state.join("netns/task-z"), "").unwrap();
    let net = open(&c).await;
    assert_eq!(net.attached(), vec!["task-a", "task-z"]);
    let z = attach(&net, "task-z").await;
    assert_eq!(z.address.addr(), Ipv4Addr::new(10, 231, 44, 9));
    allow(&net, &[&[&a, &z]]).await;
    assert_ping(&z, a.address.addr());
    // Leftovers with no record at all are removed by detach.
    std::fs::write(state.join("netns/task-y"), "").unwrap();
    assert_eq!(net.attached(), vec!["task-a", "task-y", "task-z"]);
    for t in ["task-a", "task-y", "task-z"] {
        net.detach(t).await.unwrap();
    }
    net.close_and_remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_routed_elsewhere_is_refused() {
    let mut c = Cleanup::new(45);
    let route = subnet(45).to_string();
    let out = run("ip", &["route", "add", &route, "dev", "lo"]);
    assert!(out.status.success(), "ip route add: {}", text(&out));
    c.extra.push(
        ["ip", "route", "del", &route, "dev", "lo"]
            .map(String::from)
            .to_vec(),
    );
    match TaskNet::open(c.state_dir(), config(45)).await {
        Err(e @ NetError::Overlap { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&route) && msg.contains("lo"), "{msg}");
        }
        Err(e) => panic!("expected an overlap error, got: {e}"),
        Ok(_) => panic!("a subnet routed via lo was accepted"),
    }
    assert!(!link_exists(&bridge_of(45)), "a bridge was created anyway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_an_error() {
    let c = Cleanup::new(46);
    let net = open(&c).await;
    for id in ["", "../x", "a/b", "a b"] {
        assert!(
            matches!(
                net.attach(id, "h", false).await,
                Err(NetError::BadTaskId { .. })
            ),
            "{id:?}"
        );
    }
    assert!(matches!(
        net.attach("ok", "bad\nhost", false).await,
        Err(NetError::BadHostname { .. })
    ));
    assert!(net.attached().is_empty());
    let bad = BridgeConfig {
        subnet: "10.231.46.7/24".parse().unwrap(),
        mtu: 1500,
        overlay: None,
    };
    assert!(matches!(
        TaskNet::open(c.state_dir(), bad).await,
        Err(NetError::BadSubnet { .. })
    ));
    net.close_and_remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_leaving_the_subnet_is_masqueraded() {
    let mut c = Cleanup::new(48);
    // An "outside" host: a netns on another subnet, with no route back to
    // the tasks' subnet. Only a masqueraded ping gets an answer.
    let outside = "shoaltest-out48";
    let sh = |script: &str| {
        let out = run("sh", &["-ec", script]);
        assert!(out.status.success(), "{script}:\n{}", text(&out));
    };
    c.extra
        .push(["ip", "netns", "del", outside].map(String::from).to_vec());
    sh(&format!(
        "ip netns add {outside}
         ip link add vshtestout48 type veth peer name eth0 netns {outside}
         ip addr add 10.232.48.1/24 dev vshtestout48
         ip link set vshtestout48 up
         ip -n {outside} addr add 10.232.48.2/24 dev eth0
         ip -n {outside} link set eth0 up"
    ));
    let net = open(&c).await;
    let a = attach(&net, "task-a").await;
    assert_ping(&a, Ipv4Addr::new(10, 232, 48, 2));
    net.detach("task-a").await.unwrap();
    net.close_and_remove().await.unwrap();
}
