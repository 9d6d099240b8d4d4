//! The listener's rundown bookkeeping: how many IRPs are out, and whether a stop was asked. Pure
//! state, kept under the listener's spin lock, so that the same transitions run in the driver and
//! in the loom model (`tests/loom_models.rs`) of a completion racing a stop.
//!
//! The protocol around it: every completion routine decrements under the lock and kicks the
//! worker *before* releasing the lock; only the worker declares the listener finished
//! ([`Rundown::try_finish`]), under the lock; the stopper waits for that, then flushes the work
//! queue, and only then frees the memory. So no completion or worker run can touch a freed
//! listener.

/// Rundown state.
#[derive(Debug, Default)]
pub struct Rundown {
    outstanding: u32,
    stopping: bool,
    finished: bool,
}

impl Rundown {
    /// Nothing out, running.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            outstanding: 0,
            stopping: false,
            finished: false,
        }
    }

    /// An IRP is about to be handed to the provider.
    pub fn submitted(&mut self) {
        self.outstanding += 1;
    }

    /// An IRP came back (from its completion routine), or a submission did not happen.
    pub fn completed(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// IRPs out now.
    #[must_use]
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    /// Stop was asked.
    pub fn request_stop(&mut self) {
        self.stopping = true;
    }

    /// The worker's check: true exactly once, when stop was asked, nothing is out and the caller's
    /// other conditions (`quiet`: listening socket closed, table empty) hold.
    pub fn try_finish(&mut self, quiet: bool) -> bool {
        if self.stopping && !self.finished && self.outstanding == 0 && quiet {
            self.finished = true;
            return true;
        }
        false
    }

    /// Whether the worker declared the rundown finished.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}
