//! One manager's Raft: started by the manager's components, stopped with
//! them. Operations that only the leader can do (writes, membership, read
//! barriers) run here; `proposer` forwards them when this node is not the
//! leader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use tracing::info;

use super::network::Network;
use super::wire::{Forward, ForwardResult};
use super::{raft_id, LogStore, Member, NodeId, Raft, Request, StateMachine};
use crate::store::{Store, StoreError};

/// The largest batch that is one Raft entry: an AppendEntries of one entry
/// (plus its envelope) fits in a Raft message.
pub const MAX_ENTRY: usize = super::wire::MAX_RAFT_MESSAGE / 2;

/// How long the leader waits for a joining manager to catch up before it
/// answers that it cannot yet make it a voter (the manager asks again).
const CATCH_UP: Duration = Duration::from_secs(10);

/// Heartbeats every 150 ms and elections after 0.5–1 s of silence (over
/// three missed heartbeats): a dead leader is replaced within about 2 s on
/// a LAN, while a Pi that is busy for a moment does not trigger one.
fn config() -> Config {
    Config {
        cluster_name: "shoal".into(),
        heartbeat_interval: 150,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        // A snapshot travels in chunks well under a Raft message, each with
        // time to be written on the other side (openraft's default is 200
        // ms, too short for a chunk on an SD card).
        snapshot_max_chunk_size: (super::wire::MAX_RAFT_MESSAGE / 4) as u64,
        install_snapshot_timeout: 10_000,
        // Snapshots are triggered by `snapshot` below, from the cluster's
        // setting, which can change at run time.
        snapshot_policy: SnapshotPolicy::Never,
        // After a snapshot the log behind it goes: the whole state of a
        // small cluster is cheap to send, and the SD card is spared.
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    }
}

pub struct RaftNode {
    pub raft: Raft,
    pub store: Store,
    pub node_id: String,
    pub id: NodeId,
    pub tls: Arc<rustls::ClientConfig>,
    /// The channel to the leader that forwarded writes use, kept so that a
    /// write does not pay for a TLS handshake: (leader's node id, client).
    leader_client: std::sync::Mutex<Option<(String, LeaderClient)>>,
}

type LeaderClient = crate::rpc::compat::RaftClient;

/// Why a leader-side operation did not happen here.
pub enum NotHere {
    /// Another manager leads: ask it.
    Leader(Member),
    /// Nobody leads that this node knows of.
    NoLeader,
    Failed(StoreError),
}

