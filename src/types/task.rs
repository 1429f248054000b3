//! Tasks: one container run of a service, with the desired state written by
//! managers and the observed status written by the node that runs it.

use serde::{Deserialize, Serialize};

use super::{Meta, TaskSpec};

/// The life of a task. The order matters: both the desired state and the
/// observed state only ever move forward (see swarm-reference.md).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// The container has finished (or never will run): nothing more happens.
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the node last saw of the task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    /// When the node observed this state (ms since epoch).
    pub timestamp_ms: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// The task's addresses on its networks, as the node gave them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Its health check's verdict, if it has one: `starting`, `healthy`
    /// or `unhealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The start of the last check's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_output: Option<String>,
}

impl TaskStatus {
    /// The task ran to completion and exited 0 (what a job's task must do).
    pub fn succeeded(&self) -> bool {
        self.state == TaskState::Complete && self.exit_code.unwrap_or(0) == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub meta: Meta,
    pub service_id: String,
    /// Copied from the service so that `ps` needs no join.
    pub service_name: String,
    /// 1..=N for replicated services; 0 for global services, which are
    /// keyed by node instead.
    pub slot: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The spec the task was made from. A task never changes spec: an
    /// update replaces it.
    pub spec: TaskSpec,
    /// The service's `spec_version` this task was made from.
    pub spec_version: u64,
    /// How many tasks ran in this slot before this one because of the
    /// restart policy; `--restart-max-attempts` is checked against it.
    pub restarts: u64,
    pub desired_state: TaskState,
    pub status: TaskStatus,
}

impl Task {
    /// `service.slot` for replicated tasks, `service.node` for global ones,
    /// as docker names them.
    pub fn display_name(&self) -> String {
        if self.slot > 0 {
            format!("{}.{}", self.service_name, self.slot)
        } else {
            let node = self.node_id.as_deref().unwrap_or("");
            format!("{}.{}", self.service_name, node)
        }
    }

    /// The task is meant to run and has not finished yet.
    pub fn is_live(&self) -> bool {
        self.desired_state <= TaskState::Running && !self.status.state.is_terminal()
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::*;

    #[test]
    fn states_are_ordered_as_swarm_orders_them() {
        let order = [
            New, Pending, Assigned, Accepted, Preparing, Ready, Starting, Running, Complete,
            Shutdown, Failed, Rejected, Remove, Orphaned,
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert!(Complete.is_terminal() && !Running.is_terminal());
    }
}
