//! The node bridge's nftables table: masquerade for traffic that leaves
//! the subnet, and accept rules for forwarding to and from the bridge.
//! The whole table is rendered as text and applied with one `nft -f -`,
//! which the kernel commits atomically. Rendering is pure.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt;

use super::NetError;

/// `nft` answers in milliseconds; one that hangs (a stuck netlink lock)
/// must not hang an attach with it.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// The conntrack mark bit of connections to a published port: those that
/// leave by the overlay (to another node's task) take the node's gateway
/// as their source, so that the answer comes back through this node.
/// One bit, so that marks of other tables are kept.
const MESH_MARK: u32 = 0x0010_0000;

/// The packet mark of what crosses to another node in clear (VXLAN): the
/// node's routing rule for it picks the VXLAN device's table.
pub(super) const PLAIN_MARK: u32 = 0x0020_0000;

/// `add` first, so that the `delete` works whether or not the table is
/// there yet; both in the same transaction as what follows. Two tables of
/// one name: `ip` (masquerade, published ports) and `bridge` (isolation).
fn reset(table: &str) -> String {
    format!(
        "add table ip {table}\ndelete table ip {table}\nadd table bridge {table}\ndelete table bridge {table}\n"
    )
}

/// The table, replacing any previous version of it. Numeric priorities:
/// nft 1.0.6 (Debian 12) does not take every named one on every hook.
/// The masquerade skips traffic that stays on the bridge, so tasks see
/// each other's real addresses. Accepting forwarded traffic here does not
/// override a drop in another table (a drop in any base chain is final),
/// but it is what a host without other rules needs, as with Docker.
///
/// Published ports: traffic to any of the node's own addresses on a
/// published port (from outside, from the node itself, or from a task)
/// goes to one of the port's backends, picked at random per connection
/// (the layout of kube-proxy's nftables mode: a verdict map per port, a
/// chain per backend). What a task sends to a published port and comes
/// back onto the bridge, and what the node sends from its loopback, is
/// masqueraded, so that the backend's answer goes back the way it came.
///
/// Isolation: tasks on the bridge reach each other only when they share a
/// network (`groups`, the addresses of each network's tasks here): one
/// rule per network in the bridge family, which sees the frames that the
/// bridge forwards between two tasks, then a drop of the rest of the
/// subnet's task-to-task traffic. What a task sends to the node (its
/// gateway, a published port) is not forwarded by the bridge, and not
/// touched. With no group yet (the table as a node starts it), tasks reach
/// none of the others until the agent says who is where: closed, not open.
///
/// Between nodes: what is routed between the bridge and the overlay
/// interface, either way, passes only within one of `cross` (each
/// network's addresses, here and on other nodes), and is dropped
/// otherwise: tasks on other nodes are reached only within a network.
pub(super) fn render(
    table: &str,
    subnet: &Ipv4Net,
    bridge: &str,
    overlay: Option<&str>,
    rules: &Rules,
) -> String {
    let Rules {
        published,
        groups,
        cross,
        vips,
        ingress_targets,
    } = rules;
    let mut ports = String::new();
    let mut backends = String::new();
    for p in published.iter().filter(|p| !p.backends.is_empty()) {
        let proto = p.protocol.as_str();
        let chain = |i: usize| format!("pub_{proto}_{}_{i}", p.port);
        let targets: Vec<String> = (0..p.backends.len())
            .map(|i| format!("{i} : goto {}", chain(i)))
            .collect();
        ports.push_str(&format!(
            "\t\t{proto} dport {} numgen random mod {} vmap {{ {} }}\n",
            p.port,
            p.backends.len(),
            targets.join(", ")
        ));
        for (i, (addr, port)) in p.backends.iter().enumerate() {
            backends.push_str(&format!(
                "\tchain {} {{\n\t\tct mark set ct mark or {MESH_MARK:#x} meta l4proto {proto} dnat to {addr}:{port}\n\t}}\n",
                chain(i)
            ));
        }
    }
    let mut sets = String::new();
    let mut allow = String::new();
    for (i, g) in groups.iter().filter(|g| !g.is_empty()).enumerate() {
        let elements: Vec<String> = g.iter().map(|a| a.to_string()).collect();
        sets.push_str(&format!(
            "\tset net{i} {{\n\t\ttype ipv4_addr;\n\t\telements = {{ {} }}\n\t}}\n",
            elements.join(", ")
        ));
        allow.push_str(&format!("\t\tip saddr @net{i} ip daddr @net{i} accept\n"));
    }
    let mut cross_sets = String::new();
    let mut cross_allow = String::new();
    let mut plain_allow = String::new();
    let mut plain_mark = String::new();
    for (i, g) in cross.iter().filter(|g| !g.addresses.is_empty()).enumerate() {
        let elements: Vec<String> = g.addresses.iter().map(|a| a.to_string()).collect();
        cross_sets.push_str(&format!(
            "\tset cross{i} {{\n\t\ttype ipv4_addr;\n\t\telements = {{ {} }}\n\t}}\n",
            elements.join(", ")
        ));
        let pair = format!("ip saddr @cross{i} ip daddr @cross{i}");
        cross_allow.push_str(&format!("\t\t{pair} accept\n"));
        if g.plain {
            plain_allow.push_str(&format!("\t\t{pair} accept\n"));
            plain_mark.push_str(&format!(
                "\t\tiifname \"{bridge}\" {pair} meta mark set meta mark or {PLAIN_MARK:#x}\n"
            ));
        } else {
            // Sharing an encrypted network is enough to be kept
            // encrypted, whatever else the two share.
            plain_mark.insert_str(0, &format!("\t\tiifname \"{bridge}\" {pair} return\n"));
        }
    }
    // Another node's routing mesh reaches this node's tasks on their
    // ingress ports (from that node's gateway), and the answers go back.
    let mut ingress_allow = String::new();
    for (addr, protocol, port) in ingress_targets {
        ingress_allow.push_str(&format!(
            "\t\tip daddr {addr} meta l4proto {p} th dport {port} accept\n",
            p = protocol.as_str()
        ));
    }
    // Between this node's tasks and other nodes' tasks (through the
    // overlay, either way): only within a network, as on the bridge.
    // What comes in clear (VXLAN) passes only within a network that is
    // meant to cross in clear, and goes nowhere but to the bridge: anyone
    // on the LAN can send it. What a task sends to another node's task
    // within such a network (and no encrypted one) is marked, and the
    // mark's routing table takes it through the VXLAN device.
    let (cross_jump, cross_chain) = match overlay {
        Some(o) => {
            let x = super::names::plain_name(o);
            (
                format!(
                    "\t\tiifname \"{o}\" oifname \"{bridge}\" jump overlay\n\
                     \t\tiifname \"{bridge}\" oifname \"{o}\" jump overlay\n\
                     \t\tiifname \"{x}\" oifname \"{bridge}\" jump plain_in\n\
                     \t\tiifname \"{bridge}\" oifname \"{x}\" jump overlay\n\
                     \t\tiifname \"{x}\" drop\n"
                ),
                format!(
                    "\tchain overlay {{\n\
                     \t\tct state established,related accept\n\
                     {cross_allow}{ingress_allow}\t\tdrop\n\t}}\n\
                     \tchain plain_in {{\n\
                     {plain_allow}\t\tdrop\n\t}}\n\
                     \tchain plain_route {{\n\
                     \t\ttype filter hook prerouting priority -90; policy accept;\n\
                     {plain_mark}\t}}\n"
                ),
            )
        }
        None => (String::new(), String::new()),
    };
    // Virtual IPs: what a task of the network sends to one goes to one of
    // the service's tasks, here or on another node, picked at random per
    // connection. A VIP that nothing was sent to (a client not on its
    // network, or no task behind it) is dropped, not routed out.
    let mut vip_jumps = String::new();
    let mut vip_chains = String::new();
    let mut vip_drop = String::new();
    for (i, v) in vips.iter().enumerate() {
        vip_drop.push_str(&format!("\t\tip daddr {} drop\n", v.vip));
        if v.backends.is_empty() || v.clients.is_empty() {
            continue;
        }
        let clients: Vec<String> = v.clients.iter().map(|a| a.to_string()).collect();
        vip_jumps.push_str(&format!(
            "\t\tiifname \"{bridge}\" ip saddr {{ {} }} ip daddr {} jump vip{i}\n",
            clients.join(", "),
            v.vip
        ));
        let targets: Vec<String> = (0..v.backends.len())
            .map(|j| format!("{j} : goto vip{i}_{j}"))
            .collect();
        vip_chains.push_str(&format!(
            "\tchain vip{i} {{\n\t\tnumgen random mod {} vmap {{ {} }}\n\t}}\n",
            v.backends.len(),
            targets.join(", ")
        ));
        for (j, b) in v.backends.iter().enumerate() {
            vip_chains.push_str(&format!("\tchain vip{i}_{j} {{\n\t\tdnat to {b}\n\t}}\n"));
        }
    }
    let subnet = subnet.trunc();
    // Tasks keep their own address on the way to another node's tasks:
    // that node tells networks apart by it.
    let gateway = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    let to_overlay = overlay
        .map(|o| {
            format!(
                "\t\toifname \"{o}\" ct mark and {MESH_MARK:#x} != 0 snat to {gateway}\n\
                 \t\toifname \"{o}\" return\n\
                 \t\toifname \"{x}\" return\n",
                x = super::names::plain_name(o)
            )
        })
        .unwrap_or_default();
    let isolation = format!(
        "table bridge {table} {{\n\
         {sets}\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         {allow}\
         \t\tip saddr {subnet} ip daddr {subnet} drop\n\
         \t}}\n\
         }}\n"
    );
    format!(
        "{reset}table ip {table} {{\n\
         {cross_sets}\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority 100; policy accept;\n\
         \t\toifname \"{bridge}\" ip saddr {subnet} ct status dnat masquerade\n\
         \t\toifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade\n\
         {to_overlay}\
         \t\tip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         {vip_drop}\
         {cross_jump}\
         \t\tiifname \"{bridge}\" accept\n\
         \t\toifname \"{bridge}\" accept\n\
         \t}}\n\
         \tchain prerouting {{\n\
         \t\ttype nat hook prerouting priority -100; policy accept;\n\
         \t\tfib daddr type local jump published\n\
         {vip_jumps}\
         \t}}\n\
         \tchain output {{\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t\tfib daddr type local jump published\n\
         \t}}\n\
         \tchain published {{\n\
         {ports}\
         \t}}\n\
         {backends}\
         {cross_chain}\
         {vip_chains}\
         }}\n\
         {isolation}",
        reset = reset(table),
    )
}

