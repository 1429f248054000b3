//! The loops that run only while this manager leads its Raft: the
//! orchestrator, the scheduler, node liveness and the dispatcher. They start
//! when this manager becomes the leader and stop as soon as it is not, so
//! that two managers never drive the cluster at once.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::info;

use crate::dispatcher::Dispatcher;
use crate::raft::{LeaderProposer, RaftNode};
use crate::shutdown::{self, Shutdown};
use crate::store::Proposer;

/// Run the leader-only loops and the dispatcher for each term this node
/// leads, and stop them as soon as it does not.
pub async fn run(
    raft: Arc<RaftNode>,
    node_id: String,
    dispatcher_slot: watch::Sender<Option<Dispatcher>>,
    mut shutdown: Shutdown,
) {
    let mut metrics = raft.raft.metrics();
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            r = metrics.wait_for(RaftNode::leads) => if r.is_err() { return },
        }
        info!("this manager is the leader: starting the orchestrator, scheduler and dispatcher");
        let (trigger, term) = shutdown::channel();
        let store = raft.store.clone();
        let proposer: Arc<dyn Proposer> = Arc::new(LeaderProposer { node: raft.clone() });
        let dispatcher = Dispatcher::new(store.clone(), proposer.clone(), term.clone());
        let loops = vec![
            tokio::spawn(crate::orchestrator::run(
                store.clone(),
                proposer.clone(),
                term.clone(),
            )),
            tokio::spawn(crate::scheduler::run(
                store.clone(),
                proposer.clone(),
                term.clone(),
            )),
            tokio::spawn(crate::dispatcher::watch_nodes(
                store.clone(),
                proposer.clone(),
                dispatcher.heartbeats.clone(),
                node_id.clone(),
                term.clone(),
            )),
        ];
        dispatcher_slot.send_replace(Some(dispatcher));
        tokio::select! {
            _ = shutdown.wait() => {}
            _ = metrics.wait_for(|m| !RaftNode::leads(m)) => {}
        }
        dispatcher_slot.send_replace(None);
        trigger.trigger();
        for l in loops {
            let _ = l.await;
        }
        if shutdown.is_set() {
            return;
        }
        info!("this manager no longer leads: its leader-only loops stopped");
    }
}
