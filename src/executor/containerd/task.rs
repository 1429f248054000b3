//! Processes: creating and starting a container's task with its logging
//! wired to the shoal log driver, waiting for it, stopping it, and telling
//! whether the kernel's OOM killer ended it.
//!
//! A waiter (the `Wait` RPC) is spawned before `Start` and its result kept,
//! so `wait` has the exit even if the process is gone in a millisecond.
//! (containerd also keeps the exit status until the task is deleted, so
//! an adopted task is waited for with a fresh `Wait`.) OOM kills are known
//! from containerd's `/tasks/oom` events and, as a fallback, from the
//! cgroup's own counter, read before the task is deleted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_client::events::TaskOom;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CreateTaskRequest, GetRequest, KillRequest, StartRequest, SubscribeRequest, WaitRequest,
};
use containerd_client::types::v1::{Process, Status as ProcStatus};
use nix::sys::signal::Signal;
use prost::Message;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Code, Request};

use super::{found, spec, Containerd};
use crate::executor::{ExecError, ExitStatus};
use crate::logs::{driver, LOG_FILE};

/// How long a SIGKILLed process may take to be reported gone.
pub(super) const KILL_TIMEOUT: Duration = Duration::from_secs(30);

impl Containerd {
    pub(super) async fn get_process(&self, id: &str) -> Result<Option<Process>, ExecError> {
        let r = TasksClient::new(self.channel.clone())
            .get(self.req(GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await;
        Ok(found(r)
            .map_err(|s| self.err("get task", s))?
            .and_then(|r| r.into_inner().process))
    }

    pub(super) async fn start_task(&self, id: &str) -> Result<(), ExecError> {
        match self.get_process(id).await? {
            // Created but never started (we died in between): start it.
            Some(p) if p.status == ProcStatus::Created as i32 => {
                return self.start_process(id).await
            }
            // Running, paused or exited: the orchestrator makes a new task
            // rather than restarting an exited one.
            Some(_) => return Ok(()),
            None => {}
        }
        if !self.container_exists(id).await? {
            return Err(ExecError::Other(format!(
                "task {id} has no container: prepare it first"
            )));
        }
        let rootfs = self.snapshot_mounts(id).await?;
        let dir = self.log_dir(id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ExecError::Other(format!("create {}: {e}", dir.display())))?;
        let uri = if self.cfg.log_to_file {
            format!(
                "file://{}",
                driver::percent_encode(&dir.join(LOG_FILE).to_string_lossy(), true)
            )
        } else {
            driver::binary_uri(&self.cfg.log_binary, &dir, self.cfg.log_max_bytes)
        };
        let r = TasksClient::new(self.channel.clone())
            .create(self.req(CreateTaskRequest {
                container_id: id.to_string(),
                rootfs,
                stdin: String::new(),
                stdout: uri.clone(),
                stderr: uri,
                terminal: false,
                ..Default::default()
            }))
            .await;
        match r {
            Ok(_) => {}
            Err(s) if s.code() == Code::AlreadyExists => {}
            Err(s) => return Err(self.err("create task", s)),
        }
        self.start_process(id).await
    }

    async fn start_process(&self, id: &str) -> Result<(), ExecError> {
        let (tx, rx) = watch::channel(None);
        self.lock_waiters().insert(id.to_string(), rx);
        let mut tasks = TasksClient::new(self.channel.clone());
        let req = self.req(WaitRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        });
        tokio::spawn(async move {
            let r = tasks
                .wait(req)
                .await
                .map(|r| ExitStatus {
                    code: r.into_inner().exit_status as i32,
                    oom_killed: false,
                })
                .map_err(|s| s.message().to_string());
            let _ = tx.send(Some(r));
        });
        let r = TasksClient::new(self.channel.clone())
            .start(self.req(StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await;
        if let Err(s) = r {
            self.lock_waiters().remove(id);
            return Err(self.err("start task", s));
        }
        Ok(())
    }

    pub(super) async fn wait_task(&self, id: &str) -> Result<ExitStatus, ExecError> {
        let slot = self.lock_waiters().get(id).cloned();
        let mut code = None;
        if let Some(mut rx) = slot {
            if let Ok(v) = rx.wait_for(|v| v.is_some()).await {
                if let Some(Ok(st)) = v.as_ref() {
                    code = Some(st.code);
                }
            }
        }
        // No waiter of ours (adopted after a restart) or it failed: ask.
        let code = match code {
            Some(c) => c,
            None => {
                let r = TasksClient::new(self.channel.clone())
                    .wait(self.req(WaitRequest {
                        container_id: id.to_string(),
                        exec_id: String::new(),
                    }))
                    .await;
                match found(r).map_err(|s| self.err("wait", s))? {
                    Some(r) => r.into_inner().exit_status as i32,
                    None => return Err(ExecError::Other(format!("task {id} has no process"))),
                }
            }
        };
        Ok(ExitStatus {
            code,
            oom_killed: self.oom_killed(id, code).await,
        })
    }

    pub(super) async fn stop_task(
        &self,
        id: &str,
        signal: &str,
        grace: Duration,
    ) -> Result<(), ExecError> {
        let sig = parse_signal(signal)?;
        match self.get_process(id).await? {
            None => return Ok(()),
            Some(p) if p.status == ProcStatus::Stopped as i32 => return Ok(()),
            Some(_) => {}
        }
        if !self.kill(id, sig, false).await? {
            return Ok(());
        }
        if let Ok(r) = tokio::time::timeout(grace, self.wait_task(id)).await {
            return r.map(|_| ());
        }
        tracing::info!(task = %id, ?grace, "no exit within the grace period, sending SIGKILL");
        self.kill(id, Signal::SIGKILL, true).await?;
        match tokio::time::timeout(KILL_TIMEOUT, self.wait_task(id)).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(ExecError::Other(format!(
                "task {id} did not exit after SIGKILL"
            ))),
        }
    }

    /// Sends a signal (to every process of the container with `all`).
    /// `Ok(false)` when there is no process to signal.
    pub(super) async fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<bool, ExecError> {
        let r = TasksClient::new(self.channel.clone())
            .kill(self.req(KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal: sig as u32,
                all,
            }))
            .await;
        Ok(found(r).map_err(|s| self.err("kill", s))?.is_some())
    }

    /// Whether the OOM killer ended the task: an event said so, or its
    /// cgroup counted a kill. An OOM exit is 137, and its event may trail
    /// the exit slightly, so that case gets a short second look.
    pub(super) async fn oom_killed(&self, id: &str, code: i32) -> bool {
        if self.lock_oom().contains(id) || cgroup_oom_kills(&self.cfg.namespace, id) > 0 {
            return true;
        }
        if code == 137 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return self.lock_oom().contains(id);
        }
        false
    }

