//! A command run inside a running task (health checks): a second process
//! of the container's task, with the container's own user, env and cwd
//! (its runtime spec's `process`, other args), its output to a file that
//! is read back (at most `OUTPUT_MAX`) and removed, and killed at the
//! timeout.

use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest, StartRequest,
    WaitRequest,
};
use tokio::io::AsyncReadExt;

use super::{found, Containerd};
use crate::executor::{ExecError, ExecOutput};
use crate::logs::driver;

/// What is kept of a command's output: its start, as docker keeps 4 KiB.
pub const OUTPUT_MAX: u64 = 4096;
pub(super) const PROCESS_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/Process";

impl Containerd {
    /// The `process` of the task's container's runtime spec: what a second
    /// process in it starts from (user, env, cwd, capabilities).
    pub(super) async fn task_process(&self, id: &str) -> Result<serde_json::Value, ExecError> {
        let container = ContainersClient::new(self.channel.clone())
            .get(self.req(GetContainerRequest { id: id.to_string() }))
            .await;
        let container = found(container)
            .map_err(|s| self.err("get container", s))?
            .and_then(|r| r.into_inner().container)
            .ok_or_else(|| ExecError::Other(format!("task {id} has no container")))?;
        let spec: serde_json::Value = container
            .spec
            .as_ref()
            .and_then(|a| serde_json::from_slice(&a.value).ok())
            .ok_or_else(|| {
                ExecError::Other(format!("the container of {id} has no readable spec"))
            })?;
        Ok(spec["process"].clone())
    }

    pub(super) async fn exec_in(
        &self,
        id: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        let mut process = self.task_process(id).await?;
        process["args"] = serde_json::json!(args);
        process["terminal"] = serde_json::json!(false);
        let exec_id = format!("exec-{}", crate::types::new_id());
        let dir = self.cfg.data_dir.join("exec");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ExecError::Other(format!("create {}: {e}", dir.display())))?;
        let out = dir.join(format!("{id}-{exec_id}.out"));
        let uri = format!(
            "file://{}",
            driver::percent_encode(&out.to_string_lossy(), true)
        );
        let mut tasks = TasksClient::new(self.channel.clone());
        tasks
            .exec(self.req(ExecProcessRequest {
                container_id: id.to_string(),
                stdin: String::new(),
                stdout: uri.clone(),
                stderr: uri,
                terminal: false,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.into(),
                    value:
                        serde_json::to_vec(&process).map_err(|e| ExecError::Other(e.to_string()))?,
                }),
                exec_id: exec_id.clone(),
            }))
            .await
            .map_err(|s| self.err("exec", s))?;
        // Waited for before it starts, so that a quick exit is not missed.
        let mut waiter = TasksClient::new(self.channel.clone());
        let wait_req = self.req(WaitRequest {
            container_id: id.to_string(),
            exec_id: exec_id.clone(),
        });
        let wait = tokio::spawn(async move { waiter.wait(wait_req).await });
        let started = tasks
            .start(self.req(StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.clone(),
            }))
            .await;
        let result = match started {
            Err(s) => Err(self.err("start exec", s)),
            Ok(_) => match tokio::time::timeout(timeout, wait).await {
                Ok(Ok(Ok(r))) => Ok(Some(r.into_inner().exit_status as i32)),
                Ok(Ok(Err(s))) => Err(self.err("wait exec", s)),
                Ok(Err(_)) => Err(ExecError::Other("the exec waiter stopped".into())),
                Err(_) => {
                    let _ = tasks
                        .kill(self.req(KillRequest {
                            container_id: id.to_string(),
                            exec_id: exec_id.clone(),
                            signal: 9,
                            all: false,
                        }))
                        .await;
                    Ok(None)
                }
            },
        };
        let _ = tasks
            .delete_process(self.req(DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id,
            }))
            .await;
        let output = read_start(&out).await;
        let _ = tokio::fs::remove_file(&out).await;
        Ok(ExecOutput {
            code: result?,
            output,
        })
    }
}

/// The first `OUTPUT_MAX` bytes of `path`, as text; empty if unreadable.
async fn read_start(path: &std::path::Path) -> String {
    let Ok(file) = tokio::fs::File::open(path).await else {
        return String::new();
    };
    let mut buf = Vec::new();
    let _ = file.take(OUTPUT_MAX).read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).trim_end().to_string()
}
