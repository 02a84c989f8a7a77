//! A background loop of a test (a stand-in controller, an operator acting on the lab),
//! stopped and joined on drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Worker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Calls `tick` every `period` (a controller's resync period, not a wait for a
    /// condition) until it returns false or the worker is dropped.
    pub fn spawn(period: Duration, mut tick: impl FnMut() -> bool + Send + 'static) -> Worker {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) && tick() {
                std::thread::sleep(period);
            }
        });
        Worker {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
