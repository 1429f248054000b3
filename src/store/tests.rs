//! Unit tests of the store: atomic batches, version conflicts, and status
//! that only moves forward.

use super::*;
use crate::types::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("state.redb"), Codec::ephemeral()).unwrap();
    (dir, s)
}

fn task(id: &str) -> Task {
    Task {
        id: id.into(),
        meta: Meta::default(),
        service_id: "svc".into(),
        service_name: "web".into(),
        slot: 1,
        node_id: None,
        spec: TaskSpec::default(),
        spec_version: 1,
        restarts: 0,
        desired_state: TaskState::Running,
        status: TaskStatus {
            state: TaskState::Pending,
            ..Default::default()
        },
    }
}

#[test]
fn a_failing_batch_writes_nothing() {
    let (_d, s) = store();
    s.apply(vec![Change::Create(Object::Task(task("a")))])
        .unwrap();
    // Another task under the id of `a`: refused, and `b` goes with it.
    let mut other = task("a");
    other.slot = 2;
    let err = s
        .apply(vec![
            Change::Create(Object::Task(task("b"))),
            Change::Create(Object::Task(other)),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }));
    let r = s.read().unwrap();
    assert!(r.task("b").unwrap().is_none());
    assert_eq!(r.index().unwrap(), 1);
}

#[test]
fn an_update_from_a_stale_read_is_a_conflict() {
    let (_d, s) = store();
    s.apply(vec![Change::Create(Object::Task(task("a")))])
        .unwrap();
    let read = s.read().unwrap().task("a").unwrap().unwrap();
    let mut first = read.clone();
    first.slot = 2;
    s.apply(vec![Change::Update(Object::Task(first))]).unwrap();
    let mut second = read;
    second.slot = 3;
    let err = s
        .apply(vec![Change::Update(Object::Task(second))])
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(s.read().unwrap().task("a").unwrap().unwrap().slot, 2);
}

#[test]
fn task_status_only_moves_forward() {
    let (_d, s) = store();
    s.apply(vec![Change::Create(Object::Task(task("a")))])
        .unwrap();
    s.apply(vec![Change::TaskStatus {
        id: "a".into(),
        status: status(TaskState::Running),
        node: None,
    }])
    .unwrap();
    s.apply(vec![Change::TaskStatus {
        id: "a".into(),
        status: status(TaskState::Starting),
        node: None,
    }])
    .unwrap();
    let t = s.read().unwrap().task("a").unwrap().unwrap();
    assert_eq!(t.status.state, TaskState::Running);
    // A report for a task that is gone is ignored, not an error.
    s.apply(vec![Change::TaskStatus {
        id: "gone".into(),
        status: status(TaskState::Running),
        node: None,
    }])
    .unwrap();
}

#[test]
fn events_follow_commits() {
    let (_d, s) = store();
    let mut rx = s.watch();
    s.apply(vec![Change::Create(Object::Task(task("a")))])
        .unwrap();
    let c = rx.try_recv().unwrap();
    assert_eq!(c.changed.len(), 1);
    assert!(c.changed[0].is(Kind::Task) && c.changed[0].id == "a");
    assert!(
        matches!(&c.changed[0].written, Written::Object(o) if matches!(&**o, Object::Task(t) if t.id == "a")),
        "{:?}",
        c.changed[0].written
    );
    let mut other = task("a");
    other.slot = 2;
    assert!(s.apply(vec![Change::Create(Object::Task(other))]).is_err());
    assert!(rx.try_recv().is_err(), "a failed batch publishes nothing");
}

#[test]
fn assignment_applies_only_to_pending_unassigned_tasks() {
    let (_d, s) = store();
    s.apply(vec![Change::Create(Object::Task(task("a")))])
        .unwrap();
    let assign = |n: &str| Change::TaskAssign {
        id: "a".into(),
        node_id: n.into(),
    };
    s.apply(vec![assign("n1")]).unwrap();
    s.apply(vec![assign("n2")]).unwrap();
    let t = s.read().unwrap().task("a").unwrap().unwrap();
    assert_eq!(t.node_id.as_deref(), Some("n1"));
    assert_eq!(t.status.state, TaskState::Assigned);
}

fn service(id: &str, name: &str) -> Service {
    Service {
        id: id.into(),
        meta: Meta::default(),
        spec: ServiceSpec {
            name: name.into(),
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
    }
}

#[test]
fn a_service_name_is_taken_once_whatever_its_id() {
    let (_d, s) = store();
    s.apply(vec![Change::Create(Object::Service(service("a", "web")))])
        .unwrap();
    // Another id, the same name: two creates raced through two managers.
    let err = s
        .apply(vec![Change::Create(Object::Service(service("b", "web")))])
        .unwrap_err();
    assert_eq!(err.to_string(), "service web already exists");
    // Within one batch too, and an update cannot rename onto a taken name.
    let err = s
        .apply(vec![
            Change::Create(Object::Service(service("c", "db"))),
            Change::Create(Object::Service(service("d", "db"))),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }), "{err}");
    s.apply(vec![Change::Create(Object::Service(service("e", "api")))])
        .unwrap();
    let mut renamed = s.read().unwrap().service("e").unwrap().unwrap();
    renamed.spec.name = "web".into();
    let err = s
        .apply(vec![Change::Update(Object::Service(renamed.clone()))])
        .unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }), "{err}");
    // Its own name is not taken from itself; a removed service frees it.
    renamed.spec.name = "api".into();
    s.apply(vec![Change::Update(Object::Service(renamed))])
        .unwrap();
    s.apply(vec![Change::Delete {
        kind: Kind::Service,
        id: "a".into(),
        expected_version: None,
    }])
    .unwrap();
    s.apply(vec![Change::Create(Object::Service(service("b", "web")))])
        .unwrap();
}

