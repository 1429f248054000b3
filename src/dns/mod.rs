//! The DNS server every task on a network asks, at 127.0.0.11 in its own
//! network namespace, as in Docker: `NAME` is the virtual IP of service
//! NAME (or its tasks' addresses with `--endpoint-mode dnsrr`),
//! `tasks.NAME` its tasks' addresses, for the services of the networks
//! the task is on; other names go to the node's resolvers.
//!
//! - `names`: what a name is for a task (pure).
//! - `forward`: asking the node's resolvers.
//! - `server`: one task's server (hickory-server).

mod forward;
mod names;
mod server;

pub use names::Names;
pub use server::{Shared, TaskDns, MAX_FORWARDS};
