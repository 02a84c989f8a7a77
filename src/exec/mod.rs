//! Execution: the engine, its journal, lock, prompts, events and the local actions.

pub mod backend;
pub mod context;
pub mod engine;
pub mod events;
pub mod inputs;
pub mod journal;
pub mod local;
pub mod lock;
pub mod needs;
pub mod prompt;
