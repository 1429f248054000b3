//! What a reconcile pass decides: tasks to create and desired-state changes.
//! Turned into one store batch by the loop.

use crate::store::{Change, Object};
use crate::types::{Meta, Service, Task, TaskState, TaskStatus};

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<Task>,
    pub desire: Vec<(String, TaskState)>,
    /// Reconcile again at this time (a restart delay is running out).
    pub wake_at_ms: Option<i64>,
    /// Services whose rollout changes, by id. Written apart from the
    /// tasks: a service write can be refused (a user's update came first)
    /// and must not take the tasks' changes with it.
    pub rollouts: Vec<(String, super::update::Rollout)>,
}

impl Plan {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.desire.is_empty()
    }

    pub fn wake(&mut self, at: i64) {
        self.wake_at_ms = Some(self.wake_at_ms.map_or(at, |w| w.min(at)));
    }

    pub fn merge(&mut self, other: Plan) {
        self.create.extend(other.create);
        self.desire.extend(other.desire);
        self.rollouts.extend(other.rollouts);
        if let Some(at) = other.wake_at_ms {
            self.wake(at);
        }
    }

    pub fn into_changes(self) -> Vec<Change> {
        let desire = self
            .desire
            .into_iter()
            .map(|(id, state)| Change::TaskDesired { id, state });
        let create = self
            .create
            .into_iter()
            .map(|t| Change::Create(Object::Task(t)));
        desire.chain(create).collect()
    }
}

/// A new pending task of `service` in `slot` (0 for global), made from the
/// service's current spec.
pub fn new_task(
    service: &Service,
    slot: u64,
    node_id: Option<String>,
    restarts: u64,
    now_ms: i64,
) -> Task {
    Task {
        id: crate::types::new_id(),
        meta: Meta::default(),
        service_id: service.id.clone(),
        service_name: service.spec.name.clone(),
        slot,
        node_id,
        spec: service.spec.task.clone(),
        spec_version: service.spec_version,
        restarts,
        desired_state: TaskState::Running,
        status: TaskStatus {
            state: TaskState::Pending,
            timestamp_ms: now_ms,
            message: "created".into(),
            ..Default::default()
        },
    }
}

/// A task with no service and a default spec: a blank that tests fill in.
#[cfg(test)]
pub fn probe_task() -> Task {
    Task {
        id: String::new(),
        meta: Meta::default(),
        service_id: String::new(),
        service_name: String::new(),
        slot: 0,
        node_id: None,
        spec: Default::default(),
        spec_version: 0,
        restarts: 0,
        desired_state: TaskState::Running,
        status: TaskStatus::default(),
    }
}