impl RaftNode {
    pub async fn start(
        data_dir: &Path,
        store: Store,
        node_id: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Arc<RaftNode>> {
        let config = Arc::new(config().validate()?);
        let log = LogStore::open(
            &crate::data_dir::DataDir::at(data_dir).raft_log(),
            store.codec().clone(),
        )?;
        let sm = StateMachine::new(store.clone(), data_dir);
        let network = Network {
            tls: tls.clone(),
            store: store.clone(),
        };
        let id = raft_id(node_id);
        let raft = Raft::new(id, config, network, log, sm).await?;
        Ok(Arc::new(RaftNode {
            raft,
            store,
            node_id: node_id.to_string(),
            id,
            tls,
            leader_client: Default::default(),
        }))
    }

    /// Make this node a one-member cluster, if it is not in one yet.
    pub async fn bootstrap(&self, addr: &str) -> anyhow::Result<()> {
        if self.raft.is_initialized().await? {
            return Ok(());
        }
        let members = BTreeMap::from([(
            self.id,
            Member {
                node_id: self.node_id.clone(),
                addr: addr.to_string(),
            },
        )]);
        self.raft.initialize(members).await?;
        info!("started a new Raft cluster with this manager as its only member");
        Ok(())
    }

    pub fn metrics(&self) -> openraft::RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    /// Whether `node_id` is a voter in the membership `m` shows.
    pub fn counts(m: &openraft::RaftMetrics<NodeId, Member>, node_id: &str) -> bool {
        voters(m).iter().any(|v| v.node_id == node_id)
    }

    /// Whether these metrics say this node leads.
    pub fn leads(m: &openraft::RaftMetrics<NodeId, Member>) -> bool {
        m.state == ServerState::Leader
    }

    /// The current leader, as a member, if known.
    pub fn leader(&self) -> Option<Member> {
        let m = self.metrics();
        let id = m.current_leader?;
        m.membership_config.membership().get_node(&id).cloned()
    }

    /// Resolves once this node, having followed `leader`, stops following
    /// it: an election began (the leader's lease ran out), or another
    /// manager won one. Not while the metrics, which lag the engine a
    /// moment, do not show `leader` yet.
    pub async fn leader_moved(&self, leader: &Member) {
        let id = raft_id(&leader.node_id);
        let mut metrics = self.raft.metrics();
        let mut followed = false;
        loop {
            if metrics.borrow_and_update().current_leader == Some(id) {
                followed = true;
            } else if followed {
                return;
            }
            // Err: Raft stopped; the caller's next attempt reports it.
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// The node ids of the voters: the managers the quorum counts.
    pub fn voters(&self) -> Vec<String> {
        self.voter_members()
            .into_iter()
            .map(|m| m.node_id)
            .collect()
    }

    /// The voters, as members.
    pub fn voter_members(&self) -> Vec<Member> {
        voters(&self.metrics())
    }

    /// The managers in the membership (voters and learners).
    pub fn members(&self) -> Vec<Member> {
        self.metrics()
            .membership_config
            .membership()
            .nodes()
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn not_here<E>(&self, e: RaftError<NodeId, E>) -> NotHere
    where
        E: std::error::Error + openraft::TryAsRef<openraft::error::ForwardToLeader<NodeId, Member>>,
    {
        if let Some(f) = e.forward_to_leader::<Member>() {
            return match &f.leader_node {
                Some(m) if f.leader_id != Some(self.id) => NotHere::Leader(m.clone()),
                _ => NotHere::NoLeader,
            };
        }
        NotHere::Failed(StoreError::Unavailable(match e {
            RaftError::Fatal(f) => format!(
                "the replicated store stopped: {f}. It starts again on its own once the cause is gone \
                 (space on the disk, say), and whether a write under way was applied is known only then: \
                 look before writing it again"
            ),
            RaftError::APIError(api) => api.to_string(),
        }))
    }

    /// Do a forwardable operation here, if this node leads: the one entry
    /// point for the local proposer and for operations other managers
    /// forward. A write gives (commit index, log index); a read barrier
    /// (0, the log index to wait for); a membership change (0, 0).
    pub async fn perform(&self, op: &Forward) -> Result<ForwardResult, NotHere> {
        match op {
            Forward::Write(req) => self.write(req.clone()).await,
            Forward::ReadIndex => self.read_index().await.map(|i| Ok((0, i))),
            Forward::AddMe(member) => self.add_manager(member.clone()).await.map(|_| Ok((0, 0))),
            Forward::Remove(id) => self.remove_manager(id).await.map(|_| Ok((0, 0))),
        }
    }

    /// Write through Raft on this node, if it leads. A batch that would not
    /// fit in one AppendEntries is refused before it enters the log: in the
    /// log, it would stop replication for good.
    pub async fn write(&self, req: Request) -> Result<ForwardResult, NotHere> {
        let bytes = crate::format::encoded_len(&req);
        if bytes > MAX_ENTRY {
            return Ok(Err(StoreError::TooLarge {
                bytes,
                limit: MAX_ENTRY,
            }));
        }
        match self.raft.client_write(req).await {
            Ok(resp) => Ok(resp.data.0.map(|index| (index, resp.log_id.index))),
            Err(e) => Err(self.not_here(e)),
        }
    }

    /// The log index a linearizable read must wait for, if this node leads.
    pub async fn read_index(&self) -> Result<u64, NotHere> {
        match self.raft.ensure_linearizable().await {
            Ok(id) => Ok(id.map_or(0, |l| l.index)),
            // A leader that cannot hear from a quorum is no leader for a
            // read: wait for one like for an election, and say so in words
            // when none comes (openraft's error is a debug dump).
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(NotHere::NoLeader)
            }
            Err(e) => Err(self.not_here(e)),
        }
    }

    /// Wait until this node has applied `index`.
    pub async fn applied(&self, index: u64, timeout: Duration) -> Result<(), StoreError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read your writes")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(format!("this manager is behind: {e}")))
    }

    /// Add a manager as a voter: first as a learner that catches up, then
    /// into the voting membership.
    pub async fn add_manager(&self, member: Member) -> Result<(), NotHere> {
        let id = raft_id(&member.node_id);
        if self
            .metrics()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id)
        {
            return Ok(());
        }
        // Already a learner (the manager asks again while it catches up):
        // adding it again would restart its replication, and a large
        // snapshot under way to it with it, every time it asks.
        let metrics = self.metrics();
        let added_at = match metrics.membership_config.membership().get_node(&id) {
            Some(known) if *known == member => metrics.membership_config.log_id().map(|l| l.index),
            _ => {
                let added = self
                    .raft
                    .add_learner(id, member.clone(), false)
                    .await
                    .map_err(|e| self.not_here(e))?;
                Some(added.log_id.index)
            }
        }
        .unwrap_or(0);
        // Only a learner that holds the entry adding it becomes a voter: a
        // voter the leader cannot reach takes the quorum with it (with one
        // manager, every write stops). openraft's own wait counts a learner
        // that has received nothing as caught up while the log is short.
        let reached = self
            .raft
            .wait(Some(CATCH_UP))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .is_some_and(|matched| matched.index >= added_at)
                },
                "the new manager has the entry that added it",
            )
            .await
            .is_ok();
        if !reached {
            return Err(NotHere::Failed(StoreError::Unavailable(format!(
                "the leader cannot reach manager {} at {} (or it is still catching up): it stays a non-voting member until it can",
                member.node_id,
                super::network::current_addr(&self.store, &member)
            ))));
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.not_here(e))?;
        info!(node = %member.node_id, "manager added to the Raft membership");
        Ok(())
    }

    /// Take a manager out of the membership (voter and learner).
    pub async fn remove_manager(&self, node_id: &str) -> Result<(), NotHere> {
        let id = raft_id(node_id);
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Ok(());
        }
        if membership.voter_ids().any(|v| v == id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(|e| self.not_here(e))?;
        }
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.not_here(e))?;
        info!(node = %node_id, "manager removed from the Raft membership");
        Ok(())
    }

    /// A client of the leader's Raft service, reused while it works.
    pub async fn leader_client(
        &self,
        leader: &Member,
    ) -> Result<LeaderClient, tonic::transport::Error> {
        let cached = self
            .leader_client
            .lock()
            .expect("leader client lock")
            .clone();
        if let Some((_, c)) = cached.filter(|(id, _)| *id == leader.node_id) {
            return Ok(c);
        }
        let c = super::network::client(&self.tls, &self.store, leader).await?;
        *self.leader_client.lock().expect("leader client lock") =
            Some((leader.node_id.clone(), c.clone()));
        Ok(c)
    }

    /// Forget the leader's channel after it failed.
    pub fn drop_leader_client(&self) {
        *self.leader_client.lock().expect("leader client lock") = None;
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

impl From<ClientWriteError<NodeId, Member>> for StoreError {
    fn from(e: ClientWriteError<NodeId, Member>) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Compact the log: take a snapshot whenever `snapshot_interval` entries
/// (a cluster setting) were applied since the last one.
pub async fn snapshots(node: Arc<RaftNode>, mut shutdown: crate::shutdown::Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let interval = node
            .store
            .read()
            .ok()
            .and_then(|v| v.cluster().ok().flatten())
            .map_or(crate::types::DEFAULT_SNAPSHOT_INTERVAL, |c| {
                c.snapshot_interval
            })
            .max(1);
        let m = node.metrics();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let snapped = m.snapshot.map_or(0, |l| l.index);
        if applied >= snapped + interval {
            let _ = node.raft.trigger().snapshot().await;
        }
    }
}

fn voters(m: &openraft::RaftMetrics<NodeId, Member>) -> Vec<Member> {
    let membership = m.membership_config.membership();
    membership
        .voter_ids()
        .filter_map(|id| membership.get_node(&id).cloned())
        .collect()
}
