//! compose's `depends_on`, cluster-wide: a pending task of a service with
//! dependencies is placed only once every service it depends on meets its
//! condition. Checking at placement (not when the orchestrator creates the
//! task) covers every way a task comes to be: a first deploy, a scale-up,
//! an update's new task and a failed task's replacement alike.

use std::collections::HashMap;

use crate::types::{Dependency, DependsCondition, Service, Task, TaskState};

/// The dependencies of the services that have some, by service id.
pub struct Gate<'a> {
    deps: HashMap<&'a str, &'a [Dependency]>,
    tasks: &'a [&'a Task],
    /// Verdicts of this pass, by service id: None when it may start.
    verdicts: HashMap<&'a str, Option<String>>,
}

impl<'a> Gate<'a> {
    pub fn new(services: &'a [Service], tasks: &'a [&'a Task]) -> Gate<'a> {
        Gate {
            deps: services
                .iter()
                .filter(|s| !s.spec.depends_on.is_empty())
                .map(|s| (s.id.as_str(), s.spec.depends_on.as_slice()))
                .collect(),
            tasks,
            verdicts: HashMap::new(),
        }
    }

    /// Why `task` must wait, or None when its service's dependencies are
    /// met.
    pub fn waits(&mut self, task: &'a Task) -> Option<String> {
        let deps = self.deps.get(task.service_id.as_str())?;
        if let Some(v) = self.verdicts.get(task.service_id.as_str()) {
            return v.clone();
        }
        let verdict = deps
            .iter()
            .find(|d| !met(d, self.tasks))
            .map(waiting_message);
        self.verdicts
            .insert(task.service_id.as_str(), verdict.clone());
        verdict
    }
}

fn waiting_message(d: &Dependency) -> String {
    let what = match d.condition {
        DependsCondition::Started => "to start",
        DependsCondition::Healthy => "to be healthy",
        DependsCondition::CompletedSuccessfully => "to complete successfully",
    };
    format!("waiting for service {} {what} (depends_on)", d.service)
}

/// Whether the tasks of `d.service` meet `d.condition`. A service with
/// several tasks is started (healthy) once one of them is, as its virtual
/// IP then answers; it has completed once none is left to run and one ran
/// to a clean exit.
fn met(d: &Dependency, tasks: &[&Task]) -> bool {
    let mut of = tasks
        .iter()
        .filter(|t| t.service_name == d.service && t.desired_state <= TaskState::Complete);
    match d.condition {
        DependsCondition::Started => of.any(|t| t.status.state == TaskState::Running),
        DependsCondition::Healthy => of.any(|t| {
            t.status.state == TaskState::Running && t.status.health.as_deref() == Some("healthy")
        }),
        DependsCondition::CompletedSuccessfully => {
            let mut succeeded = false;
            for t in of {
                if t.status.state < TaskState::Complete && t.desired_state <= TaskState::Running {
                    return false;
                }
                succeeded |= t.status.succeeded();
            }
            succeeded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TaskStatus;

    fn task(service: &str, state: TaskState, health: Option<&str>, exit: Option<i32>) -> Task {
        Task {
            id: crate::types::new_id(),
            meta: Default::default(),
            service_id: format!("id-{service}"),
            service_name: service.into(),
            slot: 1,
            node_id: None,
            spec: Default::default(),
            spec_version: 1,
            restarts: 0,
            desired_state: if state >= TaskState::Complete {
                TaskState::Complete
            } else {
                TaskState::Running
            },
            status: TaskStatus {
                state,
                health: health.map(String::from),
                exit_code: exit,
                ..Default::default()
            },
        }
    }

    fn dep(service: &str, condition: DependsCondition) -> Dependency {
        Dependency {
            service: service.into(),
            condition,
        }
    }

    #[test]
    fn each_condition_is_judged_from_the_dependencys_tasks() {
        let starting = task("db", TaskState::Running, Some("starting"), None);
        let healthy = task("db", TaskState::Running, Some("healthy"), None);
        let pending = task("db", TaskState::Pending, None, None);
        let done = task("migrate", TaskState::Complete, None, Some(0));
        let still = task("migrate", TaskState::Running, None, None);
        let failed = task("migrate", TaskState::Failed, None, Some(1));
        let started = dep("db", DependsCondition::Started);
        let health = dep("db", DependsCondition::Healthy);
        let completed = dep("migrate", DependsCondition::CompletedSuccessfully);
        assert!(!met(&started, &[&pending]));
        assert!(met(&started, &[&pending, &starting]));
        assert!(!met(&health, &[&starting]));
        assert!(met(&health, &[&starting, &healthy]));
        assert!(!met(&completed, &[]));
        assert!(!met(&completed, &[&done, &still]));
        assert!(!met(&completed, &[&failed]));
        assert!(met(&completed, &[&done, &failed]));
        // Another service's tasks say nothing.
        assert!(!met(&started, &[&still]));
    }

    #[test]
    fn a_task_waits_with_the_first_unmet_dependency_named() {
        let api = Service {
            id: "id-api".into(),
            meta: Default::default(),
            spec: crate::types::ServiceSpec {
                name: "api".into(),
                labels: Default::default(),
                mode: crate::types::ServiceMode::Replicated { replicas: 1 },
                endpoint_mode: Default::default(),
                task: Default::default(),
                update: Default::default(),
                rollback: Default::default(),
                depends_on: vec![dep("db", DependsCondition::Healthy)],
            },
            spec_version: 1,
            previous_spec: None,
            vips: Vec::new(),
            update_status: None,
            rebalance: Vec::new(),
        };
        let services = vec![api.clone()];
        let mut mine = task("api", TaskState::Pending, None, None);
        mine.service_id = api.id.clone();
        let db = task("db", TaskState::Running, Some("starting"), None);
        let tasks = vec![&db];
        let mut gate = Gate::new(&services, &tasks);
        assert_eq!(
            gate.waits(&mine).as_deref(),
            Some("waiting for service db to be healthy (depends_on)")
        );
        let healthy = task("db", TaskState::Running, Some("healthy"), None);
        let tasks = vec![&healthy];
        assert_eq!(Gate::new(&services, &tasks).waits(&mine), None);
    }
}