/// Everything the node's tables let through and translate, besides what
/// every table has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Ports published on the node.
    pub published: Vec<Published>,
    /// For each network, the addresses of its tasks on this node.
    pub groups: Vec<Vec<Ipv4Addr>>,
    /// For each network with tasks here and on other nodes, all of them.
    pub cross: Vec<Cross>,
    pub vips: Vec<VipRule>,
    /// This node's tasks' ingress ports (address, protocol, target port):
    /// what other nodes' routing mesh may reach through the overlay.
    pub ingress_targets: Vec<(Ipv4Addr, crate::types::Protocol, u16)>,
}

/// A network with tasks on this node and on others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cross {
    /// Its tasks' addresses, here and elsewhere.
    pub addresses: Vec<Ipv4Addr>,
    /// It crosses between nodes in clear (VXLAN): `encrypted=false`.
    pub plain: bool,
}

/// A virtual IP on a network of this node's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipRule {
    pub vip: Ipv4Addr,
    /// This node's tasks on the VIP's network: who may use it here.
    pub clients: Vec<Ipv4Addr>,
    /// The service's running tasks, on any node.
    pub backends: Vec<Ipv4Addr>,
}

/// A published port of this node and the task addresses behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub protocol: crate::types::Protocol,
    pub port: u16,
    /// (task address, target port)
    pub backends: Vec<(std::net::Ipv4Addr, u16)>,
}