    /// Drops what we remember about a removed task.
    pub(super) fn forget(&self, id: &str) {
        self.lock_waiters().remove(id);
        self.lock_oom().remove(id);
    }

    fn lock_waiters(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, super::ExitSlot>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_oom(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.oom.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Follows containerd's `/tasks/oom` events for our namespace for as long
/// as the executor lives, resubscribing after errors.
pub(super) async fn watch_oom(
    channel: Channel,
    namespace: String,
    oom: Arc<Mutex<HashSet<String>>>,
) {
    let filter = format!("topic==\"/tasks/oom\",namespace==\"{namespace}\"");
    loop {
        let r = EventsClient::new(channel.clone())
            .subscribe(Request::new(SubscribeRequest {
                filters: vec![filter.clone()],
            }))
            .await;
        if let Ok(resp) = r {
            let mut events = resp.into_inner();
            while let Ok(Some(envelope)) = events.message().await {
                let Some(any) = envelope.event else { continue };
                if let Ok(e) = TaskOom::decode(any.value.as_slice()) {
                    tracing::info!(task = %e.container_id, "container was OOM-killed");
                    oom.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(e.container_id);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The `oom_kill` count of the task's memory cgroup (v1 `memory.oom_control`
/// or v2 `memory.events`); 0 when unknown or already removed.
fn cgroup_oom_kills(namespace: &str, id: &str) -> u64 {
    let rel = spec::cgroups_path(namespace, id);
    let candidates = [
        format!("/sys/fs/cgroup/memory{rel}/memory.oom_control"),
        format!("/sys/fs/cgroup{rel}/memory.events"),
        format!("/sys/fs/cgroup/unified{rel}/memory.events"),
    ];
    candidates
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0)
}

/// `SIGTERM`, `TERM`, `term` or `15` (see `types::parse_signal`); empty
/// means SIGTERM.
pub(super) fn parse_signal(s: &str) -> Result<Signal, ExecError> {
    if s.trim().is_empty() {
        return Ok(Signal::SIGTERM);
    }
    crate::types::parse_signal(s)
        .and_then(|n| Signal::try_from(n).ok())
        .ok_or_else(|| ExecError::Other(format!("unknown signal {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signal_names_and_numbers() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigusr1").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
