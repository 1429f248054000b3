//! Containers: assembling one for a task (image → snapshot → spec →
//! container record, under a lease), looking at it, and taking it apart
//! again (process, record, snapshot, logs). Every step tolerates finding
//! its work already done or already undone.

use std::collections::HashMap;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{MountsRequest, PrepareSnapshotRequest};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, DeleteContainerRequest, DeleteTaskRequest,
    GetContainerRequest, ListContainersRequest,
};
use containerd_client::types::v1::Status as ProcStatus;
use containerd_client::types::Mount;
use tonic::Code;

use super::image::{Resolved, SNAPSHOTTER};
use super::{
    found, options, rootfs, spec, Containerd, Lease, LABEL_IMAGE_HEALTH, LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME, LABEL_SLOT, LABEL_TASK_ID,
};
use crate::executor::{ContainerState, ExecError, ExitStatus, Setup};
use crate::types::{normalize_image, Task};

const RUNTIME: &str = "io.containerd.runc.v2";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// This process's hard limit of open files. The shim inherits
/// containerd's, which is normally at least ours (containerd's unit sets
/// it to the maximum).
fn nofile_hard_limit() -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    // rlim_t is u32 on 32-bit glibc (armv7) and u64 elsewhere; nix passes
    // it through, so the cast is needed there and a no-op here.
    #[allow(clippy::unnecessary_cast)]
    let hard = getrlimit(Resource::RLIMIT_NOFILE).map(|(_, hard)| hard as u64);
    hard.unwrap_or(1024)
}

impl Containerd {
    pub(super) async fn container_exists(&self, id: &str) -> Result<bool, ExecError> {
        let r = ContainersClient::new(self.channel.clone())
            .get(self.req(GetContainerRequest { id: id.to_string() }))
            .await;
        Ok(found(r)
            .map_err(|s| self.err("get container", s))?
            .is_some())
    }

    /// The image's HEALTHCHECK that `prepare` kept with the container.
    pub(super) async fn image_health_of(
        &self,
        id: &str,
    ) -> Result<Option<crate::types::HealthCheck>, ExecError> {
        let r = ContainersClient::new(self.channel.clone())
            .get(self.req(GetContainerRequest { id: id.to_string() }))
            .await;
        Ok(found(r)
            .map_err(|s| self.err("get container", s))?
            .and_then(|r| r.into_inner().container)
            .and_then(|c| c.labels.get(LABEL_IMAGE_HEALTH).cloned())
            .and_then(|json| serde_json::from_str(&json).ok()))
    }

    pub(super) async fn prepare_container(
        &self,
        task: &Task,
        setup: &Setup,
    ) -> Result<(), ExecError> {
        if self.container_exists(&task.id).await? {
            return Ok(());
        }
        let name = self.task_image(task).await?.ok_or_else(|| {
            let c = &task.spec.container;
            let image = normalize_image(&c.image).unwrap_or_else(|_| c.image.clone());
            ExecError::ImageNotFound(match &c.image_digest {
                Some(d) => format!("{image}@{d}"),
                None => image,
            })
        })?;
        let image = self.resolve_image(&name).await?;
        // The lease keeps the new snapshot (and any layers unpacked now)
        // from GC until the container record references it.
        let lease = self.lease().await?;
        let r = self.assemble(task, setup, &name, &image, &lease).await;
        self.end_lease(lease).await;
        r
    }

