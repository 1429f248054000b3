//! Unit tests of placement.

use super::*;
use crate::types::*;

fn node(id: &str, state: NodeState, availability: Availability) -> Node {
    Node {
        id: id.into(),
        meta: Meta::default(),
        spec: NodeSpec {
            role: NodeRole::Worker,
            availability,
            labels: Default::default(),
        },
        description: NodeDescription::default(),
        status: NodeStatus {
            state,
            ..Default::default()
        },
        version: String::new(),
        bridge_subnet: None,
    }
}

fn task(service: &str) -> Task {
    let mut t = crate::orchestrator::new_task(
        &crate::types::Service {
            id: service.into(),
            meta: Meta::default(),
            spec: ServiceSpec {
                name: service.into(),
                labels: Default::default(),
                mode: ServiceMode::Replicated { replicas: 1 },
                endpoint_mode: Default::default(),
                update: Default::default(),
                rollback: Default::default(),
                depends_on: Vec::new(),
                task: TaskSpec::default(),
            },
            spec_version: 1,
            previous_spec: None,
            vips: Vec::new(),
            update_status: None,
            rebalance: Vec::new(),
        },
        1,
        None,
        0,
        0,
    );
    t.status.state = TaskState::Pending;
    t
}

#[test]
fn spreads_by_service_then_by_total() {
    let nodes = [
        node("a", NodeState::Ready, Availability::Active),
        node("b", NodeState::Ready, Availability::Active),
    ];
    let mut load = Load::default();
    load.add("a", "web");
    assert_eq!(place(&task("web"), &nodes, &load).unwrap(), "b");
    load.add("b", "db");
    load.add("b", "db");
    // Same count of "web" on both after this: fewer tasks overall wins.
    load.add("b", "web");
    assert_eq!(place(&task("web"), &nodes, &load).unwrap(), "a");
}

#[test]
fn says_why_nothing_fits() {
    let nodes = [
        node("a", NodeState::Down, Availability::Active),
        node("b", NodeState::Ready, Availability::Drain),
        node("c", NodeState::Ready, Availability::Pause),
    ];
    let err = place(&task("web"), &nodes, &Load::default()).unwrap_err();
    assert_eq!(
        err,
        "no suitable node (2 nodes not active, 1 node not ready)"
    );
}

#[test]
fn a_task_with_its_own_network_goes_only_to_nodes_that_can_give_it() {
    let old = node("old", NodeState::Ready, Availability::Active);
    let mut new = node("new", NodeState::Ready, Availability::Active);
    new.description.level = crate::LEVEL;
    let mut t = task("web");
    t.spec.network = NetworkMode::Own(vec![]);
    assert_eq!(
        place(&t, std::slice::from_ref(&old), &Load::default()).unwrap_err(),
        "no suitable node (1 node runs an older shoal without task networks)"
    );
    assert_eq!(
        place(&t, &[old.clone(), new], &Load::default()).unwrap(),
        "new"
    );
    // The host's network: any node, as before.
    assert_eq!(
        place(&task("web"), &[old], &Load::default()).unwrap(),
        "old"
    );
}

#[test]
fn a_task_with_a_device_goes_only_where_the_device_is() {
    let mut with = node("with", NodeState::Ready, Availability::Active);
    with.description.level = crate::LEVEL;
    with.description.devices = vec!["/dev/ttyUSB0".into(), "/dev/null".into()];
    let mut without = node("without", NodeState::Ready, Availability::Active);
    without.description.level = crate::LEVEL;
    without.description.devices = vec!["/dev/null".into()];
    let old = node("old", NodeState::Ready, Availability::Active);
    let mut t = task("sensor");
    t.spec.container.devices = vec!["/dev/ttyUSB0".parse().unwrap()];
    assert_eq!(
        place(&t, &[without.clone(), with], &Load::default()).unwrap(),
        "with"
    );
    assert_eq!(
        place(&t, &[without, old], &Load::default()).unwrap_err(),
        "no suitable node (1 node does not have device /dev/ttyUSB0, 1 node runs an older shoal without the task's options)"
    );
}

