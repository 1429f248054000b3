//! `SimulatedExecutor`: an `Executor` with no containers behind it, for
//! the in-process tests. The real agent drives it step by step, as it
//! drives containerd; what each simulated container does is written in a
//! `Script` that tests share across nodes and may change while they run:
//! per image, how long a start takes, how many starts fail, and whether
//! (and how) the process exits after a while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::executor::{
    ContainerState, ExecError, Executor, ExitStatus, ImageStore, PullEvent, PullRequest, Pulled,
};
use crate::types::{ImageInfo, Task};

/// What a simulated container of one image does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Behavior {
    /// How long `start` takes (a slow start).
    pub start_delay: Duration,
    /// This many starts fail, counted over every node, before they succeed.
    pub failed_starts: u32,
    /// The process exits on its own: with this code, after running this
    /// long. `None`: it runs until stopped.
    pub exit: Option<(i32, Duration)>,
    /// Only this many runs exit as `exit` says, counted over every node;
    /// later ones run until stopped. `None`: every run does.
    pub exits: Option<u32>,
    /// The node reports the image missing (`prepare` fails).
    pub missing: bool,
    /// This many runs first, counted over every node, run until stopped
    /// whatever `exit` says (an update that fails from its third task on).
    pub good_runs: u32,
}

/// Behaviors by image, shared by every simulated node of a cluster. An
/// image with no behavior runs until stopped.
#[derive(Default)]
pub struct Script {
    /// std Mutex: never held across .await.
    by_image: Mutex<HashMap<String, Behavior>>,
}

impl Script {
    pub fn set(&self, image: &str, behavior: Behavior) {
        self.lock().insert(image.to_string(), behavior);
    }

    fn behavior(&self, image: &str) -> Behavior {
        self.lock().get(image).cloned().unwrap_or_default()
    }

    /// What one start of `image` does: `Err` if it is to fail, else how
    /// its process is to exit, if it does. Counts both down.
    fn start(&self, image: &str) -> Result<Option<(i32, Duration)>, ExecError> {
        let mut map = self.lock();
        let Some(b) = map.get_mut(image) else {
            return Ok(None);
        };
        if b.failed_starts > 0 {
            b.failed_starts -= 1;
            return Err(ExecError::Other("simulated start failure".into()));
        }
        if b.good_runs > 0 {
            b.good_runs -= 1;
            return Ok(None);
        }
        match (&mut b.exits, b.exit) {
            (None, exit) => Ok(exit),
            (Some(0), _) | (_, None) => Ok(None),
            (Some(n), exit) => {
                *n -= 1;
                Ok(exit)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Behavior>> {
        // A test that panicked while holding the lock left a whole map.
        self.by_image.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One simulated container: its state, and its exit for `wait` to see.
struct Container {
    state: ContainerState,
    exited: watch::Sender<Option<ExitStatus>>,
}

/// A simulated node's container runtime: containers are entries in a map,
/// processes are timers. Nothing is run.
pub struct SimulatedExecutor {
    script: Arc<Script>,
    /// Shared with the timers of processes that exit on their own.
    containers: Arc<Containers>,
}

type Containers = Mutex<HashMap<String, Container>>;

fn lock(containers: &Containers) -> std::sync::MutexGuard<'_, HashMap<String, Container>> {
    // std Mutex, never held across .await; a panic elsewhere left a whole map.
    containers.lock().unwrap_or_else(|e| e.into_inner())
}

/// Record that `id`'s process exited, if it still runs.
fn exit(containers: &Containers, id: &str, status: ExitStatus) {
    if let Some(c) = lock(containers).get_mut(id) {
        if matches!(c.state, ContainerState::Running { .. }) {
            c.state = ContainerState::Exited(status);
            c.exited.send_replace(Some(status));
        }
    }
}

/// What a simulated process exits with when it is stopped (SIGTERM).
const STOPPED: ExitStatus = ExitStatus {
    code: 143,
    oom_killed: false,
};

impl SimulatedExecutor {
    pub fn new(script: Arc<Script>) -> SimulatedExecutor {
        SimulatedExecutor {
            script,
            containers: Arc::default(),
        }
    }

    fn containers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Container>> {
        lock(&self.containers)
    }

    /// How many simulated processes run now.
    pub fn running(&self) -> usize {
        self.containers()
            .values()
            .filter(|c| matches!(c.state, ContainerState::Running { .. }))
            .count()
    }
}

fn missing(id: &str) -> ExecError {
    ExecError::Other(format!("no simulated container {id}"))
}

/// A simulated registry: it has every image but the `missing` ones, and a
/// pull stores nothing (the simulated `prepare` needs no image).
impl ImageStore for SimulatedExecutor {
    fn images(&self) -> BoxFuture<'_, Result<Vec<ImageInfo>, ExecError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn load_image<'a>(
        &'a self,
        _path: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<Vec<String>, ExecError>> {
        Box::pin(async {
            Err(ExecError::Other(
                "the simulated executor loads no archive".into(),
            ))
        })
    }

    fn remove_image<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async { Ok(()) })
    }

    fn images_in_use(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// A simulated disk, never full: the simulated node collects nothing.
    fn image_disk(&self) -> BoxFuture<'_, Result<crate::types::DiskUsage, ExecError>> {
        Box::pin(async {
            Ok(crate::types::DiskUsage {
                used_bytes: 0,
                total_bytes: 1 << 40,
            })
        })
    }

    fn pull_image<'a>(
        &'a self,
        req: &'a PullRequest,
        _progress: Option<tokio::sync::mpsc::Sender<PullEvent>>,
    ) -> BoxFuture<'a, Result<Pulled, ExecError>> {
        Box::pin(async move {
            if self.script.behavior(&req.image).missing {
                return Err(ExecError::Pull(format!(
                    "the simulated registry has no {}",
                    req.image
                )));
            }
            Ok(Pulled {
                name: req.image.clone(),
                digest: req.digest.clone().unwrap_or_default(),
                platform: "linux/amd64".into(),
                fetched_bytes: 0,
                peer_bytes: 0,
            })
        })
    }

    fn has_image<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<bool, ExecError>> {
        Box::pin(async move { Ok(!self.script.behavior(&task.spec.container.image).missing) })
    }

    fn blobs(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn read_blob<'a>(
        &'a self,
        digest: &'a str,
        _offset: u64,
    ) -> BoxFuture<'a, Result<crate::executor::ByteStream, ExecError>> {
        Box::pin(async move { Err(ExecError::ImageNotFound(digest.to_string())) })
    }
}

