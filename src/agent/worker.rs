//! One task's life on a node, one step at a time:
//! accepted → preparing → ready → starting → running → complete/failed,
//! or shutdown when the manager asks. Reports only move forward. A task
//! that this node started before a restart is re-adopted, not started again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::Runtime;
use crate::executor::{ContainerState, ExecError, Executor, ExitStatus, PullEvent, PullRequest};
use crate::types::{now_ms, registry_host, PullPolicy, StatusReport, Task, TaskState, TaskStatus};

struct Reporter {
    task_id: String,
    last: TaskState,
    tx: mpsc::Sender<StatusReport>,
    /// The task's address on its network, once it has one: in every later
    /// report.
    address: Option<String>,
}

impl Reporter {
    async fn send(&mut self, state: TaskState, message: &str, f: impl FnOnce(&mut TaskStatus)) {
        if state < self.last {
            return;
        }
        self.last = state;
        let mut st = TaskStatus {
            state,
            timestamp_ms: now_ms(),
            message: message.to_string(),
            container_id: Some(self.task_id.clone()),
            addresses: self.address.iter().cloned().collect(),
            ..Default::default()
        };
        f(&mut st);
        let _ = self
            .tx
            .send(StatusReport {
                task_id: self.task_id.clone(),
                status: st,
            })
            .await;
    }

    async fn exited(&mut self, exit: ExitStatus) {
        let (state, msg) = if exit.code == 0 {
            (TaskState::Complete, "finished".to_string())
        } else {
            (
                TaskState::Failed,
                format!("task: non-zero exit ({})", exit.code),
            )
        };
        self.send(state, &msg.clone(), |st| {
            st.exit_code = Some(exit.code);
            st.oom_killed = exit.oom_killed;
            if exit.code != 0 {
                st.error = Some(if exit.oom_killed {
                    format!("{msg}: out of memory")
                } else {
                    msg
                });
            }
        })
        .await;
    }

    async fn failed(&mut self, state: TaskState, error: String) {
        self.send(state, &error.clone(), |st| st.error = Some(error))
            .await;
    }
}

pub async fn drive(
    rt: Arc<Runtime>,
    mut rx: watch::Receiver<Task>,
    tx: mpsc::Sender<StatusReport>,
    stopped: Arc<AtomicBool>,
) {
    let exec = rt.exec.clone();
    let task = rx.borrow_and_update().clone();
    let mut rep = Reporter {
        task_id: task.id.clone(),
        last: task.status.state,
        tx,
        address: task.status.addresses.first().cloned(),
    };
    if !task.status.state.is_terminal() {
        run(&rt, &mut rx, &mut rep).await;
    }
    // The process is gone: its network goes back (the container is kept
    // for its logs, and needs none).
    if let Some(nets) = rt.nets.as_ref().filter(|_| !task.spec.network.is_host()) {
        nets.detach(&task.id).await;
    }
    // Its secrets and configs leave the node's memory with it.
    if let Some(files) = &rt.files {
        files.unmount(&task.id);
    }
    stopped.store(true, Ordering::SeqCst);
    // Keep the finished container (for logs) until the task is deleted.
    while rx.changed().await.is_ok() {}
    let id = &rep.task_id;
    if let Err(e) = exec.stop(id, "SIGKILL", Duration::ZERO).await {
        warn!(task = %id, error = %e, "cannot stop removed task");
    }
    if let Err(e) = exec.remove(id).await {
        warn!(task = %id, error = %e, "cannot remove container");
    }
}

/// A task stopped before this daemon started its container. A node killed
/// between starting a container and reporting it comes back with the task
/// still `preparing` (or, from its own saved copy, still meant to run):
/// the container may run although the managers never heard of it, and it
/// must not outlive its task. So whatever the path, a container that runs
/// is stopped before the task is reported shut down.
async fn shut_down_before_start(rt: &Runtime, task: &Task, rep: &mut Reporter) {
    stop_unreported(rt, task).await;
    rep.send(TaskState::Shutdown, "shut down before start", |_| {})
        .await
}

