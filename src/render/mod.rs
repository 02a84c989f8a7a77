//! Rendering: printed checklists and the command-line equivalents of actions.

pub mod checklist;
pub mod progress;
pub mod report;