fn status(state: TaskState) -> TaskStatus {
    TaskStatus {
        state,
        ..Default::default()
    }
}

/// The decoded tasks that one-field changes start from (`TaskCache`) are
/// exactly what is stored: a rejected batch leaves nothing in them, and a
/// snapshot import replaces them. Each check compares with a store that
/// reads the task from disk.
#[test]
fn task_changes_start_from_what_is_stored() {
    let (_d, s) = store();
    s.apply(vec![Change::Create(Object::Task(task("a")))])
        .unwrap();
    let before = s.export().unwrap().0;

    // A batch that moves `a` to running, then fails: `a` stays pending.
    let err = s
        .apply(vec![
            Change::TaskStatus {
                id: "a".into(),
                status: status(TaskState::Running),
                node: None,
            },
            Change::Create(Object::Task(task("a"))),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }));
    s.apply(vec![Change::TaskDesired {
        id: "a".into(),
        state: TaskState::Shutdown,
    }])
    .unwrap();
    let a = s.read().unwrap().task("a").unwrap().unwrap();
    assert_eq!(a.status.state, TaskState::Pending, "{a:?}");
    assert_eq!(a.desired_state, TaskState::Shutdown);

    // A change after an import starts from the imported task.
    s.apply(vec![Change::TaskStatus {
        id: "a".into(),
        status: status(TaskState::Running),
        node: None,
    }])
    .unwrap();
    s.import(&before).unwrap();
    s.apply(vec![Change::TaskAssign {
        id: "a".into(),
        node_id: "n1".into(),
    }])
    .unwrap();
    let a = s.read().unwrap().task("a").unwrap().unwrap();
    assert_eq!(a.status.state, TaskState::Assigned, "{a:?}");
    assert_eq!(a.desired_state, TaskState::Running, "{a:?}");

    // Deleted in one batch and created again in the next: the new one.
    s.apply(vec![Change::Delete {
        kind: Kind::Task,
        id: "a".into(),
        expected_version: None,
    }])
    .unwrap();
    s.apply(vec![Change::Create(Object::Task(task("a")))])
        .unwrap();
    s.apply(vec![Change::TaskDesired {
        id: "a".into(),
        state: TaskState::Shutdown,
    }])
    .unwrap();
    let a = s.read().unwrap().task("a").unwrap().unwrap();
    assert_eq!(a.status.state, TaskState::Pending, "{a:?}");
    assert_eq!(a.node_id, None, "{a:?}");
}

/// A write sent again after it was applied (a follower retrying through a
/// new leader) succeeds without doing anything twice; only a different
/// object under the same id is "already exists", and only a different
/// update from a stale read is a conflict.
#[test]
fn a_write_sent_again_is_done_once_and_succeeds() {
    let (_d, s) = store();
    let svc = service("s1", "web");
    let first = s
        .apply(vec![Change::Create(Object::Service(svc.clone()))])
        .unwrap();
    s.apply(vec![Change::Create(Object::Service(svc.clone()))])
        .expect("the same create again succeeds");
    let stored = s.read().unwrap().service("s1").unwrap().unwrap();
    assert_eq!(stored.meta.version, first, "applied once");
    assert_eq!(s.read().unwrap().services().unwrap().len(), 1);

    let mut renamed = svc.clone();
    renamed.spec.name = "api".into();
    let err = s
        .apply(vec![Change::Create(Object::Service(renamed))])
        .unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }), "{err:?}");

    // An update from version `first`, applied, then sent again.
    let mut scaled = stored.clone();
    scaled.spec.labels.insert("tier".into(), "front".into());
    let second = s
        .apply(vec![Change::Update(Object::Service(scaled.clone()))])
        .unwrap();
    s.apply(vec![Change::Update(Object::Service(scaled.clone()))])
        .expect("the same update again succeeds");
    let stored = s.read().unwrap().service("s1").unwrap().unwrap();
    assert_eq!(stored.meta.version, second, "applied once");
    // A delete sent again is done already.
    let gone = service("s2", "db");
    s.apply(vec![Change::Create(Object::Service(gone.clone()))])
        .unwrap();
    for _ in 0..2 {
        s.apply(vec![Change::Delete {
            kind: Kind::Service,
            id: "s2".into(),
            expected_version: None,
        }])
        .expect("a delete, and the same delete again");
    }
    assert!(s.read().unwrap().service("s2").unwrap().is_none());
    // Another change from the same stale read is still a conflict.
    let mut other = scaled;
    other.spec.labels.insert("tier".into(), "back".into());
    let err = s
        .apply(vec![Change::Update(Object::Service(other))])
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
}