/// Stops the task's container if it runs (see `run`).
async fn stop_unreported(rt: &Runtime, task: &Task) {
    if let Ok(ContainerState::Running { .. }) = rt.exec.inspect(&task.id).await {
        warn!(task = %task.id, "a container runs that was never reported: stopping it");
        let c = &task.spec.container;
        let signal = c.stop_signal.as_deref().unwrap_or("SIGTERM");
        let grace = Duration::from_millis(c.stop_grace_period_ms);
        if let Err(e) = rt.exec.stop(&task.id, signal, grace).await {
            warn!(task = %task.id, error = %e, "stop failed");
        }
    }
}

fn wants_stop(rx: &watch::Receiver<Task>) -> bool {
    rx.borrow().desired_state > TaskState::Running
}

/// The first and the longest pause between attempts while containerd
/// cannot be reached.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Waits `delay` (doubled for the next time, up to `RETRY_MAX`), or less
/// when the task changes.
async fn pause(rx: &mut watch::Receiver<Task>, delay: &mut Duration) {
    tokio::select! {
        _ = tokio::time::sleep(*delay) => {}
        r = rx.changed() => if r.is_err() { tokio::time::sleep(*delay).await },
    }
    *delay = (*delay * 2).min(RETRY_MAX);
}

/// `exec.inspect`, asked again while containerd cannot be reached: a task
/// is not failed because its runtime went away for a while (runc's shim
/// keeps the process running); what happened to it is known once
/// containerd is back.
async fn inspect_when_reachable(
    exec: &dyn Executor,
    rx: &mut watch::Receiver<Task>,
    id: &str,
) -> Result<ContainerState, ExecError> {
    let mut delay = RETRY_FIRST;
    loop {
        match exec.inspect(id).await {
            Err(ExecError::Unavailable { .. }) => pause(rx, &mut delay).await,
            other => return other,
        }
    }
}

/// How often a pull's progress is reported (each report is a write to
/// the replicated store).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Pulls the task's image with its registry's access, reporting progress
/// as the task's `preparing` message. Stops early if the task is stopped.
async fn pull(
    rt: &Runtime,
    rx: &mut watch::Receiver<Task>,
    rep: &mut Reporter,
    task: &Task,
) -> Result<(), ExecError> {
    let access = rt.registries.get(registry_host(&task.spec.container.image));
    let mut req = PullRequest::for_task(task, access);
    req.peers = rt.peers.clone();
    let (ptx, mut prx) = mpsc::channel(64);
    let pulling = rt.images.pull_image(&req, Some(ptx));
    tokio::pin!(pulling);
    let mut total = 0u64;
    let mut done: std::collections::HashMap<String, u64> = Default::default();
    let mut last = tokio::time::Instant::now();
    rep.send(
        TaskState::Preparing,
        &format!("pulling {}", req.image),
        |_| {},
    )
    .await;
    loop {
        tokio::select! {
            r = &mut pulling => {
                let pulled = r?;
                info!(
                    task = %task.id,
                    image = %pulled.name,
                    registry_bytes = pulled.fetched_bytes,
                    peer_bytes = pulled.peer_bytes,
                    "pulled"
                );
                (rt.images_changed)();
                return Ok(());
            }
            Some(e) = prx.recv() => {
                match e {
                    PullEvent::Resolved { layers, .. } => {
                        total = layers.iter().map(|(_, n)| n).sum();
                    }
                    PullEvent::Blob { digest, done: d, .. } => {
                        done.insert(digest, d);
                    }
                    PullEvent::Waiting { .. } | PullEvent::Unpacking => {}
                }
                if last.elapsed() >= PROGRESS_EVERY {
                    last = tokio::time::Instant::now();
                    let got: u64 = done.values().sum();
                    let msg = format!(
                        "pulling {}: {} of {}",
                        req.image,
                        mb(got),
                        mb(total)
                    );
                    rep.send(TaskState::Preparing, &msg, |_| {}).await;
                }
            }
            changed = rx.changed() => {
                if changed.is_err() || wants_stop(rx) {
                    return Err(ExecError::Unavailable {
                        socket: String::new(),
                        reason: "the task was stopped during its pull".into(),
                    });
                }
            }
        }
    }
}

/// The task's own network, set up (or found again) before its container
/// is made; None for a task on the host's network.
async fn network(
    rt: &Runtime,
    task: &Task,
    hostname: &str,
    rep: &mut Reporter,
) -> Result<Option<crate::executor::NetFiles>, ExecError> {
    let Some(nets) = rt.nets.as_ref().filter(|_| !task.spec.network.is_host()) else {
        return Ok(None);
    };
    let a = nets.attach(task, hostname).await?;
    rep.address = Some(a.address);
    Ok(Some(a.files))
}