/// Removes the table; nothing to do when it is not there.
pub(super) fn render_delete(table: &str) -> String {
    reset(table)
}

/// Whether both of the node's tables are there (left by the daemon before
/// a restart, with the ports and networks of the tasks that kept running).
pub(super) async fn exists(table: &str) -> bool {
    let mut found = true;
    for family in ["ip", "bridge"] {
        let out = tokio::time::timeout(
            NFT_TIMEOUT,
            tokio::process::Command::new("nft")
                .args(["list", "table", family, table])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status(),
        )
        .await;
        found &= matches!(out, Ok(Ok(s)) if s.success());
    }
    found
}

/// Runs `nft -f -` with `script` on stdin.
pub(super) async fn apply(script: &str) -> Result<(), NetError> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // On a timeout the future is dropped: the child must go with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            NetError::Nft(if e.kind() == std::io::ErrorKind::NotFound {
                "the nft program is not installed (package nftables)".to_string()
            } else {
                format!("cannot start nft: {e}")
            })
        })?;
    let run = async move {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).await?;
            // Dropping stdin closes it: nft reads to the end before it acts.
        }
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(NFT_TIMEOUT, run)
        .await
        .map_err(|_| NetError::Nft(format!("no answer in {NFT_TIMEOUT:?}")))?
        .map_err(|e| NetError::Nft(format!("running nft: {e}")))?;
    if !out.status.success() {
        return Err(NetError::Nft(format!(
            "{} for:\n{script}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_marks_published_traffic_and_takes_the_gateway_into_the_overlay() {
        let subnet: Ipv4Net = "10.20.3.0/24".parse().unwrap();
        let rules = Rules {
            published: vec![Published {
                protocol: crate::types::Protocol::Tcp,
                port: 8080,
                backends: vec![("10.20.4.7".parse().unwrap(), 80)],
            }],
            ingress_targets: vec![(
                "10.20.3.5".parse().unwrap(),
                crate::types::Protocol::Tcp,
                80,
            )],
            ..Rules::default()
        };
        let t = render("shoal_t", &subnet, "shlt", Some("wsht"), &rules);
        let lines: Vec<&str> = t.lines().map(str::trim).collect();
        assert!(lines
            .contains(&"ct mark set ct mark or 0x100000 meta l4proto tcp dnat to 10.20.4.7:80"));
        let snat = lines
            .iter()
            .position(|l| *l == "oifname \"wsht\" ct mark and 0x100000 != 0 snat to 10.20.3.1")
            .expect("the mesh's snat");
        let keep = lines
            .iter()
            .position(|l| *l == "oifname \"wsht\" return")
            .unwrap();
        assert!(snat < keep, "{t}");
        // Another node's mesh reaches the local task's target port only.
        assert!(lines.contains(&"ip daddr 10.20.3.5 meta l4proto tcp th dport 80 accept"));
        assert!(lines.contains(&"ct state established,related accept"));
    }

    #[test]
    fn the_table_replaces_itself_and_masquerades_what_leaves() {
        let subnet: Ipv4Net = "10.20.3.0/24".parse().unwrap();
        let t = render(
            "shoal_0a140300",
            &subnet,
            "shl0a140300",
            Some("wsh0123456789"),
            &Rules::default(),
        );
        let lines: Vec<&str> = t.lines().map(str::trim).collect();
        assert_eq!(lines[0], "add table ip shoal_0a140300");
        assert_eq!(lines[1], "delete table ip shoal_0a140300");
        assert_eq!(lines[2], "add table bridge shoal_0a140300");
        assert_eq!(lines[3], "delete table bridge shoal_0a140300");
        assert_eq!(lines[4], "table ip shoal_0a140300 {");
        assert!(lines.contains(&"type nat hook postrouting priority 100; policy accept;"));
        assert!(lines.contains(&"ip saddr 10.20.3.0/24 oifname != \"shl0a140300\" masquerade"));
        // Not what goes to another node's tasks, before that rule.
        let overlay = lines
            .iter()
            .position(|l| *l == "oifname \"wsh0123456789\" return");
        let masq = lines
            .iter()
            .position(|l| l.ends_with("!= \"shl0a140300\" masquerade"));
        assert!(overlay.is_some() && overlay < masq, "{t}");
        assert!(lines.contains(&"type filter hook forward priority 0; policy accept;"));
        assert!(lines.contains(&"iifname \"shl0a140300\" accept"));
        assert!(lines.contains(&"oifname \"shl0a140300\" accept"));
        // Braces balance.
        assert_eq!(t.matches('{').count(), t.matches('}').count());
        // With an overlay and no network across nodes: every new
        // connection dropped (answers to the mesh's own pass).
        assert!(lines.contains(&"iifname \"wsh0123456789\" oifname \"shl0a140300\" jump overlay"));
        assert!(lines.contains(&"iifname \"shl0a140300\" oifname \"wsh0123456789\" jump overlay"));
        let chain = lines
            .iter()
            .position(|l| *l == "chain overlay {")
            .expect("chain");
        assert_eq!(
            lines[chain + 1],
            "ct state established,related accept",
            "{t}"
        );
        assert_eq!(lines[chain + 2], "drop", "{t}");
        // With one: its addresses pass, the rest is dropped.
        let cross = vec![Cross {
            addresses: vec!["10.20.3.2".parse().unwrap(), "10.20.4.7".parse().unwrap()],
            plain: false,
        }];
        let t2 = render(
            "shoal_0a140300",
            &subnet,
            "shl0a140300",
            Some("wsh0123456789"),
            &Rules {
                cross: cross.clone(),
                ..Rules::default()
            },
        );
        let l2: Vec<&str> = t2.lines().map(str::trim).collect();
        assert!(l2.contains(&"elements = { 10.20.3.2, 10.20.4.7 }"), "{t2}");
        let chain = l2
            .iter()
            .position(|l| *l == "chain overlay {")
            .expect("chain");
        assert_eq!(l2[chain + 2], "ip saddr @cross0 ip daddr @cross0 accept");
        assert_eq!(l2[chain + 3], "drop");
        assert_eq!(t2.matches('{').count(), t2.matches('}').count());
        // Without an overlay, no such chain.
        let t3 = render(
            "shoal_0a140300",
            &subnet,
            "shl0a140300",
            None,
            &Rules {
                cross,
                ..Rules::default()
            },
        );
        assert!(!t3.contains("chain overlay"), "{t3}");

        // A published port: a verdict map over its backends.
        let p = Published {
            protocol: crate::types::Protocol::Tcp,
            port: 8080,
            backends: vec![
                ("10.20.3.2".parse().unwrap(), 80),
                ("10.20.3.3".parse().unwrap(), 80),
            ],
        };
        let groups = vec![
            vec!["10.20.3.2".parse().unwrap(), "10.20.3.3".parse().unwrap()],
            vec![],
        ];
        let t = render(
            "shoal_0a140300",
            &subnet,
            "shl0a140300",
            None,
            &Rules {
                published: vec![p],
                groups,
                ..Rules::default()
            },
        );
        let lines: Vec<&str> = t.lines().map(str::trim).collect();
        assert!(lines.contains(&"tcp dport 8080 numgen random mod 2 vmap { 0 : goto pub_tcp_8080_0, 1 : goto pub_tcp_8080_1 }"), "{t}");
        assert!(
            lines
                .contains(&"ct mark set ct mark or 0x100000 meta l4proto tcp dnat to 10.20.3.3:80"),
            "{t}"
        );
        assert!(
            lines.contains(&"fib daddr type local jump published"),
            "{t}"
        );
        assert_eq!(t.matches('{').count(), t.matches('}').count());
        assert!(render_delete("shoal_0a140300").ends_with("delete table bridge shoal_0a140300\n"));
    }

    #[test]
    fn a_network_in_clear_is_routed_by_vxlan_unless_an_encrypted_one_is_shared() {
        let subnet: Ipv4Net = "10.20.3.0/24".parse().unwrap();
        let a = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let rules = Rules {
            cross: vec![
                Cross {
                    addresses: vec![a("10.20.3.2"), a("10.20.4.7")],
                    plain: false,
                },
                Cross {
                    addresses: vec![a("10.20.3.2"), a("10.20.3.3"), a("10.20.4.7")],
                    plain: true,
                },
            ],
            ..Rules::default()
        };
        let t = render("shoal_t", &subnet, "shlt", Some("wsh0123456789"), &rules);
        let lines: Vec<&str> = t.lines().map(str::trim).collect();
        let at = |l: &str| lines.iter().position(|x| *x == l);
        // Encrypted first: a pair that shares one is not marked.
        let keep = at("iifname \"shlt\" ip saddr @cross0 ip daddr @cross0 return").expect(&t);
        let mark = at(&format!(
            "iifname \"shlt\" ip saddr @cross1 ip daddr @cross1 meta mark set meta mark or {PLAIN_MARK:#x}"
        ))
        .expect(&t);
        assert!(keep < mark, "{t}");
        // In clear: only into the bridge, only within the clear network.
        let jump = at("iifname \"xsh0123456789\" oifname \"shlt\" jump plain_in").expect(&t);
        let rest = at("iifname \"xsh0123456789\" drop").expect(&t);
        assert!(jump < rest, "{t}");
        let chain = at("chain plain_in {").expect(&t);
        assert_eq!(
            lines[chain + 1],
            "ip saddr @cross1 ip daddr @cross1 accept",
            "{t}"
        );
        assert_eq!(lines[chain + 2], "drop", "{t}");
        // Tasks keep their addresses on the way out by VXLAN.
        assert!(
            at("oifname \"xsh0123456789\" return").expect(&t)
                < at("ip saddr 10.20.3.0/24 oifname != \"shlt\" masquerade").expect(&t)
        );
        assert_eq!(t.matches('{').count(), t.matches('}').count());
    }

    #[test]
    fn a_vip_balances_over_its_backends_for_its_network_s_tasks_only() {
        let subnet: Ipv4Net = "10.20.3.0/24".parse().unwrap();
        let a = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let rules = Rules {
            vips: vec![
                VipRule {
                    vip: a("10.20.9.2"),
                    clients: vec![a("10.20.3.2")],
                    backends: vec![a("10.20.3.3"), a("10.20.4.5")],
                },
                VipRule {
                    vip: a("10.20.9.3"),
                    clients: vec![a("10.20.3.2")],
                    backends: vec![],
                },
            ],
            ..Rules::default()
        };
        let t = render("shoal_0a140300", &subnet, "shl0a140300", None, &rules);
        let lines: Vec<&str> = t.lines().map(str::trim).collect();
        assert!(
            lines.contains(
                &"iifname \"shl0a140300\" ip saddr { 10.20.3.2 } ip daddr 10.20.9.2 jump vip0"
            ),
            "{t}"
        );
        assert!(
            lines.contains(&"numgen random mod 2 vmap { 0 : goto vip0_0, 1 : goto vip0_1 }"),
            "{t}"
        );
        assert!(lines.contains(&"dnat to 10.20.4.5"), "{t}");
        // No backend: no jump, and dropped rather than routed out.
        assert!(!t.contains("jump vip1"), "{t}");
        assert!(lines.contains(&"ip daddr 10.20.9.3 drop"), "{t}");
        assert_eq!(t.matches('{').count(), t.matches('}').count());
    }
}
