//! The control API that the CLI talks to: HTTP/JSON on the local unix
//! socket (as dockerd serves its API). Handlers validate, read the store,
//! and write only through the proposer. Errors become HTTP here, in one
//! place (`error.rs`).

mod cluster;
mod error;
mod events;
pub mod exec;
mod force;
mod images;
mod join;
mod leave;
mod lock;
mod logs;
pub mod networks;
mod node_images;
pub mod options;
mod registries;
mod roles;
pub mod secrets;
mod services;
pub mod spec;
pub mod stack_types;
pub mod stacks;
pub mod types;
mod validate;
pub mod volumes;

pub use crate::node::{Identity, Left};
pub use cluster::{ClusterUpdate, NodeUpdate};
pub use error::ApiError;
pub use join::{JoinRequest, JoinResponse};
pub use lock::{serve_locked, UnlockKeyReply, UnlockRequest};
pub use registries::{LoginRequest, LogoutReply, LogoutRequest, RegistryRow, RegistrySettings};
pub use roles::RoleChange;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::node::{Handle, Parts};

/// What every handler can reach: the node's parts, read directly (store,
/// proposer, executor), and the node's supervisor, which alone changes the
/// node (its cluster, its role, its components): handlers send it commands.
pub struct Ctx {
    pub parts: Arc<Parts>,
    pub node: Handle,
    /// What `GET /v1/events` streams: this manager's record of the
    /// store's commits.
    pub events: Arc<crate::events::EventLog>,
}

impl std::ops::Deref for Ctx {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.parts
    }
}

impl Ctx {
    /// A read view that holds every write committed before this call, on
    /// whichever manager serves it (a linearizable read).
    pub async fn read_current(&self) -> Result<crate::store::ReadView, ApiError> {
        self.identity()?;
        self.proposer.barrier().await?;
        Ok(self.store.read()?)
    }

    /// Who leads and who is a member, for `node ls`.
    pub fn raft_view(&self) -> types::RaftView {
        let m = self.membership().members();
        types::RaftView {
            leader: m.leader,
            members: m.members,
        }
    }

    /// The local identity of a manager, or the error that tells the user
    /// what to run. Cluster state lives on managers only.
    pub fn identity(&self) -> Result<Identity, ApiError> {
        let id = self.node.identity().ok_or_else(|| {
            ApiError::NotInCluster(
                "this node is not part of a cluster: run `shoal init` to start one, or `shoal join` to join one".into(),
            )
        })?;
        if id.role == crate::types::NodeRole::Worker {
            return Err(ApiError::NotInCluster(
                "this node is a worker: run cluster commands on a manager".into(),
            ));
        }
        if let Some(failure) = self.node.failure() {
            return Err(ApiError::Unavailable(format!(
                "this manager's cluster components failed to start: {failure}"
            )));
        }
        Ok(id)
    }
}

pub fn router(ctx: Arc<Ctx>) -> Router {
    let routes = Router::new()
        .route("/v1/init", post(cluster::init))
        .route("/v1/info", get(cluster::info))
        .route("/v1/join", post(join::join))
        .route("/v1/leave", post(leave::leave))
        .route("/v1/cluster/update", post(cluster::update_cluster))
        .route("/v1/join-token/{role}", get(cluster::join_token))
        .route("/v1/nodes", get(cluster::nodes))
        .route("/v1/events", get(events::events))
        .route("/v1/exec", post(exec::exec))
        .route("/v1/volumes", get(volumes::list).post(volumes::create))
        .route("/v1/volumes/prune", post(volumes::prune))
        .route(
            "/v1/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route(
            "/v1/nodes/{id}",
            get(cluster::node).delete(cluster::remove_node),
        )
        .route("/v1/nodes/{id}/update", post(cluster::update_node))
        .route("/v1/nodes/{id}/promote", post(roles::promote))
        .route("/v1/nodes/{id}/demote", post(roles::demote))
        .route("/v1/services", get(services::list).post(services::create))
        .route(
            "/v1/services/{name}",
            get(services::inspect).delete(services::remove),
        )
        .route("/v1/services/{name}/update", post(services::update))
        .route("/v1/services/{name}/rollback", post(services::rollback))
        .route("/v1/services/{name}/rebalance", post(services::rebalance))
        .route("/v1/services/{name}/scale", post(services::scale))
        .route("/v1/services/{name}/tasks", get(services::tasks))
        .route("/v1/services/{name}/logs", get(logs::service_logs))
        .route("/v1/networks", get(networks::list).post(networks::create))
        .route("/v1/stacks", get(stacks::list))
        .route(
            "/v1/stacks/{name}",
            get(stacks::inspect).put(stacks::deploy),
        )
        .route("/v1/stacks/{name}/tasks", get(stacks::tasks))
        .route(
            "/v1/networks/{name}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/v1/images", get(images::list).delete(images::remove))
        .route("/v1/images/load", post(images::load))
        .route("/v1/images/pull", post(images::pull))
        .route(
            "/v1/images/nodes",
            get(node_images::list).delete(node_images::remove),
        )
        .route("/v1/images/prune", post(node_images::prune))
        .route(
            "/v1/registries",
            get(registries::list).post(registries::set_handler),
        )
        .route("/v1/registries/login", post(registries::login_handler))
        .route("/v1/registries/logout", post(registries::logout_handler))
        .route(
            "/v1/registries/{host}",
            axum::routing::delete(registries::remove_handler),
        )
        .route("/v1/unlock-key", get(lock::show_key).post(lock::rotate_key))
        .route("/v1/unlock", post(lock::not_locked));
    let routes = secrets::routes(routes, "/v1/secrets", crate::store::Kind::Secret);
    let routes = secrets::routes(routes, "/v1/configs", crate::store::Kind::Config);
    routes
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(ctx)
}
