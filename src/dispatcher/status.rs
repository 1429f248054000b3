//! Status writes, batched across all nodes: every node's reports go to one
//! writer, which writes what piled up at most once per `BATCH_PERIOD`. A
//! writer per node means a store write (an fsync, and with Raft a log
//! entry) per node per period; with a thousand nodes starting tasks at
//! once, that queue of writes is what everyone waits for.
//!
//! A remote node's reports are acknowledged only once their batch is
//! committed: a report held here when the leader dies is not lost, the
//! node sends it again to the next leader.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::warn;

use super::StatusReport;
use crate::store::{Change, Proposer};
use crate::types::TaskStatus;

/// Status writes are batched: one store write per this period at most.
const BATCH_PERIOD: Duration = Duration::from_millis(100);

/// A batch this large is written at once.
pub(super) const MAX_BATCH: usize = 10_000;

/// Reports from one node (named by its identity), and who waits to hear
/// whether they were committed.
pub(super) struct NodeReports {
    pub node: String,
    pub updates: Vec<StatusReport>,
    pub committed: Option<oneshot::Sender<bool>>,
}

/// Passes one node's reports on to the writer, tagged with the node (the
/// in-process path, which nobody waits on).
pub(super) async fn forward(
    node: String,
    mut rx: mpsc::Receiver<StatusReport>,
    tx: mpsc::Sender<NodeReports>,
) {
    while let Some(report) = rx.recv().await {
        let reports = NodeReports {
            node: node.clone(),
            updates: vec![report],
            committed: None,
        };
        if tx.send(reports).await.is_err() {
            return;
        }
    }
}

/// The one writer. A batch is written `BATCH_PERIOD` after its first
/// report, or once it holds `MAX_BATCH` tasks. Ends when every sender is
/// gone.
pub(super) async fn write(proposer: Arc<dyn Proposer>, mut rx: mpsc::Receiver<NodeReports>) {
    let mut pending: HashMap<(String, String), TaskStatus> = HashMap::new();
    let mut waiting: Vec<oneshot::Sender<bool>> = Vec::new();
    let mut due: Option<Instant> = None;
    enum Next {
        Reports(NodeReports),
        Due,
        Closed,
    }
    loop {
        let next = tokio::select! {
            r = rx.recv() => r.map_or(Next::Closed, Next::Reports),
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => Next::Due,
        };
        match next {
            Next::Reports(reports) => {
                for r in reports.updates {
                    merge(&mut pending, (reports.node.clone(), r.task_id), r.status);
                }
                waiting.extend(reports.committed);
                due.get_or_insert_with(|| Instant::now() + BATCH_PERIOD);
                if pending.len() < MAX_BATCH {
                    continue;
                }
            }
            Next::Due => {}
            Next::Closed if pending.is_empty() && waiting.is_empty() => return,
            // Write what is left, then end on the next round.
            Next::Closed => {}
        }
        due = None;
        let committed = flush(proposer.as_ref(), std::mem::take(&mut pending)).await;
        for w in waiting.drain(..) {
            let _ = w.send(committed);
        }
    }
}

/// Writes a batch in one change set. Each report names its node, and is
/// applied only to a task of that node (`Change::TaskStatus`): the check
/// is made where the task is at hand anyway, in the same transaction, so
/// the writer reads nothing. False if it was not written.
async fn flush(proposer: &dyn Proposer, batch: HashMap<(String, String), TaskStatus>) -> bool {
    let changes: Vec<Change> = batch
        .into_iter()
        .map(|((node, id), status)| Change::TaskStatus {
            id,
            status,
            node: Some(node),
        })
        .collect();
    if changes.is_empty() {
        return true;
    }
    match proposer.propose(changes).await {
        Ok(_) => true,
        Err(e) => {
            warn!(error = %e, "status write failed");
            false
        }
    }
}

/// Keep the furthest state per task and node: reports that move backwards
/// are moot.
fn merge(
    pending: &mut HashMap<(String, String), TaskStatus>,
    key: (String, String),
    st: TaskStatus,
) {
    match pending.get(&key) {
        Some(cur) if cur.state > st.state => {}
        _ => {
            pending.insert(key, st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ProposeFuture, Store};
    use crate::types::TaskState;

    /// Applies batches to the store directly.
    struct Direct(Store);

    impl Proposer for Direct {
        fn propose(&self, batch: Vec<Change>) -> ProposeFuture<'_> {
            Box::pin(async move { self.0.apply(batch) })
        }
    }

    #[tokio::test]
    async fn reports_are_answered_once_written_and_the_writer_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("state.redb"),
            crate::store::Codec::ephemeral(),
        )
        .unwrap();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(write(Arc::new(Direct(store)), rx));
        // An empty batch, then a report of a task that is gone: both are
        // answered, and the writer is still there for the next one.
        for updates in [
            vec![],
            vec![("gone".to_string(), st(TaskState::Running)).into()],
        ] {
            let (committed, written) = oneshot::channel();
            let reports = NodeReports {
                node: "n1".into(),
                updates,
                committed: Some(committed),
            };
            tx.send(reports).await.expect("the writer runs");
            assert!(written.await.expect("an answer"));
        }
    }

    fn st(state: TaskState) -> TaskStatus {
        TaskStatus {
            state,
            ..Default::default()
        }
    }

    #[test]
    fn a_report_that_moves_backwards_is_dropped() {
        let key = || ("n1".to_string(), "t1".to_string());
        let mut pending = HashMap::new();
        merge(&mut pending, key(), st(TaskState::Running));
        merge(&mut pending, key(), st(TaskState::Starting));
        assert_eq!(pending[&key()].state, TaskState::Running);
        merge(&mut pending, key(), st(TaskState::Failed));
        assert_eq!(pending[&key()].state, TaskState::Failed);
        // Another node's report of the same task is kept apart, to be
        // checked against the task's node when it is written.
        merge(
            &mut pending,
            ("n2".into(), "t1".into()),
            st(TaskState::Starting),
        );
        assert_eq!(pending.len(), 2);
    }
}
