//! The emulated WSK provider: netio.sys's part of WSK, over real OS sockets.
//!
//! One event-loop thread (mio over epoll) serves every socket, whatever their number. It runs
//! deferred IRP completions and every event callback, at DISPATCH_LEVEL with
//! WSK_FLAG_AT_DISPATCH_LEVEL. Locks, in the order they are taken (`state::lock`): `STATE` (the
//! socket table and the per-socket bookkeeping the verifier checks: events, calls in progress,
//! running callbacks), then at most one socket's own lock (its OS socket and queues; its system
//! calls run under this lock only), then `work::LOOP` (the event loop's queue, a leaf). None is
//! held while driver code runs, so callbacks may call WSK again (WSK-FACTS §5). The event loop
//! completes what it finds itself (accepts, a socket the accept event took) rather than posting to
//! its own queue, takes accepts in batches, and is woken only when it must be.
//!
//! Because callbacks and deferred completions only run on that thread, a close that is finished
//! there has, by construction, waited for every running callback of its socket (WSK-FACTS §7). A
//! call the provider can finish during the call is finished on the caller's thread: the FIN of a
//! graceful WskDisconnect is sent there (completed there when acknowledged at once), and a
//! WskCloseSocket of a connection with nothing in flight (no callback running, no completion the
//! loop took and has not made) closes there; their IRPs complete inline as a rule
//! (`Schedule::finished_inline_percent`).
//!
//! The modules, lowest first; each imports only modules listed before it
//! (`scripts/check-module-cycles.sh` checks):
//!
//! 1. `translate` (Windows values ↔ the host OS), `poison` (the table of a closed socket),
//!    `work` (the event loop's queue and handles, behind a leaf lock), `pause` (a fault mode
//!    holding the event loop in its accept path), `second_processor` (a fault mode indicating
//!    accept events on a second thread), `transmit` (a queued send; whether our FIN is
//!    acknowledged);
//! 2. `connection`, `listening`: a connection's and a listening socket's own state;
//! 3. `state`: the socket table behind one lock, each socket's own lock, and the helpers every
//!    call uses;
//! 4. `conditional`: conditional accept (WskInspectEvent, WskInspectComplete, WskAbortEvent);
//! 5. `socket_calls`: WskControlSocket, WskCloseSocket, the address queries;
//! 6. `connection_events` (the event loop's side of a connection), then `connection_calls`
//!    (WskSend, WskReceive, WskDisconnect; the connection dispatch table);
//! 7. `accept_event` (handing a socket to WskAcceptEvent), then `delivery`: the accept state
//!    machine (accept IRPs, WskAcceptEvent);
//! 8. `listen_calls`: WskBind, WskAccept; the listen dispatch table;
//! 9. `provider_calls`: WskSocket, WskControlClient; the provider dispatch table;
//! 10. `event_loop`: the thread, and which service a readiness event needs;
//! 11. `registration`: WskRegister … WskDeregister.
//!
//! A lower module that needs a socket served again (an event enabled, an inspection accepted)
//! asks the event loop through `work::serve_later` instead of calling up.

mod accept_event;
mod conditional;
mod connection;
mod connection_calls;
mod connection_events;
mod delivery;
mod event_loop;
mod listen_calls;
mod listening;
mod pause;
mod poison;
mod provider_calls;
mod registration;
mod second_processor;
mod socket_calls;
mod state;
mod translate;
mod transmit;
mod work;

pub use accept_event::set_accept_event_preemption;
pub use connection::set_peers_vanished;
pub use event_loop::THREAD_NAME;
pub use pause::{AcceptPause, Point, pause_accept_loop};
pub use registration::{
    WskCaptureProviderNPI, WskDeregister, WskRegister, WskReleaseProviderNPI, capture_calls,
    set_provider_no_interface, set_provider_ready,
};
pub use second_processor::{second_processor_jobs, set_second_processor};
pub use socket_calls::fail_next_listen_local_address;
pub use state::set_close_delay;