#[test]
fn a_task_with_a_volume_goes_where_the_volume_is_once_one_node_has_it() {
    let mut a = node("a", NodeState::Ready, Availability::Active);
    let mut b = node("b", NodeState::Ready, Availability::Active);
    a.description.level = crate::LEVEL;
    b.description.level = crate::LEVEL;
    let mut t = task("db");
    t.spec.mounts = vec![Mount {
        kind: MountKind::Volume,
        source: "pgdata".into(),
        target: "/data".into(),
        readonly: false,
        tmpfs_size: 0,
        tmpfs_mode: None,
    }];
    // No node has it yet: any (it is made where the task lands).
    let mut load = Load::default();
    load.add("a", "db");
    assert_eq!(place(&t, &[a.clone(), b.clone()], &load).unwrap(), "b");
    // Once a has it, only a, though it runs more.
    a.description.volumes = vec!["pgdata".into()];
    assert_eq!(place(&t, &[a.clone(), b.clone()], &load).unwrap(), "a");
    assert_eq!(
        place(&t, &[a.clone(), b.clone()], &Load::default()).unwrap(),
        "a"
    );
    let mut down = a.clone();
    down.status.state = NodeState::Down;
    assert_eq!(
        place(&t, &[down, b], &Load::default()).unwrap_err(),
        "no suitable node (1 node does not have volume pgdata, 1 node not ready)"
    );
}

#[test]
fn a_task_made_for_a_node_goes_only_there() {
    let nodes = [
        node("a", NodeState::Ready, Availability::Active),
        node("b", NodeState::Ready, Availability::Active),
    ];
    let mut t = task("web");
    t.node_id = Some("b".into());
    assert_eq!(place(&t, &nodes, &Load::default()).unwrap(), "b");
}

#[test]
fn constraints_and_images_filter_nodes_and_say_why() {
    let mut a = node("a", NodeState::Ready, Availability::Active);
    a.spec.labels.insert("zone".into(), "a".into());
    let mut b = node("b", NodeState::Ready, Availability::Active);
    b.spec.labels.insert("zone".into(), "b".into());
    let mut t = task("web");
    t.spec.placement.constraints = vec!["node.labels.zone==a".into()];
    assert_eq!(
        place(&t, &[a.clone(), b.clone()], &Load::default()).unwrap(),
        "a"
    );
    t.spec.placement.constraints = vec!["node.labels.zone==c".into()];
    assert_eq!(
        place(&t, &[a.clone(), b.clone()], &Load::default()).unwrap_err(),
        "no suitable node (2 nodes do not match node.labels.zone==c)"
    );

    // A node with the image is preferred among equals; one without it
    // still qualifies (it pulls the image).
    t.spec.placement.constraints.clear();
    t.spec.container.image = "docker.io/library/busybox:latest".into();
    b.description.images.push(ImageInfo {
        name: t.spec.container.image.clone(),
        platforms: vec!["linux/amd64".into()],
        ..Default::default()
    });
    b.description.platform = Platform {
        os: "linux".into(),
        arch: "amd64".into(),
    };
    assert_eq!(
        place(&t, &[a.clone(), b.clone()], &Load::default()).unwrap(),
        "b"
    );
    // A node's copy of another platform rules it out.
    b.description.platform.arch = "arm64".into();
    assert_eq!(
        place(&t, &[a.clone(), b.clone()], &Load::default()).unwrap(),
        "a"
    );
    // The platforms the registry listed for the image decide: a node of
    // another platform is out, and the message names what it lacks.
    t.spec.container.image_platforms = vec!["linux/arm/v7".into()];
    a.description.platform = Platform {
        os: "linux".into(),
        arch: "amd64".into(),
    };
    assert_eq!(
        place(&t, &[a.clone(), b.clone()], &Load::default()).unwrap_err(),
        "no suitable node (1 node: image has no linux/amd64, 1 node: image has no linux/arm64)"
    );
    t.spec.container.image_platforms = vec!["linux/arm64".into(), "linux/amd64".into()];
    assert_eq!(place(&t, &[a, b], &Load::default()).unwrap(), "b");
}