/// What the task's container needs from the node: its hostname, its
/// network, its secrets and configs.
async fn setup(
    rt: &Runtime,
    task: &Task,
    rep: &mut Reporter,
) -> Result<crate::executor::Setup, ExecError> {
    let hostname = crate::executor::hostname_of(task, &rt.node_name);
    let net = network(rt, task, &hostname, rep).await?;
    let files = match &rt.files {
        Some(f) => f.mount(task)?,
        None => Vec::new(),
    };
    let mut volumes = Vec::new();
    if let Some(v) = &rt.volumes {
        for name in task.spec.volume_names() {
            // Made on first use; the node says so at its next look.
            let path = v
                .ensure(name)
                .map_err(|e| ExecError::Other(e.to_string()))?;
            volumes.push((name.to_string(), path));
        }
    }
    Ok(crate::executor::Setup {
        hostname,
        net,
        files,
        volumes,
    })
}

/// Puts a running (and healthy) task behind its published ports.
async fn serve(rt: &Runtime, task: &Task) {
    if let Some(nets) = rt.nets.as_ref().filter(|_| !task.spec.network.is_host()) {
        nets.serve(&task.id).await;
    }
}

/// The task's health check and the process it runs: the service's
/// (`--no-healthcheck`: none), else its image's HEALTHCHECK. A service's
/// check with timings but no test (compose's `healthcheck:` without
/// `test:`) runs the image's test on those timings, as docker does.
async fn health_check(
    exec: &dyn Executor,
    task: &Task,
) -> Option<(crate::types::HealthCheck, Vec<String>)> {
    let check = match &task.spec.health {
        Some(h) if !h.test.is_empty() => h.clone(),
        own => match exec.image_health_check(&task.id).await {
            Ok(Some(image)) => match own {
                Some(h) => crate::types::HealthCheck {
                    test: image.test,
                    ..h.clone()
                },
                None => image,
            },
            Ok(None) => return None,
            Err(e) => {
                warn!(task = %task.id, error = %e, "cannot read the image's health check");
                return None;
            }
        },
    };
    let args = check.args()?;
    Some((check, args))
}

/// A task's health check between two runs.
struct Health {
    healthy: bool,
    failures: u32,
    started: tokio::time::Instant,
    next: tokio::time::Instant,
}

enum Verdict {
    /// Nothing to report.
    Same,
    /// It passed, for the first time (the output).
    Healthy(String),
    /// It failed as often in a row as it may (the last output).
    Unhealthy(String),
}

/// The first check runs this soon after the start, as docker's does after
/// the interval; a check is never sooner than this after the last.
const FIRST_CHECK: Duration = Duration::from_secs(1);

impl Health {
    fn new(healthy: bool) -> Health {
        let now = tokio::time::Instant::now();
        Health {
            healthy,
            failures: 0,
            started: now,
            next: now + FIRST_CHECK,
        }
    }

    /// Runs the check once, and says what changed.
    async fn check(
        &mut self,
        exec: &dyn Executor,
        id: &str,
        spec: &crate::types::HealthCheck,
        args: &[String],
    ) -> Verdict {
        let timeout = Duration::from_millis(spec.timeout_ms);
        let result = exec.exec(id, args, timeout).await;
        self.next =
            tokio::time::Instant::now() + Duration::from_millis(spec.interval_ms).max(FIRST_CHECK);
        let output = match result {
            Ok(o) if o.code == Some(0) => {
                self.failures = 0;
                if self.healthy {
                    return Verdict::Same;
                }
                self.healthy = true;
                return Verdict::Healthy(o.output);
            }
            Ok(o) => match o.code {
                Some(code) => format!("exit {code}: {}", o.output),
                None => format!("timed out after {timeout:?}: {}", o.output),
            },
            // containerd is away: no verdict on the task.
            Err(ExecError::Unavailable { .. }) => return Verdict::Same,
            Err(e) => e.to_string(),
        };
        let grace = Duration::from_millis(spec.start_period_ms);
        if !self.healthy && self.started.elapsed() < grace {
            return Verdict::Same;
        }
        self.failures += 1;
        if self.failures >= spec.retries.max(1) {
            Verdict::Unhealthy(output.trim_end().to_string())
        } else {
            Verdict::Same
        }
    }
}

