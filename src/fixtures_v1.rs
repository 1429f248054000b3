//! One-off: writes the encoded samples of every stored type, Raft entry,
//! snapshot and RPC message as this release (254a909) writes them, into
//! tests/fixtures/format/v1/. Run once with SHOAL_WRITE_FIXTURES=1; the
//! files are then never regenerated (a later release adds its own beside
//! them), and this file is removed in the next commit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership,
    Vote,
};

use crate::logs::{LogLine, Stream};
use crate::raft::{Member, Request, Response, TypeConfig};
use crate::rpc::messages::*;
use crate::store::codec::encode_plain;
use crate::store::{Change, Kind, Object, StoreError};
use crate::types::*;

fn meta() -> Meta {
    Meta {
        version: 42,
        created_ms: 1_764_500_000_000,
        updated_ms: 1_764_500_001_000,
    }
}

fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        labels: BTreeMap::from([("tier".into(), "front".into())]),
        mode: ServiceMode::Replicated { replicas: 3 },
        task: TaskSpec {
            container: ContainerSpec {
                image: "docker.io/library/busybox:latest".into(),
                args: vec!["sleep".into(), "3600".into()],
                env: vec!["A=1".into(), "B=two".into()],
                workdir: Some("/tmp".into()),
                user: Some("1000:1000".into()),
                labels: BTreeMap::from([("app".into(), "web".into())]),
                stop_signal: Some("SIGINT".into()),
                stop_grace_period_ms: 10_000,
            },
            restart: RestartPolicy {
                condition: RestartCondition::OnFailure,
                delay_ms: 5_000,
                max_attempts: Some(3),
            },
            placement: Placement {
                constraints: vec!["node.labels.zone==a".into()],
            },
        },
    }
}

fn service() -> Service {
    let mut previous = spec();
    previous.mode = ServiceMode::Global;
    previous.task.restart.condition = RestartCondition::Any;
    Service {
        id: "s1xq8b2k4m7n".into(),
        meta: meta(),
        spec: spec(),
        spec_version: 2,
        previous_spec: Some(previous),
    }
}

fn description() -> NodeDescription {
    NodeDescription {
        hostname: "pi1".into(),
        platform: Platform {
            os: "linux".into(),
            arch: "arm64".into(),
        },
        cpus: 4,
        memory_bytes: 4 << 30,
        images: vec![ImageInfo {
            name: "docker.io/library/busybox:latest".into(),
            digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                .into(),
            platforms: vec!["linux/arm64".into(), "linux/amd64".into()],
            size_bytes: 1_234_567,
        }],
    }
}

fn node() -> Node {
    Node {
        id: "n9c3v7b1x5z2".into(),
        meta: meta(),
        spec: NodeSpec {
            role: NodeRole::Manager,
            availability: Availability::Drain,
            labels: BTreeMap::from([("zone".into(), "a".into())]),
        },
        description: description(),
        status: NodeStatus {
            state: NodeState::Ready,
            message: "ready".into(),
            addr: "192.168.1.10:4290".into(),
        },
        version: "0.1.0".into(),
    }
}

fn task() -> Task {
    Task {
        id: "t4k2j8h6g3f1".into(),
        meta: meta(),
        service_id: "s1xq8b2k4m7n".into(),
        service_name: "web".into(),
        slot: 2,
        node_id: Some("n9c3v7b1x5z2".into()),
        spec: spec().task,
        spec_version: 2,
        restarts: 1,
        desired_state: TaskState::Running,
        status: TaskStatus {
            state: TaskState::Failed,
            timestamp_ms: 1_764_500_002_000,
            message: "exited".into(),
            error: Some("exit code 3".into()),
            container_id: Some("t4k2j8h6g3f1-ab12".into()),
            exit_code: Some(3),
            oom_killed: true,
        },
    }
}

fn cluster() -> Cluster {
    let digest = "ab".repeat(32);
    Cluster {
        id: "c7d8e9f0a1b2".into(),
        meta: meta(),
        heartbeat_period_ms: 1_000,
        task_history_limit: 5,
        cert_expiry_ms: 90 * 24 * 3600 * 1000,
        ca_cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        ca_key_pem: "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n".into(),
        join_tokens: crate::tls::JoinTokens::generate(&digest).unwrap(),
        removed_nodes: vec!["n0removed000".into()],
        snapshot_interval: 10_000,
        unlock_key: Some(format!("SHOALKEY-1-{}", "cd".repeat(32))),
    }
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(3, 77), index)
}

fn member() -> Member {
    Member {
        node_id: "n9c3v7b1x5z2".into(),
        addr: "192.168.1.10:4290".into(),
    }
}