#[test]
fn the_placer_decides_as_place_does() {
    // Nodes in no particular id order, some unfit, with labels and images.
    let mut nodes = Vec::new();
    for i in [7, 3, 9, 1, 5, 8, 2, 6, 4, 0] {
        let state = if i == 5 {
            NodeState::Down
        } else {
            NodeState::Ready
        };
        let mut n = node(&format!("n{i}"), state, Availability::Active);
        let zone = if i % 2 == 0 { "a" } else { "b" };
        n.spec.labels.insert("zone".into(), zone.into());
        if i % 3 != 0 {
            n.description.images.push(ImageInfo {
                name: "img".into(),
                ..Default::default()
            });
        }
        nodes.push(n);
    }
    let mut tasks = Vec::new();
    for i in 0..60 {
        let mut t = task(["web", "db", "cache"][i % 3]);
        match i % 4 {
            0 => t.spec.placement.constraints = vec!["node.labels.zone==a".into()],
            1 => t.spec.container.image = "img".into(),
            2 => t.spec.placement.constraints = vec!["node.labels.zone==c".into()],
            _ => {}
        }
        if i % 10 == 9 {
            t.node_id = Some(format!("n{}", i % 7));
        }
        tasks.push(t);
    }
    // Some load already, on a node that is gone too.
    let mut running = task("web");
    running.node_id = Some("n2".into());
    running.status.state = TaskState::Running;
    let mut gone = task("db");
    gone.node_id = Some("gone".into());
    gone.status.state = TaskState::Running;
    let existing = [running, gone];

    let mut load = Load::from_tasks(&existing);
    let mut placer = Placer::new(&nodes, &existing);
    let mut placed = 0;
    for t in &tasks {
        let want = place(t, &nodes, &load);
        assert_eq!(placer.place(t), want, "task {}", t.id);
        if let Ok(n) = want {
            load.add(&n, &t.service_id);
            placer.add(&n, t);
            placed += 1;
        }
    }
    assert!(placed > 30 && placed < 60, "{placed} placed");
}

#[test]
fn the_placer_says_why_when_there_are_no_nodes() {
    let t = task("web");
    assert_eq!(
        Placer::new::<Node, Task>(&[], &[]).place(&t).unwrap_err(),
        place(&t, &[] as &[Node], &Load::default()).unwrap_err()
    );
}

