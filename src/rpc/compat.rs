//! Talking to nodes one release behind (docs/formats.md). Every service is
//! served twice: `shoal.v2` (format 2) by the services themselves, and
//! `shoal.v1` (format 1) through the `V1` adapters here, which hand the
//! same request to the same code. Clients call `shoal.v2` first; a peer
//! that does not know it (a 254a909 node answers "unimplemented") is
//! spoken to in `shoal.v1` from then on, for the life of the client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::codec::Proto;
use super::messages::*;
use super::pb::{v1, v2};

/// A service of today served as `shoal.v1`: same handlers, format 1.
pub struct V1<S>(pub Arc<S>);

#[tonic::async_trait]
impl<S: v2::ca_server::Ca> v1::ca_server::Ca for V1<S> {
    async fn root(&self, req: Request<Empty>) -> Result<Response<RootInfo>, Status> {
        self.0.root(req).await
    }
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        self.0.join(req).await
    }
    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        self.0.renew(req).await
    }
}

#[tonic::async_trait]
impl<S: v2::dispatcher_server::Dispatcher> v1::dispatcher_server::Dispatcher for V1<S> {
    type SessionStream = S::SessionStream;

    async fn session(
        &self,
        req: Request<SessionRequest>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.0.session(req).await
    }
    async fn heartbeat(&self, req: Request<Empty>) -> Result<Response<HeartbeatResponse>, Status> {
        self.0.heartbeat(req).await
    }
    async fn update_status(&self, req: Request<StatusBatch>) -> Result<Response<Empty>, Status> {
        self.0.update_status(req).await
    }
    async fn restarting(&self, req: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.0.restarting(req).await
    }
    async fn report_blobs(&self, req: Request<BlobReport>) -> Result<Response<Empty>, Status> {
        self.0.report_blobs(req).await
    }
    async fn blob_sources(&self, req: Request<BlobQuery>) -> Result<Response<BlobSources>, Status> {
        self.0.blob_sources(req).await
    }
}

#[tonic::async_trait]
impl<S: v2::node_agent_server::NodeAgent> v1::node_agent_server::NodeAgent for V1<S> {
    type LogsStream = S::LogsStream;

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        self.0.logs(req).await
    }

    type ReadBlobStream = S::ReadBlobStream;

    async fn read_blob(
        &self,
        req: Request<BlobRead>,
    ) -> Result<Response<Self::ReadBlobStream>, Status> {
        self.0.read_blob(req).await
    }

    async fn images(&self, req: Request<ImagesOp>) -> Result<Response<ImagesReply>, Status> {
        self.0.images(req).await
    }

    async fn volumes(&self, req: Request<VolumesOp>) -> Result<Response<VolumesReply>, Status> {
        self.0.volumes(req).await
    }

    type ExecStream = S::ExecStream;

    async fn exec(
        &self,
        req: Request<tonic::Streaming<ExecIn>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        self.0.exec(req).await
    }
}

/// The peer does not serve the route: it is a node of an older release.
fn route_missing(status: &Status) -> bool {
    // tonic answers an unknown route with an empty "unimplemented"; none
    // of shoal's handlers answers "unimplemented".
    status.code() == Code::Unimplemented
}

/// Which format a peer speaks, learned on the first call.
#[derive(Clone, Default)]
struct Learned(Arc<AtomicBool>);

impl Learned {
    fn proto(&self) -> Proto {
        if self.0.load(Ordering::Relaxed) {
            Proto::V1
        } else {
            Proto::V2
        }
    }

    fn old_peer(&self) {
        if !self.0.swap(true, Ordering::Relaxed) {
            tracing::info!("the peer runs an older shoal: speaking format 1 (shoal.v1) to it");
        }
    }
}

