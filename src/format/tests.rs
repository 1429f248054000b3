//! The fixtures in tests/fixtures/format/ are values as released shoals
//! wrote them, and are never regenerated: every one must still decode.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::*;
use crate::types::*;

fn fixture(release: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/format")
        .join(release)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn v1(name: &str) -> Vec<u8> {
    fixture("v1", name)
}

/// A format-1 message as it travels (bare postcard), read into today's type.
fn v1_message<Old: serde::de::DeserializeOwned + Serialize, New: serde::de::DeserializeOwned>(
    name: &str,
) -> New {
    let old: Old = postcard::from_bytes(&v1(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    transcode(&old).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn stored_objects_of_format_1_decode() {
    let node: Node = decode(&v1("store-node.bin")).unwrap();
    assert_eq!(node.id, "n9c3v7b1x5z2");
    assert_eq!(node.spec.availability, Availability::Drain);
    assert_eq!(node.description.images[0].platforms.len(), 2);
    assert_eq!(node.status.state, NodeState::Ready);

    let service: Service = decode(&v1("store-service.bin")).unwrap();
    assert_eq!(service.spec.name, "web");
    assert_eq!(service.spec.mode, ServiceMode::Replicated { replicas: 3 });
    assert_eq!(service.spec.task.container.env, ["A=1", "B=two"]);
    assert_eq!(service.spec.task.restart.max_attempts, Some(3));
    assert_eq!(
        service.previous_spec.as_ref().map(|s| &s.mode),
        Some(&ServiceMode::Global)
    );

    let task: Task = decode(&v1("store-task.bin")).unwrap();
    assert_eq!(task.slot, 2);
    assert_eq!(task.desired_state, TaskState::Running);
    assert_eq!(task.status.state, TaskState::Failed);
    assert_eq!(task.status.exit_code, Some(3));
    assert!(task.status.oom_killed);

    let cluster: Cluster = decode(&v1("store-cluster.bin")).unwrap();
    assert_eq!(cluster.task_history_limit, 5);
    assert!(cluster
        .join_tokens
        .worker
        .to_string()
        .starts_with("SHOAL-1-"));
    assert!(cluster.unlock_key.unwrap().starts_with("SHOALKEY-1-"));
}

#[test]
fn raft_log_and_marks_of_format_1_decode() {
    use crate::raft::{Member, NodeId, TypeConfig};
    use openraft::{Entry, EntryPayload, LogId, StoredMembership, Vote};

    let blank: Entry<TypeConfig> = decode(&v1("raft-entry-0.bin")).unwrap();
    assert!(matches!(blank.payload, EntryPayload::Blank));
    assert_eq!(blank.log_id.index, 10);
    let normal: Entry<TypeConfig> = decode(&v1("raft-entry-1.bin")).unwrap();
    let EntryPayload::Normal(req) = normal.payload else {
        panic!("entry 1 is a normal entry");
    };
    assert_eq!(req.batch.len(), 8);
    assert_eq!(req.now_ms, 1_764_500_003_000);
    let membership: Entry<TypeConfig> = decode(&v1("raft-entry-2.bin")).unwrap();
    let EntryPayload::Membership(m) = membership.payload else {
        panic!("entry 2 is a membership entry");
    };
    assert_eq!(m.voter_ids().count(), 2);

    let vote: Vote<NodeId> = decode(&v1("raft-vote.bin")).unwrap();
    assert!(vote.is_committed());
    let log_id: LogId<NodeId> = decode(&v1("raft-log-id.bin")).unwrap();
    assert_eq!(log_id.index, 12);
    let applied: Option<LogId<NodeId>> = decode(&v1("raft-applied.bin")).unwrap();
    assert_eq!(applied, Some(log_id));
    let stored: StoredMembership<NodeId, Member> = decode(&v1("raft-membership.bin")).unwrap();
    assert_eq!(
        stored.membership().get_node(&77).map(|m| m.addr.as_str()),
        Some("192.168.1.10:4290")
    );
}

#[test]
fn a_format_1_snapshot_imports_into_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(
        &tmp.path().join("state.redb"),
        crate::store::Codec::ephemeral(),
    )
    .unwrap();
    // As the state machine reads it from a format-1 snapshot file.
    let file: crate::raft::StoredSnapshot = decode(&v1("raft-snapshot-file.bin")).unwrap();
    assert_eq!(file.meta.snapshot_id, "3-77-12");
    for data in [file.data, v1("store-export.bin")] {
        store.import(&data).unwrap();
        let view = store.read().unwrap();
        assert_eq!(view.services().unwrap()[0].spec.name, "web");
        assert_eq!(view.tasks().unwrap()[0].status.exit_code, Some(3));
        assert_eq!(view.nodes().unwrap()[0].description.hostname, "pi1");
    }
}

#[test]
fn rpc_and_raft_messages_of_format_1_decode() {
    use crate::raft::{wire::Forward, Request, TypeConfig};
    use crate::rpc::messages as m;
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

    let _: m::Empty = v1_message::<v1::Empty, _>("rpc-empty.bin");
    let root: m::RootInfo = v1_message::<v1::RootInfo, _>("rpc-root-info.bin");
    assert_eq!(root.cluster_id, "c7d8e9f0a1b2");
    let join: m::JoinRequest = v1_message::<v1::JoinRequest, _>("rpc-join-request.bin");
    assert_eq!(join.description.platform.arch, "arm64");
    let joined: m::JoinResponse = v1_message::<v1::JoinResponse, _>("rpc-join-response.bin");
    assert_eq!(joined.role, NodeRole::Worker);
    let _: m::RenewRequest = v1_message::<v1::RenewRequest, _>("rpc-renew-request.bin");
    let _: m::RenewResponse = v1_message::<v1::RenewResponse, _>("rpc-renew-response.bin");
    let session: m::SessionRequest = v1_message::<v1::SessionRequest, _>("rpc-session-request.bin");
    assert_eq!(session.version, "0.1.0");
    let assignments: m::SessionMessage =
        v1_message::<v1::SessionMessage, _>("rpc-session-assignments.bin");
    assert!(matches!(
        assignments,
        m::SessionMessage::Assignments { full: true, ref tasks, .. } if tasks[0].slot == 2
    ));
    let cluster: m::SessionMessage = v1_message::<v1::SessionMessage, _>("rpc-session-cluster.bin");
    assert!(matches!(
        cluster,
        m::SessionMessage::Cluster {
            role: NodeRole::Manager,
            ..
        }
    ));
    let hb: m::HeartbeatResponse =
        v1_message::<v1::HeartbeatResponse, _>("rpc-heartbeat-response.bin");
    assert_eq!(hb.period_ms, 1_000);
    let batch: m::StatusBatch = v1_message::<v1::StatusBatch, _>("rpc-status-batch.bin");
    assert_eq!(batch.updates[0].status.state, TaskState::Failed);
    let logs: m::LogsRequest = v1_message::<v1::LogsRequest, _>("rpc-logs-request.bin");
    assert_eq!(logs.tail, Some(10));
    let item: m::LogItem = v1_message::<v1::LogItem, _>("rpc-log-item.bin");
    assert_eq!(item.line.stream, crate::logs::Stream::Stderr);

    // Raft's peer messages carry openraft's types around our payloads.
    let append: AppendEntriesRequest<TypeConfig> =
        v1_message::<AppendEntriesRequest<v1::TypeConfig>, _>("raft-append-request.bin");
    assert_eq!(append.entries.len(), 3);
    let _: VoteRequest<u64> = v1_message::<VoteRequest<u64>, _>("raft-vote-request.bin");
    let snap: InstallSnapshotRequest<TypeConfig> =
        v1_message::<InstallSnapshotRequest<v1::TypeConfig>, _>("raft-snapshot-request.bin");
    assert!(snap.done);
    let write: Forward = v1_message::<v1::Forward, _>("raft-forward-write.bin");
    assert!(matches!(write, Forward::Write(Request { ref batch, .. }) if batch.len() == 8));
    let _: Forward = v1_message::<v1::Forward, _>("raft-forward-add-me.bin");
    let _: Forward = v1_message::<v1::Forward, _>("raft-forward-remove.bin");
    let _: Forward = v1_message::<v1::Forward, _>("raft-forward-read-index.bin");
    let err: Result<(u64, u64), crate::store::StoreError> =
        v1_message::<Result<(u64, u64), v1::StoreError>, _>("raft-forward-err.bin");
    assert!(matches!(err, Err(crate::store::StoreError::Exists { .. })));
    let ok: Result<(u64, u64), crate::store::StoreError> =
        v1_message::<Result<(u64, u64), v1::StoreError>, _>("raft-forward-ok.bin");
    assert_eq!(ok.unwrap(), (41, 12));
}

/// A later release's `Service`: one new optional field and one new field
/// with a default, next to the fields of today.
#[derive(Debug, Serialize, Deserialize)]
struct ServiceNext {
    id: String,
    meta: Meta,
    spec: ServiceSpec,
    spec_version: u64,
    previous_spec: Option<ServiceSpec>,
    health_check: Option<String>,
    #[serde(default)]
    update_parallelism: u32,
}

impl Versioned for ServiceNext {
    type V1 = v1::Service;
}

#[test]
fn an_added_optional_field_needs_no_migration() {
    // The format-1 fixture, read into a type with new fields.
    let next: ServiceNext = decode(&v1("store-service.bin")).unwrap();
    assert_eq!(next.spec.name, "web");
    assert_eq!(next.health_check, None);
    assert_eq!(next.update_parallelism, 0);

    // A value of today, read by the later release...
    let today: Service = decode(&v1("store-service.bin")).unwrap();
    let next: ServiceNext = decode(&encode(&today)).unwrap();
    assert_eq!(next.spec, today.spec);
    // ...and a value of the later release, read by today's (the new fields
    // are ignored).
    let later = ServiceNext {
        health_check: Some("curl -f localhost".into()),
        update_parallelism: 2,
        ..next
    };
    let back: Service = from_msgpack(&to_msgpack(&later)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.spec, today.spec);
    assert_eq!(back.id, today.id);
    assert_eq!(back.previous_spec, today.previous_spec);
}

#[test]
fn empty_fields_are_left_out_and_still_reach_older_nodes() {
    // A task as the orchestrator makes it: no node yet, no args, env,
    // labels, constraints, error, exit code. Those fields are not written
    // (each name costs bytes in every stored copy and log entry)...
    let mut task: Task = decode(&v1("store-task.bin")).unwrap();
    task.node_id = None;
    task.spec = Default::default();
    task.status = Default::default();
    let bytes = encode(&task);
    for name in [
        "node_id",
        "args",
        "env",
        "labels",
        "constraints",
        "exit_code",
        "oom_killed",
    ] {
        assert!(
            !bytes.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name} is empty and must not be written"
        );
    }
    // ...read back as they were...
    assert_eq!(decode::<Task>(&bytes).unwrap(), task);
    // ...and carried into the types of 254a909, for a node one release
    // behind, and back.
    let old: v1::Task = transcode(&task).unwrap_or_else(|e| panic!("{e}"));
    let back: Task = transcode(&old).unwrap();
    assert_eq!(back, task);
    let service: Service = decode(&v1("store-service.bin")).unwrap();
    let old: v1::Service = transcode(&service).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(transcode::<_, Service>(&old).unwrap(), service);
}

#[test]
fn today_s_values_round_trip() {
    let task: Task = decode(&v1("store-task.bin")).unwrap();
    let bytes = encode(&task);
    assert_eq!(bytes[0], CURRENT);
    assert_eq!(decode::<Task>(&bytes).unwrap(), task);
}

#[test]
fn a_newer_or_damaged_value_is_refused_clearly() {
    let err = decode::<Task>(&[9, 1, 2]).unwrap_err().to_string();
    assert!(err.contains("unknown format 9"), "{err}");
    assert!(decode::<Task>(&[]).is_err());
    assert!(decode::<Task>(&[CURRENT, 0xc1]).is_err());
    assert!(decode::<Task>(&[POSTCARD_V1, 0xff, 0xff]).is_err());
}

#[test]
fn encoded_len_is_the_length_of_the_encoding() {
    let mut spec = ServiceSpec {
        name: "web".into(),
        labels: Default::default(),
        mode: ServiceMode::Replicated { replicas: 3 },
        endpoint_mode: Default::default(),
        update: Default::default(),
        rollback: Default::default(),
        depends_on: Vec::new(),
        task: Default::default(),
    };
    spec.task.container.env = vec!["A=1".into(); 100];
    assert_eq!(encoded_len(&spec), encode(&spec).len());
    assert_eq!(encoded_len(&()), encode(&()).len());
}