    async fn assemble(
        &self,
        task: &Task,
        setup: &Setup,
        image_name: &str,
        image: &Resolved,
        lease: &Lease,
    ) -> Result<(), ExecError> {
        let id = task.id.as_str();
        if !image.chain_ids.is_empty() && !self.snapshot_exists(image.top_chain_id()).await? {
            self.unpack(image, lease).await?;
        }
        let mut snaps = SnapshotsClient::new(self.channel.clone());
        let prepared = snaps
            .prepare(self.req_leased(
                PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: id.to_string(),
                    parent: image.top_chain_id().to_string(),
                    labels: HashMap::new(),
                },
                Some(lease),
            ))
            .await;
        let mounts = match prepared {
            Ok(r) => r.into_inner().mounts,
            // Left by an interrupted prepare: reuse it.
            Err(s) if s.code() == Code::AlreadyExists => self.snapshot_mounts(id).await?,
            Err(s) => return Err(self.err("prepare snapshot", s)),
        };
        let result = self
            .create_container(task, setup, image_name, image, &mounts)
            .await;
        if result.is_err() {
            let _ = self.remove_snapshot(id).await;
        }
        result
    }

    async fn create_container(
        &self,
        task: &Task,
        setup: &Setup,
        image_name: &str,
        image: &Resolved,
        mounts: &[Mount],
    ) -> Result<(), ExecError> {
        let run = image.config.config.clone().unwrap_or_default();
        let user_spec = spec::user_of(&task.spec.container, &run);
        // Read passwd/group even for numeric users: they give gid and HOME.
        let layers = rootfs::layer_dirs(mounts);
        let (passwd, group) = match &layers {
            Ok(l) => (rootfs::read_etc(l, "passwd"), rootfs::read_etc(l, "group")),
            Err(_) => (None, None),
        };
        if let (Err(e), true) = (&layers, spec::needs_lookup(user_spec)) {
            return Err(ExecError::Other(format!(
                "cannot resolve user {user_spec:?}: {e}"
            )));
        }
        let mut user = spec::resolve_user(user_spec, passwd.as_deref(), group.as_deref())
            .map_err(|e| ExecError::Other(format!("image {image_name}: {e}")))?;
        for gid in spec::resolve_groups(&task.spec.container.group_add, group.as_deref())
            .map_err(|e| ExecError::Other(format!("image {image_name}: {e}")))?
        {
            if gid != user.gid && !user.additional_gids.contains(&gid) {
                user.additional_gids.push(gid);
            }
        }
        let mut oci = spec::build(
            &task.id,
            &task.spec.container,
            &run,
            &user,
            &self.cfg.namespace,
            nofile_hard_limit(),
            setup,
        )
        .map_err(ExecError::Other)?;
        spec::limit(&mut oci, &task.spec.resources);
        spec::mounts(&mut oci, &task.spec.mounts, &setup.volumes).map_err(ExecError::Other)?;
        options::apply(
            &mut oci,
            &task.spec.container,
            nofile_hard_limit(),
            options::init_binary(),
        )
        .map_err(ExecError::Other)?;
        let mut labels: HashMap<String, String> = task
            .spec
            .container
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert(LABEL_TASK_ID.into(), task.id.clone());
        labels.insert(LABEL_SERVICE_ID.into(), task.service_id.clone());
        labels.insert(LABEL_SERVICE_NAME.into(), task.service_name.clone());
        labels.insert(LABEL_SLOT.into(), task.slot.to_string());
        if let Some(check) = run.healthcheck.as_ref().and_then(spec::ImageHealth::check) {
            if let Ok(json) = serde_json::to_string(&check) {
                labels.insert(LABEL_IMAGE_HEALTH.into(), json);
            }
        }
        let container = Container {
            id: task.id.clone(),
            labels,
            image: image_name.to_string(),
            runtime: Some(Runtime {
                name: RUNTIME.into(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.into(),
                value: serde_json::to_vec(&oci).map_err(|e| ExecError::Other(e.to_string()))?,
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: task.id.clone(),
            ..Default::default()
        };
        let r = ContainersClient::new(self.channel.clone())
            .create(self.req(CreateContainerRequest {
                container: Some(container),
            }))
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => Err(self.err("create container", s)),
        }
    }

    pub(super) async fn snapshot_mounts(&self, key: &str) -> Result<Vec<Mount>, ExecError> {
        let r = SnapshotsClient::new(self.channel.clone())
            .mounts(self.req(MountsRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await;
        match found(r).map_err(|s| self.err("snapshot mounts", s))? {
            Some(r) => Ok(r.into_inner().mounts),
            None => Err(ExecError::Other(format!(
                "the snapshot of task {key} is missing: prepare the task again"
            ))),
        }
    }

    pub(super) async fn remove_container(&self, id: &str) -> Result<(), ExecError> {
        self.kill_and_delete_task(id).await?;
        let r = ContainersClient::new(self.channel.clone())
            .delete(self.req(DeleteContainerRequest { id: id.to_string() }))
            .await;
        found(r).map_err(|s| self.err("delete container", s))?;
        // Deleting a container leaves its snapshot behind.
        self.remove_snapshot(id).await?;
        self.forget(id);
        match tokio::fs::remove_dir_all(self.log_dir(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(task = %id, error = %e, "cannot remove the task's logs");
            }
            _ => {}
        }
        Ok(())
    }

    /// Kills the task's process if it runs, and deletes the task (which
    /// also ends its log driver). Nothing to do when there is no task.
    async fn kill_and_delete_task(&self, id: &str) -> Result<(), ExecError> {
        let Some(p) = self.get_process(id).await? else {
            return Ok(());
        };
        if p.status != ProcStatus::Stopped as i32 {
            self.kill(id, nix::sys::signal::Signal::SIGKILL, true)
                .await?;
            let waited = tokio::time::timeout(super::task::KILL_TIMEOUT, self.wait_task(id)).await;
            if waited.is_err() {
                return Err(ExecError::Other(format!(
                    "task {id} did not exit after SIGKILL"
                )));
            }
        }
        // The shim may still be settling the exit it just reported; a
        // short retry beats failing the whole removal.
        let mut attempts = 0;
        loop {
            let r = TasksClient::new(self.channel.clone())
                .delete(self.req(DeleteTaskRequest {
                    container_id: id.to_string(),
                }))
                .await;
            match found(r) {
                Ok(_) => return Ok(()),
                Err(s) if attempts < 20 && s.code() != Code::Unavailable => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(s) => return Err(self.err("delete task", s)),
            }
        }
    }

    pub(super) async fn inspect_container(&self, id: &str) -> Result<ContainerState, ExecError> {
        if !self.container_exists(id).await? {
            return Ok(ContainerState::Missing);
        }
        let Some(p) = self.get_process(id).await? else {
            return Ok(ContainerState::Created);
        };
        Ok(
            match ProcStatus::try_from(p.status).unwrap_or(ProcStatus::Unknown) {
                ProcStatus::Running | ProcStatus::Paused | ProcStatus::Pausing => {
                    ContainerState::Running { pid: p.pid }
                }
                ProcStatus::Stopped => {
                    let code = p.exit_status as i32;
                    ContainerState::Exited(ExitStatus {
                        code,
                        oom_killed: self.oom_killed(id, code).await,
                    })
                }
                ProcStatus::Created | ProcStatus::Unknown => ContainerState::Created,
            },
        )
    }

    pub(super) async fn list_containers(&self) -> Result<Vec<String>, ExecError> {
        let filter = format!("labels.\"{LABEL_TASK_ID}\"");
        let list = ContainersClient::new(self.channel.clone())
            .list(self.req(ListContainersRequest {
                filters: vec![filter],
            }))
            .await
            .map_err(|s| self.err("list containers", s))?
            .into_inner()
            .containers;
        let mut ids: Vec<String> = list.into_iter().map(|c| c.id).collect();
        ids.sort();
        Ok(ids)
    }
}
