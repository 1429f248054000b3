//! Builders shared by the orchestrator's unit tests.

use crate::types::*;

pub fn service(replicas: u64) -> Service {
    Service {
        id: "svc".into(),
        meta: Meta::default(),
        spec: ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas },
            endpoint_mode: Default::default(),
            update: Default::default(),
            rollback: Default::default(),
            depends_on: Vec::new(),
            task: TaskSpec::default(),
        },
        spec_version: 1,
        previous_spec: None,
        vips: Vec::new(),
        update_status: None,
        rebalance: Vec::new(),
    }
}

pub fn task_in(slot: u64, spec_version: u64) -> Task {
    let mut t = super::plan::new_task(&service(1), slot, None, 0, 0);
    t.spec_version = spec_version;
    t
}
