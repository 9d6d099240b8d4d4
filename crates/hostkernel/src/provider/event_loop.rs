//! The provider's one event-loop thread (mio over epoll): readiness events, deferred IRP
//! completions, every event callback and the work posted to it, at DISPATCH_LEVEL. Because
//! callbacks and deferred completions only run here, a close that is finished here has, by
//! construction, waited for every running callback of its socket (WSK-FACTS §7).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

use super::conditional::{self, INSPECTION_TOKEN_BIT};
use super::connection_events;
use super::delivery;
use super::second_processor;
use super::state::{Kind, Slot, Sock, State, state};
use super::work::{Deferred, ON_LOOP, WAKE_PENDING, Work, loop_state};
use crate::{irp, verifier};

const WAKER: Token = Token(0);

/// The name of the provider's event-loop thread.
pub const THREAD_NAME: &str = "hostkernel-wsk";

/// Starts the event-loop thread if it is not running.
pub(crate) fn ensure_loop(state: &mut State) {
    if state.loop_thread.is_some() {
        return;
    }
    let poll = Poll::new().expect("hostkernel: cannot create the provider's epoll instance");
    let waker =
        Arc::new(Waker::new(poll.registry(), WAKER).expect("hostkernel: cannot create waker"));
    {
        let mut queue = loop_state();
        queue.registry = Some(Arc::new(
            poll.registry()
                .try_clone()
                .expect("hostkernel: cannot clone registry"),
        ));
        queue.waker = Some(waker);
        queue.stopping = false;
    }
    WAKE_PENDING.store(false, std::sync::atomic::Ordering::SeqCst);
    let handle = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || run_loop(poll))
        .expect("hostkernel: cannot start the provider thread");
    state.loop_thread = Some(handle);
}

/// Stops the event-loop thread (after the last deregistration).
pub(crate) fn stop_loop() {
    let handle = {
        let mut state = state();
        let mut queue = loop_state();
        queue.stopping = true;
        if let Some(waker) = &queue.waker {
            let _ = waker.wake();
        }
        state.loop_thread.take()
    };
    if let Some(handle) = handle
        && handle.join().is_err()
    {
        std::process::abort();
    }
    let mut queue = loop_state();
    queue.registry = None;
    queue.waker = None;
}

fn run_loop(mut poll: Poll) {
    verifier::abort_on_violation_in_this_thread();
    ON_LOOP.with(|on| on.set(true));
    let mut events = Events::with_capacity(1024);
    loop {
        let timeout = {
            let state = loop_state();
            let base = if state.fin_waiters.is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::from_millis(2)
            };
            let now = Instant::now();
            state
                .timers
                .iter()
                .map(|(due, _)| due.saturating_duration_since(now))
                .fold(base, Duration::min)
        };
        if let Err(error) = poll.poll(&mut events, Some(timeout)) {
            assert!(
                error.kind() == std::io::ErrorKind::Interrupted,
                "hostkernel: epoll failed: {error}"
            );
        }
        // Work posted from now on is seen by this iteration's drain, or wakes the next poll.
        WAKE_PENDING.store(false, std::sync::atomic::Ordering::SeqCst);
        for event in &events {
            if event.token() != WAKER {
                service(event.token().0, true);
            }
        }
        // Nothing else happens on the loop while a connection is served on the second processor.
        second_processor::join();
        let fin_waiters = std::mem::take(&mut loop_state().fin_waiters);
        for key in fin_waiters {
            connection_events::service(key);
        }
        let due: Vec<Deferred> = {
            let mut state = loop_state();
            let now = Instant::now();
            let (due, later) = std::mem::take(&mut state.timers)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            state.timers = later;
            due.into_iter().map(|(_, work)| work).collect()
        };
        for work in due {
            work();
        }
        loop {
            let work = loop_state().deferred.pop_front();
            match work {
                Some(Work::Run(work)) => work(),
                Some(Work::Complete(irp, status, information)) => {
                    irp::complete(irp, status, information);
                    loop_state().completions -= 1;
                }
                Some(Work::Serve(key)) => service(key, false),
                None => break,
            }
        }
        let stopping = loop_state().stopping;
        if stopping {
            return;
        }
    }
}

/// Serves whatever a readiness event on socket `key` means. With `offload` (a readiness event of
/// a poll, which the loop joins before anything else), a connection may be served on the second
/// processor; never work posted to the loop, which may be followed by that socket's close.
fn service(key: usize, offload: bool) {
    if key & INSPECTION_TOKEN_BIT != 0 {
        conditional::service_inspection(key);
        return;
    }
    let is_listener = matches!(
        state().sockets.get(&key),
        Some(Slot::Live(Sock {
            kind: Kind::Listen(_),
            ..
        }))
    );
    if is_listener {
        delivery::service(key);
    } else if offload {
        second_processor::run(move || connection_events::service(key));
    } else {
        connection_events::service(key);
    }
}