fn mb(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

/// Bring the task up (or adopt it), then wait for it to exit or to be
/// stopped. Returns once the task is terminal.
async fn run(rt: &Runtime, rx: &mut watch::Receiver<Task>, rep: &mut Reporter) {
    let exec = &*rt.exec;
    let node_name = rt.node_name.as_str();
    let task = rx.borrow().clone();
    let id = task.id.clone();
    let adopt = task.status.state >= TaskState::Starting;
    let mut up = false;
    if adopt {
        match inspect_when_reachable(exec, rx, &id).await {
            Ok(ContainerState::Running { .. }) => {
                info!(task = %id, "re-adopted running container");
                // Its network is there already; this publishes its ports
                // again, which a restarted daemon's table starts without.
                let hostname = crate::executor::hostname_of(&task, node_name);
                if let Err(e) = network(rt, &task, &hostname, rep).await {
                    warn!(task = %id, error = %e, "the running task's network");
                }
                up = true;
            }
            Ok(ContainerState::Exited(exit)) => return rep.exited(exit).await,
            Ok(_) => {} // Never started, or gone: start it below.
            Err(e) => return rep.failed(TaskState::Failed, e.to_string()).await,
        }
    }
    if !up {
        if wants_stop(rx) {
            return shut_down_before_start(rt, &task, rep).await;
        }
        rep.send(TaskState::Accepted, "accepted", |_| {}).await;
        rep.send(TaskState::Preparing, "preparing", |_| {}).await;
        // Without containerd the task waits here rather than being
        // rejected, replaced and rejected again (once: 1,900 tasks in
        // 150 s); the node is given no new task meanwhile.
        let mut delay = RETRY_FIRST;
        let policy = task.spec.container.pull;
        let mut pulled = false;
        loop {
            // `always` pulls before every start, `missing` only when the
            // node lacks the image, `never` not at all.
            let result = if policy == PullPolicy::Always && !pulled {
                Err(ExecError::ImageNotFound(task.spec.container.image.clone()))
            } else {
                match setup(rt, &task, rep).await {
                    Ok(setup) => exec.prepare(&task, &setup).await,
                    Err(e) => Err(e),
                }
            };
            let result = match result {
                Err(ExecError::ImageNotFound(img)) if policy != PullPolicy::Never && !pulled => {
                    match pull(rt, rx, rep, &task).await {
                        Ok(()) => {
                            pulled = true;
                            continue;
                        }
                        // containerd went away: waited out below.
                        Err(e @ ExecError::Unavailable { .. }) => Err(e),
                        Err(e) => Err(ExecError::Pull(format!(
                            "image {img} not found on node {node_name} and its pull failed: {e}"
                        ))),
                    }
                }
                r => r,
            };
            match result {
                Ok(()) => break,
                Err(ExecError::ImageNotFound(img)) => {
                    let msg = if policy == PullPolicy::Never {
                        format!("image {img} not found on node {node_name} (pull policy: never)")
                    } else {
                        format!("image {img} not found on node {node_name}")
                    };
                    return rep.failed(TaskState::Rejected, msg).await;
                }
                Err(ExecError::Unavailable { .. }) if !wants_stop(rx) => {
                    pause(rx, &mut delay).await
                }
                Err(ExecError::Unavailable { .. }) => {
                    return shut_down_before_start(rt, &task, rep).await;
                }
                Err(e) => return rep.failed(TaskState::Rejected, e.to_string()).await,
            }
        }
        rep.send(TaskState::Ready, "ready", |_| {}).await;
        if wants_stop(rx) {
            return shut_down_before_start(rt, &task, rep).await;
        }
        rep.send(TaskState::Starting, "starting", |_| {}).await;
        let mut delay = RETRY_FIRST;
        loop {
            match exec.start(&task).await {
                Ok(()) => break,
                Err(ExecError::Unavailable { .. }) => pause(rx, &mut delay).await,
                Err(e) => return rep.failed(TaskState::Failed, e.to_string()).await,
            }
        }
        let check = health_check(exec, &task).await;
        match &check {
            None => rep.send(TaskState::Running, "running", |_| {}).await,
            Some(_) => {
                rep.send(
                    TaskState::Starting,
                    "starting: waiting for its health check",
                    |st| st.health = Some("starting".into()),
                )
                .await
            }
        }
    }

    let check = health_check(exec, &task).await;
    let mut wait = exec.wait(&id);
    // An adopted task that ran was healthy already.
    let mut health = Health::new(up && task.status.state == TaskState::Running);
    if check.is_none() || health.healthy {
        serve(rt, &task).await;
    }
    loop {
        if wants_stop(rx) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(health.next), if check.is_some() => {
                let (spec, args) = check.as_ref().expect("checked above");
                // A stop asked for meanwhile is not held up by the check.
                let verdict = tokio::select! {
                    v = health.check(exec, &id, spec, args) => v,
                    changed = rx.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        continue;
                    }
                };
                // A check that failed because the process had just ended:
                // the exit is what happened, not ill health.
                let verdict = match verdict {
                    Verdict::Unhealthy(_) => match futures::FutureExt::now_or_never(&mut wait) {
                        Some(Ok(exit)) => return rep.exited(exit).await,
                        _ => verdict,
                    },
                    v => v,
                };
                match verdict {
                    Verdict::Same => {}
                    Verdict::Healthy(output) => {
                        rep.send(TaskState::Running, "running (healthy)", |st| {
                            st.health = Some("healthy".into());
                            st.health_output = Some(output);
                        })
                        .await;
                        serve(rt, &task).await;
                    }
                    Verdict::Unhealthy(output) => {
                        // Stopped here, reported failed: its restart policy
                        // replaces it.
                        let c = &task.spec.container;
                        let signal = c.stop_signal.as_deref().unwrap_or("SIGTERM");
                        let grace = Duration::from_millis(c.stop_grace_period_ms);
                        if let Err(e) = exec.stop(&id, signal, grace).await {
                            warn!(task = %id, error = %e, "stop of an unhealthy task failed");
                        }
                        let exit = tokio::time::timeout(Duration::from_secs(5), &mut wait).await;
                        let msg = format!(
                            "unhealthy: {} checks in a row failed: {}",
                            spec.retries,
                            if output.is_empty() { "(no output)" } else { output.as_str() }
                        );
                        info!(task = %id, "{msg}");
                        return rep
                            .send(TaskState::Failed, &msg, |st| {
                                st.error = Some(msg.clone());
                                st.exit_code = match exit {
                                    Ok(Ok(e)) => Some(e.code),
                                    _ => None,
                                };
                                st.health = Some("unhealthy".into());
                                st.health_output = Some(output);
                            })
                            .await;
                    }
                }
            }
            r = &mut wait => {
                return match r {
                    Ok(exit) => rep.exited(exit).await,
                    // containerd went away under the running task.
                    Err(ExecError::Unavailable { .. }) => {
                        warn!(task = %id, "containerd cannot be reached; the task is checked again when it is back");
                        match inspect_when_reachable(exec, rx, &id).await {
                            Ok(ContainerState::Running { .. }) => {
                                info!(task = %id, "containerd is back and the task still runs");
                                wait = exec.wait(&id);
                                continue;
                            }
                            Ok(ContainerState::Exited(exit)) => rep.exited(exit).await,
                            Ok(_) => {
                                let msg = "the container was gone when containerd came back";
                                rep.failed(TaskState::Failed, msg.into()).await
                            }
                            Err(e) => rep.failed(TaskState::Failed, e.to_string()).await,
                        }
                    }
                    Err(e) => rep.failed(TaskState::Failed, e.to_string()).await,
                };
            }
            changed = rx.changed() => if changed.is_err() { break },
        }
    }
    let c = &task.spec.container;
    let signal = c.stop_signal.as_deref().unwrap_or("SIGTERM");
    let grace = Duration::from_millis(c.stop_grace_period_ms);
    if let Err(e) = exec.stop(&id, signal, grace).await {
        warn!(task = %id, error = %e, "stop failed");
    }
    // The process is gone; its exit status is what `wait` returns now.
    let exit = match tokio::time::timeout(Duration::from_secs(5), &mut wait).await {
        Ok(Ok(exit)) => Some(exit),
        _ => None,
    };
    rep.send(TaskState::Shutdown, "shutdown", |st| {
        st.exit_code = exit.map(|e| e.code);
        st.oom_killed = exit.is_some_and(|e| e.oom_killed);
    })
    .await;
}
