//! A throwaway containerd namespace per test: its name, the check that the
//! tests can run here at all, and the clean-up that empties and deletes it
//! through containerd's API (tasks, containers, snapshots, images, content,
//! leases, then the namespace), also from a `Drop` after a panic.
//!
//! Used by `tests/executor.rs` (through `#[path]`, so the shared
//! `common/mod.rs` needs no change); other tests may add it to
//! `common/mod.rs` as well.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::snapshots::{ListSnapshotsRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    DeleteContainerRequest, DeleteContentRequest, DeleteImageRequest, DeleteNamespaceRequest,
    DeleteRequest as DeleteLeaseRequest, DeleteTaskRequest, KillRequest, ListContainersRequest,
    ListContentRequest, ListImagesRequest, ListRequest as ListLeasesRequest, ListTasksRequest,
    WaitRequest,
};
use containerd_client::Client;
use tonic::{Code, Request};

pub const SOCKET: &str = "/run/containerd/containerd.sock";

/// Panics with a clear message unless the tests can run: they need root
/// and a running containerd. They never skip.
pub fn require_root_and_containerd() {
    let root = nix::unistd::geteuid().is_root();
    let sock = std::fs::metadata(SOCKET).is_ok_and(|m| m.file_type().is_socket());
    assert!(
        root && sock,
        "these tests need root and a running containerd on {SOCKET} \
         (root: {root}, socket: {sock}); start it with `bash .ci/start-containerd`"
    );
}

/// A fresh namespace name, `shoal-test-<8 hex>`.
pub fn unique_name() -> String {
    format!("shoal-test-{}", hex::encode(rand::random::<[u8; 4]>()))
}

/// What a `Drop` calls: cleans up on a thread with its own runtime (a drop
/// cannot await). A test that passed but left its namespace behind fails;
/// one already failing only reports it (a second panic would abort).
pub fn clean_namespace_from_drop(ns: &str) {
    let name = ns.to_string();
    let r = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(clean_namespace(&name))
    })
    .join();
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) if !std::thread::panicking() => panic!("cleanup of namespace {ns}: {e}"),
        Ok(Err(e)) => eprintln!("cleanup of namespace {ns}: {e}"),
        Err(_) => eprintln!("cleanup of namespace {ns} panicked"),
    }
}

/// A request in namespace `ns`.
pub fn req<T>(ns: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", ns.parse().unwrap());
    r
}

/// runc removes a container's cgroup but not the `/shoal/<namespace>`
/// parents the spec's cgroupsPath made, in each hierarchy.
fn remove_cgroup_parents(ns: &str) {
    let mut dirs = vec![PathBuf::from(format!("/sys/fs/cgroup/shoal/{ns}"))];
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hierarchies.flatten() {
            dirs.push(h.path().join("shoal").join(ns));
        }
    }
    for d in dirs {
        // Only empty cgroups can go; anything else stays for a human.
        let _ = std::fs::remove_dir(d);
    }
}

/// Kills and deletes everything in `ns`, then `ns` itself. Tasks go
/// before their containers: deleting a container record under a live task
/// would orphan its shim.
pub async fn clean_namespace(ns: &str) -> Result<(), String> {
    let c = Client::from_path(SOCKET).await.map_err(|e| e.to_string())?;
    let tasks = c
        .tasks()
        .list(req(ns, ListTasksRequest::default()))
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .tasks;
    for t in tasks {
        // containerd 1.6 fills `id`, not `container_id`, in this list.
        let id = if t.container_id.is_empty() {
            t.id
        } else {
            t.container_id
        };
        let kill = KillRequest {
            container_id: id.clone(),
            signal: 9,
            all: true,
            ..Default::default()
        };
        let _ = c.tasks().kill(req(ns, kill)).await;
        let wait = WaitRequest {
            container_id: id.clone(),
            ..Default::default()
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), c.tasks().wait(req(ns, wait))).await;
        // Deleting the container record while its task lives would
        // orphan the shim: retry until the task is really gone.
        let mut deleted = false;
        for _ in 0..50 {
            let del = DeleteTaskRequest {
                container_id: id.clone(),
            };
            match c.tasks().delete(req(ns, del)).await {
                Ok(_) => deleted = true,
                Err(s) if s.code() == Code::NotFound => deleted = true,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            if deleted {
                break;
            }
        }
        if !deleted {
            return Err(format!("cannot delete task {id}"));
        }
    }
    let containers = ContainersClient::new(c.channel())
        .list(req(ns, ListContainersRequest::default()))
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .containers;
    for ct in containers {
        let _ = c
            .containers()
            .delete(req(ns, DeleteContainerRequest { id: ct.id }))
            .await;
    }
    // Children before parents: repeat until nothing more goes.
    for _ in 0..10 {
        let mut s = c
            .snapshots()
            .list(req(
                ns,
                ListSnapshotsRequest {
                    snapshotter: "overlayfs".into(),
                    filters: vec![],
                },
            ))
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let mut keys = Vec::new();
        while let Ok(Some(m)) = s.message().await {
            keys.extend(m.info.into_iter().map(|i| i.name));
        }
        if keys.is_empty() {
            break;
        }
        for key in keys {
            let rm = RemoveSnapshotRequest {
                snapshotter: "overlayfs".into(),
                key,
            };
            let _ = c.snapshots().remove(req(ns, rm)).await;
        }
    }
    let images = c
        .images()
        .list(req(ns, ListImagesRequest::default()))
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .images;
    for i in images {
        let del = DeleteImageRequest {
            name: i.name,
            sync: true,
            target: None,
        };
        let _ = c.images().delete(req(ns, del)).await;
    }
    let mut s = c
        .content()
        .list(req(ns, ListContentRequest::default()))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut digests = Vec::new();
    while let Ok(Some(m)) = s.message().await {
        digests.extend(m.info.into_iter().map(|i| i.digest));
    }
    for digest in digests {
        let _ = c
            .content()
            .delete(req(ns, DeleteContentRequest { digest }))
            .await;
    }
    let leases = c
        .leases()
        .list(req(ns, ListLeasesRequest::default()))
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .leases;
    for l in leases {
        let _ = c
            .leases()
            .delete(req(
                ns,
                DeleteLeaseRequest {
                    id: l.id,
                    sync: false,
                },
            ))
            .await;
    }
    remove_cgroup_parents(ns);
    let r = NamespacesClient::new(c.channel())
        .delete(Request::new(DeleteNamespaceRequest { name: ns.into() }))
        .await;
    match r {
        // Never created: the test made nothing in it.
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => Err(format!("delete namespace: {}", s.message())),
        Ok(_) => Ok(()),
    }
}
