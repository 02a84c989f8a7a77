//! Test support of the integration tests, one copy of each piece:
//!
//! - [`cli`]: the drctl binary (a clean environment, a state directory), its output, events
//!   and journals, a drctl in the background;
//! - [`process`]: live processes, signals, waiting;
//! - [`drive`]: a built-in runbook driven as an operator drives it, and what drctl reported;
//! - [`crash`]: SIGKILL at a seeded step, then resume to the end;
//! - [`secrets`]: no secret in drctl's output or state directory;
//! - [`harness`], [`operator`], [`events`]: one action of a backend run in-process, with a
//!   scripted operator, and the events it emitted;
//! - [`kube`]: a cluster's state read with kubectl;
//! - [`tls`]: a lab certificate authority and the server certificates it signs;
//! - [`worker`]: a background loop stopped on drop;
//! - [`base64`].
//!
//! The servers the tests run against are in `lab.rs`.

pub mod base64;
pub mod cli;
pub mod crash;
pub mod drive;
pub mod events;
pub mod harness;
pub mod kube;
pub mod operator;
pub mod process;
pub mod secrets;
pub mod tls;
pub mod worker;
