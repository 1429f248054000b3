//! An in-process cluster for tests. For now, the store objects a simulated
//! cluster starts from, shared with `shoal bench-sim`.

pub mod objects;
