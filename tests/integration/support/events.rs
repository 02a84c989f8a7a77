//! The event collector of the in-process harness: every event an action emits, with the
//! time it arrived.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use drctl::exec::events::{Reporter, RunEvent};

/// Keeps every event of the bus it is added to (clones share the list).
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<(Instant, RunEvent)>>>);

impl Reporter for Events {
    fn event(&mut self, e: &RunEvent) {
        self.0
            .lock()
            .expect("events lock")
            .push((Instant::now(), e.clone()));
    }
}

impl Events {
    /// Every event as JSON, one a line.
    pub fn json(&self) -> String {
        self.0
            .lock()
            .expect("events lock")
            .iter()
            .map(|(_, e)| serde_json::to_string(e).expect("an event serialises"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The output lines (`step_output`), each with the time it arrived.
    pub fn output(&self) -> Vec<(Instant, String)> {
        self.0
            .lock()
            .expect("events lock")
            .iter()
            .filter_map(|(at, e)| match e {
                RunEvent::StepOutput { line, .. } => Some((*at, line.clone())),
                _ => None,
            })
            .collect()
    }
}