fn membership() -> Membership<u64, Member> {
    Membership::new(
        vec![BTreeSet::from([77, 78])],
        BTreeMap::from([
            (77, member()),
            (
                78,
                Member {
                    node_id: "n2second0000".into(),
                    addr: "192.168.1.11:4290".into(),
                },
            ),
        ]),
    )
}

fn request() -> Request {
    Request {
        batch: vec![
            Change::Create(Object::Service(service())),
            Change::Update(Object::Node(node())),
            Change::Create(Object::Task(task())),
            Change::Update(Object::Cluster(cluster())),
            Change::Delete {
                kind: Kind::Task,
                id: "t0old0000000".into(),
                expected_version: Some(7),
            },
            Change::TaskStatus {
                id: "t4k2j8h6g3f1".into(),
                status: task().status,
            },
            Change::TaskDesired {
                id: "t4k2j8h6g3f1".into(),
                state: TaskState::Shutdown,
            },
            Change::TaskAssign {
                id: "t4k2j8h6g3f1".into(),
                node_id: "n9c3v7b1x5z2".into(),
            },
        ],
        now_ms: 1_764_500_003_000,
    }
}

fn entries() -> Vec<Entry<TypeConfig>> {
    vec![
        Entry {
            log_id: log_id(10),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(11),
            payload: EntryPayload::Normal(request()),
        },
        Entry {
            log_id: log_id(12),
            payload: EntryPayload::Membership(membership()),
        },
    ]
}

fn snapshot_meta() -> SnapshotMeta<u64, Member> {
    SnapshotMeta {
        last_log_id: Some(log_id(12)),
        last_membership: StoredMembership::new(Some(log_id(12)), membership()),
        snapshot_id: "3-77-12".into(),
    }
}