fn network(id: &str, name: &str, subnet: &str) -> Network {
    Network {
        id: id.into(),
        meta: Meta::default(),
        spec: NetworkSpec {
            name: name.into(),
            driver: NetworkDriver::Overlay,
            subnet: subnet.into(),
            gateway: String::new(),
            encrypted: true,
            attachable: false,
            labels: Default::default(),
        },
    }
}

#[test]
fn a_subnet_is_given_once_whoever_asks() {
    let (_d, s) = store();
    s.apply(vec![Change::Create(Object::Network(network(
        "n1",
        "front",
        "10.20.1.0/24",
    )))])
    .unwrap();
    // The same subnet under another name, as two leaders might both have
    // allocated it: refused, naming what holds it.
    let err = s
        .apply(vec![Change::Create(Object::Network(network(
            "n2",
            "back",
            "10.20.1.0/25",
        )))])
        .unwrap_err();
    assert!(err.to_string().contains("network front"), "{err}");
    // A node's bridge cannot take it either.
    let mut n = crate::sim::objects::node("w1", &[]);
    n.bridge_subnet = Some("10.20.0.0/23".into());
    let err = s
        .apply(vec![Change::Create(Object::Node(n.clone()))])
        .unwrap_err();
    assert!(err.to_string().contains("overlaps"), "{err}");
    n.bridge_subnet = Some("10.20.2.0/24".into());
    s.apply(vec![Change::Create(Object::Node(n))]).unwrap();
    // And a network's name is taken once.
    let err = s
        .apply(vec![Change::Create(Object::Network(network(
            "n3",
            "front",
            "10.20.9.0/24",
        )))])
        .unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }), "{err}");
}

#[test]
fn a_network_in_use_stays_and_a_service_joins_only_what_exists() {
    let (_d, s) = store();
    let mut svc = service("s1", "api");
    svc.spec.task.network = NetworkMode::Own(vec![NetworkAttachment {
        network: "n1".into(),
        aliases: vec![],
    }]);
    let err = s
        .apply(vec![Change::Create(Object::Service(svc.clone()))])
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    s.apply(vec![
        Change::Create(Object::Network(network("n1", "back", "10.20.1.0/24"))),
        Change::Create(Object::Service(svc)),
    ])
    .unwrap();
    let delete = || {
        s.apply(vec![Change::Delete {
            kind: Kind::Network,
            id: "n1".into(),
            expected_version: None,
        }])
    };
    let err = delete().unwrap_err();
    assert!(err.to_string().contains("in use by service api"), "{err}");
    s.apply(vec![Change::Delete {
        kind: Kind::Service,
        id: "s1".into(),
        expected_version: None,
    }])
    .unwrap();
    delete().unwrap();
    assert!(s.read().unwrap().networks().unwrap().is_empty());
}

fn secret(id: &str, name: &str) -> crate::types::Secret {
    crate::types::Secret {
        id: id.into(),
        meta: Meta::default(),
        spec: crate::types::SecretSpec {
            name: name.into(),
            labels: Default::default(),
            data: bytes::Bytes::from_static(b"data"),
        },
    }
}

#[test]
fn secrets_and_configs_are_named_once_per_kind_used_only_if_there_and_kept_while_used() {
    let (_d, s) = store();
    s.apply(vec![
        Change::Create(Object::Secret(secret("x1", "pw"))),
        // A config may have a secret's name: another kind.
        Change::Create(Object::Config(secret("c1", "pw"))),
    ])
    .unwrap();
    let err = s
        .apply(vec![Change::Create(Object::Secret(secret("x2", "pw")))])
        .unwrap_err();
    assert!(matches!(err, StoreError::Exists { .. }), "{err}");

    let mut svc = service("s1", "db");
    let uses = |id: &str| crate::types::FileRef {
        id: id.into(),
        name: "pw".into(),
        target: "pw".into(),
        uid: 0,
        gid: 0,
        mode: 0o444,
    };
    svc.spec.task.secrets = vec![uses("gone")];
    let err = s
        .apply(vec![Change::Create(Object::Service(svc.clone()))])
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    svc.spec.task.secrets = vec![uses("x1")];
    svc.spec.task.configs = vec![uses("c1")];
    s.apply(vec![Change::Create(Object::Service(svc))]).unwrap();
    for (kind, id) in [(Kind::Secret, "x1"), (Kind::Config, "c1")] {
        let err = s
            .apply(vec![Change::Delete {
                kind,
                id: id.into(),
                expected_version: None,
            }])
            .unwrap_err();
        assert!(err.to_string().contains("in use by service db"), "{err}");
    }
    // A snapshot carries them.
    let (dump, _) = s.export().unwrap();
    let (_d2, other) = store();
    other.import(&dump).unwrap();
    let view = other.read().unwrap();
    let secrets = view.secrets().unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].spec, secret("x1", "pw").spec);
    assert_eq!(view.configs().unwrap().len(), 1);
}