/// A client of one service that speaks whichever format the peer does.
/// Each method calls `shoal.v2`, and `shoal.v1` once the peer has shown
/// it knows only that. Requests are cloned for the retry.
macro_rules! compat_client {
    ($(#[$doc:meta])* $name:ident, $m1:ident :: $c1:ident, $m2:ident :: $c2:ident,
     { $($method:ident($req:ty) -> $resp:ty;)* }) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            v1: v1::$m1::$c1<Channel>,
            v2: v2::$m2::$c2<Channel>,
            learned: Learned,
        }

        impl $name {
            pub fn new(channel: Channel) -> $name {
                $name {
                    v1: super::limited!(v1::$m1::$c1::new(channel.clone())),
                    v2: super::limited!(v2::$m2::$c2::new(channel)),
                    learned: Learned::default(),
                }
            }

            $(
            pub async fn $method(&mut self, req: $req) -> Result<Response<$resp>, Status> {
                if self.learned.proto() == Proto::V2 {
                    match self.v2.$method(req.clone()).await {
                        Err(s) if route_missing(&s) => self.learned.old_peer(),
                        other => return other,
                    }
                }
                self.v1.$method(req).await
            }
            )*
        }
    };
}

compat_client!(
    /// The CA: root, join and renewal.
    CaClient, ca_client::CaClient, ca_client::CaClient, {
        root(Empty) -> RootInfo;
        join(JoinRequest) -> JoinResponse;
        renew(RenewRequest) -> RenewResponse;
    }
);

compat_client!(
    /// A node's session with a manager.
    DispatcherClient, dispatcher_client::DispatcherClient,
    dispatcher_client::DispatcherClient, {
        session(SessionRequest) -> tonic::Streaming<SessionMessage>;
        heartbeat(Empty) -> HeartbeatResponse;
        update_status(StatusBatch) -> Empty;
        restarting(Empty) -> Empty;
        report_blobs(BlobReport) -> Empty;
        blob_sources(BlobQuery) -> BlobSources;
    }
);

compat_client!(
    /// What managers ask of any node.
    NodeAgentClient, node_agent_client::NodeAgentClient, node_agent_client::NodeAgentClient, {
        logs(LogsRequest) -> tonic::Streaming<LogItem>;
        read_blob(BlobRead) -> tonic::Streaming<BlobChunk>;
        images(ImagesOp) -> ImagesReply;
        volumes(VolumesOp) -> VolumesReply;
    }
);

/// The Raft service of another manager. Its bodies are encoded by the
/// caller in the format of the route (`crate::raft::wire`), so each call
/// takes the encoding and is given the format to encode in.
#[derive(Clone)]
pub struct RaftClient {
    v1: v1::raft_client::RaftClient<Channel>,
    v2: v2::raft_client::RaftClient<Channel>,
    learned: Learned,
}

/// The Raft service's methods.
#[derive(Debug, Clone, Copy)]
pub enum RaftMethod {
    Append,
    Vote,
    Snapshot,
    Forward,
}

impl RaftClient {
    pub fn new(channel: Channel) -> RaftClient {
        RaftClient {
            v1: super::limited!(v1::raft_client::RaftClient::new(channel.clone())),
            v2: super::limited!(v2::raft_client::RaftClient::new(channel)),
            learned: Learned::default(),
        }
    }

    /// Calls `method` with the body `encode` gives for the format; returns
    /// the answer and the format it is in.
    pub async fn call(
        &mut self,
        method: RaftMethod,
        encode: impl Fn(Proto) -> Result<RaftBytes, Status>,
    ) -> Result<(RaftBytes, Proto), Status> {
        if self.learned.proto() == Proto::V2 {
            let body = encode(Proto::V2)?;
            let mut c = self.v2.clone();
            let r = match method {
                RaftMethod::Append => c.append(body).await,
                RaftMethod::Vote => c.vote(body).await,
                RaftMethod::Snapshot => c.snapshot(body).await,
                RaftMethod::Forward => c.forward(body).await,
            };
            match r {
                Err(s) if route_missing(&s) => self.learned.old_peer(),
                other => return other.map(|r| (r.into_inner(), Proto::V2)),
            }
        }
        let body = encode(Proto::V1)?;
        let mut c = self.v1.clone();
        let r = match method {
            RaftMethod::Append => c.append(body).await,
            RaftMethod::Vote => c.vote(body).await,
            RaftMethod::Snapshot => c.snapshot(body).await,
            RaftMethod::Forward => c.forward(body).await,
        };
        r.map(|r| (r.into_inner(), Proto::V1))
    }
}