#[test]
fn write_v1_fixtures() {
    if std::env::var_os("SHOAL_WRITE_FIXTURES").is_none() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format/v1");
    std::fs::create_dir_all(&dir).unwrap();
    let put = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
    let pc = |v: &dyn erased::Ser| v.bytes();

    // Stored values: the version byte and postcard (then sealed on disk).
    put("store-node.bin", encode_plain(&node()));
    put("store-service.bin", encode_plain(&service()));
    put("store-task.bin", encode_plain(&task()));
    put("store-cluster.bin", encode_plain(&cluster()));
    // Raft's log, vote and marks.
    for (i, e) in entries().iter().enumerate() {
        put(&format!("raft-entry-{i}.bin"), encode_plain(e));
    }
    put("raft-vote.bin", encode_plain(&Vote::new_committed(3, 77)));
    put("raft-log-id.bin", encode_plain(&log_id(12)));
    put("raft-applied.bin", encode_plain(&Some(log_id(12))));
    put(
        "raft-membership.bin",
        encode_plain(&StoredMembership::new(Some(log_id(12)), membership())),
    );
    // A store export (a Raft snapshot's data) and the snapshot file's value.
    let tmp = tempfile::tempdir().unwrap();
    let store =
        crate::store::Store::open(&tmp.path().join("state.redb"), crate::store::Codec::ephemeral())
            .unwrap();
    store
        .apply_marked(
            vec![
                Change::Create(Object::Cluster(cluster())),
                Change::Create(Object::Node(node())),
                Change::Create(Object::Service(service())),
                Change::Create(Object::Task(task())),
            ],
            1_764_500_003_000,
            &crate::raft::StateMachine::marks(
                Some(log_id(12)),
                Some(&StoredMembership::new(Some(log_id(12)), membership())),
            ),
        )
        .unwrap()
        .unwrap();
    let (export, _) = store.export().unwrap();
    put("store-export.bin", export.clone());
    // The state machine's snapshot file: (meta, export), sealed on disk.
    put(
        "raft-snapshot-file.bin",
        encode_plain(&(snapshot_meta(), export)),
    );
    // RPC messages (the gRPC payload is plain postcard).
    put("rpc-empty.bin", pc(&Empty {}));
    put(
        "rpc-root-info.bin",
        pc(&RootInfo {
            cluster_id: "c7d8e9f0a1b2".into(),
            ca_pem: cluster().ca_cert_pem,
        }),
    );
    put(
        "rpc-join-request.bin",
        pc(&JoinRequest {
            token: format!("SHOAL-1-{}-{}", "ab".repeat(32), "ef".repeat(16)),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
                .into(),
            description: description(),
            addr: "192.168.1.12:4290".into(),
            version: "0.1.0".into(),
        }),
    );
    put(
        "rpc-join-response.bin",
        pc(&JoinResponse {
            cluster_id: "c7d8e9f0a1b2".into(),
            node_id: "n3third00000".into(),
            cert_pem: "cert".into(),
            ca_pem: "ca".into(),
            managers: vec!["192.168.1.10:4290".into()],
            role: NodeRole::Worker,
        }),
    );
    put(
        "rpc-renew-request.bin",
        pc(&RenewRequest {
            csr_pem: "csr".into(),
        }),
    );
    put(
        "rpc-renew-response.bin",
        pc(&RenewResponse {
            cert_pem: "cert".into(),
        }),
    );
    put(
        "rpc-session-request.bin",
        pc(&SessionRequest {
            description: description(),
            addr: "192.168.1.12:4290".into(),
            version: "0.1.0".into(),
        }),
    );
    put(
        "rpc-session-assignments.bin",
        pc(&SessionMessage::Assignments {
            full: true,
            tasks: vec![task()],
            removed: vec!["t0old0000000".into()],
        }),
    );
    put(
        "rpc-session-cluster.bin",
        pc(&SessionMessage::Cluster {
            managers: vec!["192.168.1.10:4290".into()],
            heartbeat_period_ms: 1_000,
            role: NodeRole::Manager,
        }),
    );
    put(
        "rpc-heartbeat-response.bin",
        pc(&HeartbeatResponse { period_ms: 1_000 }),
    );
    put(
        "rpc-status-batch.bin",
        pc(&StatusBatch {
            updates: vec![("t4k2j8h6g3f1".into(), task().status)],
        }),
    );
    put(
        "rpc-logs-request.bin",
        pc(&LogsRequest {
            task_ids: vec!["t4k2j8h6g3f1".into()],
            tail: Some(10),
            follow: true,
        }),
    );
    put(
        "rpc-log-item.bin",
        pc(&LogItem {
            task_id: "t4k2j8h6g3f1".into(),
            line: LogLine {
                ts: "2026-11-30T20:00:00.000000000Z".into(),
                stream: Stream::Stderr,
                line: "hello".into(),
            },
        }),
    );
    // Raft's peer messages, inside RaftBytes (raft/wire.rs: plain postcard).
    type RaftErr = openraft::error::RaftError<u64>;
    type SnapErr = openraft::error::RaftError<u64, openraft::error::InstallSnapshotError>;
    put(
        "raft-append-request.bin",
        pc(&AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 77),
            prev_log_id: Some(log_id(9)),
            entries: entries(),
            leader_commit: Some(log_id(9)),
        }),
    );
    put(
        "raft-append-response.bin",
        pc(&Ok::<_, RaftErr>(AppendEntriesResponse::<u64>::Success)),
    );
    put(
        "raft-append-conflict.bin",
        pc(&Ok::<_, RaftErr>(AppendEntriesResponse::<u64>::Conflict)),
    );
    put(
        "raft-vote-request.bin",
        pc(&VoteRequest::new(Vote::new(4, 78), Some(log_id(12)))),
    );
    put(
        "raft-vote-response.bin",
        pc(&Ok::<_, RaftErr>(VoteResponse::new(
            Vote::new(4, 78),
            Some(log_id(12)),
            true,
        ))),
    );
    put(
        "raft-snapshot-request.bin",
        pc(&InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 77),
            meta: snapshot_meta(),
            offset: 0,
            data: vec![1, 2, 3, 4],
            done: true,
        }),
    );
    put(
        "raft-snapshot-response.bin",
        pc(&Ok::<_, SnapErr>(InstallSnapshotResponse {
            vote: Vote::new_committed(3, 77),
        })),
    );
    use crate::raft::wire::{Forward, ForwardResult};
    put("raft-forward-write.bin", pc(&Forward::Write(request())));
    put("raft-forward-add-me.bin", pc(&Forward::AddMe(member())));
    put(
        "raft-forward-remove.bin",
        pc(&Forward::Remove("n2second0000".into())),
    );
    put("raft-forward-read-index.bin", pc(&Forward::ReadIndex));
    put("raft-forward-ok.bin", pc(&ForwardResult::Ok((41, 12))));
    put(
        "raft-forward-err.bin",
        pc(&ForwardResult::Err(StoreError::Exists {
            kind: "service".into(),
            id: "web".into(),
        })),
    );
    put(
        "raft-response.bin",
        encode_plain(&Response(Err(StoreError::Unavailable("no quorum".into())))),
    );
}

mod erased {
    pub trait Ser {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn bytes(&self) -> Vec<u8> {
            postcard::to_allocvec(self).unwrap()
        }
    }
}
