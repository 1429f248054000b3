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
        manager: None,
        version: String::new(),
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
                task: TaskSpec::default(),
            },
            spec_version: 1,
            previous_spec: None,
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

    // Only nodes with the image are eligible, when some node has it.
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
    // An image for another platform does not make a node eligible.
    b.description.platform.arch = "arm64".into();
    assert_eq!(
        place(&t, &[a, b], &Load::default()).unwrap_err(),
        "no suitable node (1 node has an unsupported platform (linux/arm64), 1 node lacks image docker.io/library/busybox:latest)"
    );
}
