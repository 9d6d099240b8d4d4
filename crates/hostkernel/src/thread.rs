//! System threads (PsCreateSystemThread): run at PASSIVE_LEVEL, joined before unload.

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use crate::accounting::COUNTERS;
use crate::irql;

/// A routine a system thread runs: `StartRoutine(StartContext)`.
pub type SystemThreadRoutine = unsafe fn(*mut c_void);

/// A running system thread. Dropping it without [`SystemThread::join`] leaks it (and accounting
/// says so).
#[derive(Debug)]
pub struct SystemThread {
    handle: Option<std::thread::JoinHandle<()>>,
}

struct SendPtr(*mut c_void);
// SAFETY: the pointer is handed to the thread routine, whose caller promised (see `spawn`) that
// the context may be used from that thread.
unsafe impl Send for SendPtr {}

impl SystemThread {
    /// PsCreateSystemThread. IRQL: PASSIVE_LEVEL.
    ///
    /// # Safety
    /// `context` must stay valid, and be usable from another thread, until the routine returns.
    ///
    /// # Errors
    /// The OS error when no thread can be created.
    pub unsafe fn spawn(
        name: &str,
        routine: SystemThreadRoutine,
        context: *mut c_void,
    ) -> std::io::Result<Self> {
        irql::assert_passive("PsCreateSystemThread");
        let context = SendPtr(context);
        COUNTERS.system_threads.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let context = context;
                // SAFETY: the spawner guaranteed the context is valid until the routine returns.
                unsafe { routine(context.0) };
            });
        match spawned {
            Ok(handle) => Ok(Self {
                handle: Some(handle),
            }),
            Err(error) => {
                COUNTERS.system_threads.fetch_sub(1, Ordering::SeqCst);
                Err(error)
            }
        }
    }

    /// Waits for the thread to end (KeWaitForSingleObject on the thread object). IRQL: PASSIVE.
    pub fn join(mut self) {
        irql::assert_passive("waiting for a system thread");
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                // The thread's panic already printed; a bug check would have stopped everything.
                std::process::abort();
            }
            COUNTERS.system_threads.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