/// A Pi 3 with 1 GB is never over-committed by reservations: tasks go
/// where what they reserve is free, and the rest wait, saying why.
#[test]
fn reservations_are_never_over_committed() {
    let pi = |id: &str| {
        let mut n = node(id, NodeState::Ready, Availability::Active);
        n.description.cpus = 4;
        n.description.memory_bytes = 1 << 30;
        n
    };
    let nodes = [pi("a"), pi("b")];
    let reserving = |mem: u64, cpu: u64| {
        let mut t = task("db");
        t.spec.resources.reserve_memory_bytes = mem;
        t.spec.resources.reserve_nano_cpus = cpu;
        t
    };
    let tasks: Vec<Task> = (0..5).map(|_| reserving(400 << 20, 0)).collect();
    let mut placer = Placer::new(&nodes, &[] as &[Task]);
    let mut on: std::collections::BTreeMap<String, usize> = Default::default();
    for t in &tasks[..4] {
        let n = placer.place(t).expect("room for 2 per node");
        placer.add(&n, t);
        *on.entry(n).or_default() += 1;
    }
    assert_eq!(on.values().copied().collect::<Vec<_>>(), [2, 2]);
    assert_eq!(
        placer.place(&tasks[4]).unwrap_err(),
        "no suitable node (2 nodes have less than 400 MiB of memory free)"
    );
    // CPUs too; and a task that reserves nothing still goes anywhere.
    let (cpu_hungry, web) = (reserving(0, 5_000_000_000), task("web"));
    assert_eq!(
        placer.place(&cpu_hungry).unwrap_err(),
        "no suitable node (2 nodes have less than 5 CPUs free)"
    );
    assert!(placer.place(&web).is_ok());
    // Tasks already running count from the start.
    let mut running: Vec<Task> = tasks[..4].to_vec();
    for (t, n) in running.iter_mut().zip(["a", "a", "b", "b"]) {
        t.node_id = Some(n.into());
        t.status.state = TaskState::Running;
    }
    let fresh = Placer::new(&nodes, &running).place(&tasks[4]).unwrap_err();
    assert!(fresh.0.contains("less than 400 MiB"), "{fresh}");
    // A task for one node (global) waits on that node's room.
    let mut global = reserving(400 << 20, 0);
    global.node_id = Some("a".into());
    assert_eq!(
        Placer::new(&nodes, &running).place(&global).unwrap_err(),
        "no suitable node (1 node has less than 400 MiB of memory free)"
    );
}

/// `--placement-pref spread=node.labels.zone`: tasks go to the zone with
/// the fewest of them first, whatever the number of nodes in each zone;
/// nodes without the label are a zone of their own.
#[test]
fn spread_preferences_balance_label_values_before_nodes() {
    let zoned = |id: &str, zone: Option<&str>| {
        let mut n = node(id, NodeState::Ready, Availability::Active);
        if let Some(z) = zone {
            n.spec.labels.insert("zone".into(), z.into());
        }
        n
    };
    // Zone a has three nodes, zone b one, and one node has no zone.
    let nodes = [
        zoned("a1", Some("a")),
        zoned("a2", Some("a")),
        zoned("a3", Some("a")),
        zoned("b1", Some("b")),
        zoned("x1", None),
    ];
    let tasks: Vec<Task> = (0..6)
        .map(|_| {
            let mut t = task("web");
            t.spec.placement.spread = vec!["node.labels.zone".into()];
            t
        })
        .collect();
    let mut placer = Placer::new(&nodes, &[] as &[Task]);
    let mut by_zone: std::collections::BTreeMap<&str, usize> = Default::default();
    for t in &tasks {
        let n = placer.place(t).unwrap();
        placer.add(&n, t);
        let zone = match n.as_bytes()[0] {
            b'a' => "a",
            b'b' => "b",
            _ => "none",
        };
        *by_zone.entry(zone).or_default() += 1;
    }
    assert_eq!(
        by_zone.into_iter().collect::<Vec<_>>(),
        [("a", 2), ("b", 2), ("none", 2)],
        "two per zone, not by node count"
    );
}

/// `--replicas-max-per-node`: never more of the service on one node; the
/// rest wait, saying why.
#[test]
fn replicas_max_per_node_holds() {
    let nodes = [
        node("a", NodeState::Ready, Availability::Active),
        node("b", NodeState::Ready, Availability::Active),
    ];
    let tasks: Vec<Task> = (0..3)
        .map(|_| {
            let mut t = task("web");
            t.spec.placement.max_replicas_per_node = 1;
            t
        })
        .collect();
    let mut placer = Placer::new(&nodes, &[] as &[Task]);
    let first = placer.place(&tasks[0]).unwrap();
    placer.add(&first, &tasks[0]);
    let second = placer.place(&tasks[1]).unwrap();
    placer.add(&second, &tasks[1]);
    assert_ne!(first, second);
    assert_eq!(
        placer.place(&tasks[2]).unwrap_err(),
        "no suitable node (2 nodes already have 1 of its tasks, the most per node)"
    );
    // Another service is not counted.
    let other = task("db");
    assert!(placer.place(&other).is_ok());
}