impl Executor for SimulatedExecutor {
    fn ping(&self) -> BoxFuture<'_, Result<(), ExecError>> {
        Box::pin(async { Ok(()) })
    }

    /// Simulated images have no HEALTHCHECK.
    fn image_health_check<'a>(
        &'a self,
        _task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<crate::types::HealthCheck>, ExecError>> {
        Box::pin(async { Ok(None) })
    }

    /// Simulated: every command in a running task succeeds, silently.
    fn exec_session<'a>(
        &'a self,
        _task_id: &'a str,
        _spec: crate::executor::ExecSpec,
    ) -> BoxFuture<'a, Result<crate::executor::ExecSession, ExecError>> {
        Box::pin(async {
            Err(ExecError::Other(
                "the simulated executor runs no processes to exec into".into(),
            ))
        })
    }

    fn exec<'a>(
        &'a self,
        task_id: &'a str,
        _args: &'a [String],
        _timeout: std::time::Duration,
    ) -> BoxFuture<'a, Result<crate::executor::ExecOutput, ExecError>> {
        Box::pin(async move {
            match self.containers().get(task_id) {
                Some(_) => Ok(crate::executor::ExecOutput {
                    code: Some(0),
                    output: String::new(),
                }),
                None => Err(ExecError::Other(format!("task {task_id} has no container"))),
            }
        })
    }

    fn prepare<'a>(
        &'a self,
        task: &'a Task,
        _setup: &'a crate::executor::Setup,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let image = &task.spec.container.image;
            if self.script.behavior(image).missing {
                return Err(ExecError::ImageNotFound(image.clone()));
            }
            self.containers()
                .entry(task.id.clone())
                .or_insert_with(|| Container {
                    state: ContainerState::Created,
                    exited: watch::channel(None).0,
                });
            Ok(())
        })
    }

    fn start<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let image = &task.spec.container.image;
            let delay = self.script.behavior(image).start_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let exits = self.script.start(image)?;
            {
                let mut containers = self.containers();
                let c = containers
                    .get_mut(&task.id)
                    .ok_or_else(|| missing(&task.id))?;
                if matches!(c.state, ContainerState::Running { .. }) {
                    return Ok(());
                }
                c.state = ContainerState::Running { pid: 1 };
            }
            if let Some((code, after)) = exits {
                let containers = self.containers.clone();
                let id = task.id.clone();
                let status = ExitStatus {
                    code,
                    oom_killed: false,
                };
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    exit(&containers, &id, status);
                });
            }
            Ok(())
        })
    }

    fn wait<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, ExecError>> {
        Box::pin(async move {
            let mut exited = self
                .containers()
                .get(task_id)
                .map(|c| c.exited.subscribe())
                .ok_or_else(|| missing(task_id))?;
            let status = exited
                .wait_for(Option::is_some)
                .await
                .map_err(|_| missing(task_id))?;
            status.ok_or_else(|| missing(task_id))
        })
    }

    fn stop<'a>(
        &'a self,
        task_id: &'a str,
        _signal: &'a str,
        _grace: Duration,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            exit(&self.containers, task_id, STOPPED);
            Ok(())
        })
    }

    fn remove<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.containers().remove(task_id);
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<ContainerState, ExecError>> {
        Box::pin(async move {
            Ok(self
                .containers()
                .get(task_id)
                .map_or(ContainerState::Missing, |c| c.state.clone()))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>> {
        Box::pin(async move { Ok(self.containers().keys().cloned().collect()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, image: &str) -> Task {
        let service = crate::sim::objects::service("s", image, 1);
        let mut t = crate::orchestrator::new_task(&service, 1, None, 0, 0);
        t.id = id.into();
        t
    }

    #[tokio::test]
    async fn the_script_fails_starts_then_exits_then_runs() {
        let script = Arc::new(Script::default());
        script.set(
            "img",
            Behavior {
                failed_starts: 1,
                exit: Some((3, Duration::ZERO)),
                exits: Some(1),
                ..Default::default()
            },
        );
        let exec = SimulatedExecutor::new(script);
        let t = task("t1", "img");
        exec.prepare(&t, &Default::default()).await.unwrap();
        assert!(exec.start(&t).await.is_err(), "the first start fails");
        exec.start(&t).await.unwrap();
        let exit = exec.wait("t1").await.unwrap();
        assert_eq!(exit.code, 3);

        // The next run is not scripted to exit: it runs until stopped.
        let t2 = task("t2", "img");
        exec.prepare(&t2, &Default::default()).await.unwrap();
        exec.start(&t2).await.unwrap();
        assert_eq!(exec.running(), 1);
        exec.stop("t2", "SIGTERM", Duration::ZERO).await.unwrap();
        assert_eq!(exec.wait("t2").await.unwrap(), STOPPED);
        exec.remove("t2").await.unwrap();
        assert_eq!(exec.inspect("t2").await.unwrap(), ContainerState::Missing);
    }
}
