//! Build script: generates the gRPC stubs of shoal's node-to-node services
//! (see `rpc_services`), and puts the git commit into `SHOAL_GIT_COMMIT`,
//! for `shoal --version`. It never requires git: outside a checkout, without a
//! `git` binary, or when git refuses the directory, the commit is "unknown".
//! A packager can set `SHOAL_GIT_COMMIT` in the environment to override it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    rpc_services();
    println!("cargo:rerun-if-env-changed=SHOAL_GIT_COMMIT");
    let commit = std::env::var("SHOAL_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SHOAL_GIT_COMMIT={}", commit.trim());
}

/// The short commit of HEAD, and rerun triggers on the files that move when
/// HEAD does. Only existing paths are watched: cargo reruns a build script
/// on every build when a watched path is missing.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    for name in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", name]));
    }
    // The branch file HEAD points at (absent when HEAD is detached).
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
    Some(commit)
}

/// `git rev-parse --git-path` answers relative to the directory git ran in.
fn watch(path: Option<String>) {
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    if let Some(p) = path
        .map(|p| PathBuf::from(dir).join(p))
        .filter(|p| p.exists())
    {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

/// Run git in the crate's directory; `None` on any failure.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// shoal's own gRPC services, described in Rust rather than protobuf: the
/// messages are the serde types in `src/rpc/messages.rs`. Each service is
/// generated twice: `shoal.v2` carries MessagePack (format 2), and
/// `shoal.v1` carries postcard (format 1) for nodes of 254a909, which know
/// only it (src/rpc/codec.rs, docs/formats.md). tonic generates clients
/// and servers.
fn rpc_services() {
    for (package, codec) in [
        ("shoal.v1", "crate::rpc::codec::V1Codec"),
        ("shoal.v2", "crate::rpc::codec::V2Codec"),
    ] {
        rpc_package(package, codec);
    }
}

fn rpc_package(package: &str, codec: &str) {
    use tonic_build::manual::{Builder, Method, Service};

    let method = |name: &str, route: &str, input: &str, output: &str, streaming: bool| {
        let m = Method::builder()
            .name(name)
            .route_name(route)
            .input_type(format!("crate::rpc::messages::{input}"))
            .output_type(format!("crate::rpc::messages::{output}"))
            .codec_path(codec);
        if streaming {
            m.server_streaming().build()
        } else {
            m.build()
        }
    };
    // The CA and join endpoint: the only one callable without a client
    // certificate (renewal requires one).
    let ca = Service::builder()
        .name("Ca")
        .package(package)
        .method(method("root", "Root", "Empty", "RootInfo", false))
        .method(method("join", "Join", "JoinRequest", "JoinResponse", false))
        .method(method(
            "renew",
            "Renew",
            "RenewRequest",
            "RenewResponse",
            false,
        ))
        .build();
    // A node's session with a manager.
    let dispatcher = Service::builder()
        .name("Dispatcher")
        .package(package)
        .method(method(
            "session",
            "Session",
            "SessionRequest",
            "SessionMessage",
            true,
        ))
        .method(method(
            "heartbeat",
            "Heartbeat",
            "Empty",
            "HeartbeatResponse",
            false,
        ))
        .method(method(
            "update_status",
            "UpdateStatus",
            "StatusBatch",
            "Empty",
            false,
        ))
        // The node's daemon is stopping to start again (SIGTERM): hold its
        // tasks for the cluster's restart grace. A 254a909 manager does not
        // know the route, and the node is simply replaced when it is down.
        .method(method("restarting", "Restarting", "Empty", "Empty", false))
        // Image blobs shared over the LAN: a node says which blobs it
        // holds, and a puller asks which nodes hold one.
        .method(method(
            "report_blobs",
            "ReportBlobs",
            "BlobReport",
            "Empty",
            false,
        ))
        .method(method(
            "blob_sources",
            "BlobSources",
            "BlobQuery",
            "BlobSources",
            false,
        ))
        .build();
    // What managers ask of any node.
    let node = Service::builder()
        .name("NodeAgent")
        .package(package)
        .method(method("logs", "Logs", "LogsRequest", "LogItem", true))
        // A committed image blob, by digest, from an offset: what a peer
        // pulling the same image asks before it asks the registry.
        .method(method(
            "read_blob",
            "ReadBlob",
            "BlobRead",
            "BlobChunk",
            true,
        ))
        // The node's images: list them (in use or not, and the disk),
        // remove one, or prune; for `image ls|rm|prune --all-nodes`.
        .method(method("images", "Images", "ImagesOp", "ImagesReply", false))
        // The node's named volumes: list, create, remove, prune; for
        // `volume …` (a manager has checked what uses them).
        .method(method(
            "volumes",
            "Volumes",
            "VolumesOp",
            "VolumesReply",
            false,
        ))
        // `shoal exec`: a process in one of the node's tasks, its input
        // in, its output and exit code out, both streamed.
        .method(
            Method::builder()
                .name("exec")
                .route_name("Exec")
                .input_type("crate::rpc::messages::ExecIn")
                .output_type("crate::rpc::messages::ExecOut")
                .codec_path(codec)
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .build();
    // Managers among themselves: Raft's peer RPC, and what followers
    // forward to the leader (writes, read barriers, membership changes).
    // Only manager certificates may call it. Bodies are openraft's serde
    // types, encoded by src/raft/wire.rs in the package's format.
    let mut raft = Service::builder().name("Raft").package(package);
    for (name, route) in [
        ("append", "Append"),
        ("vote", "Vote"),
        ("snapshot", "Snapshot"),
        ("forward", "Forward"),
    ] {
        raft = raft.method(method(name, route, "RaftBytes", "RaftBytes", false));
    }
    Builder::new().compile(&[ca, dispatcher, node, raft.build()]);
}
