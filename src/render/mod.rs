//! Rendering: printed checklists and the command-line equivalents of actions.

pub mod checklist;
pub mod context;
pub mod equivalent;
pub mod progress;
pub mod report;
