//! An in-process cluster for tests. For now, the store objects a simulated
//! cluster starts from, shared with `shoal bench-sim`, and the simulated
//! executor its workers will run.

mod executor;
pub mod objects;

pub use executor::{Behavior, Script, SimulatedExecutor};
