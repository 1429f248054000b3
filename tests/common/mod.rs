//! Support shared by the integration tests in `tests/`.
//!
//! - `harness`: a real `shoal daemon` per test (temp data dir, own control
//!   socket, own containerd namespace, free loopback port), the CLI and `ctr`
//!   helpers, and the clean-up that runs even when a test panics.
//! - `image`: builds the tiny busybox image tarball the tests load.
//! - `managers`: several managers sharing the replicated store: joining,
//!   who leads, what each lists.
//! - `old_release`: the shoal of an earlier release, for the upgrade and
//!   mixed-version tests.
//!
//! Each test binary uses only part of this, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod containerd;
pub mod harness;
pub mod image;
pub mod managers;
pub mod old_release;
pub mod registry;
