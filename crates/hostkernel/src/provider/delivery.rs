//! The delivery state machine (provider thread): each incoming connection of a listening socket
//! goes to a queued WskAccept IRP first, else to WskAcceptEvent (WSK-FACTS §4–§5), or to
//! [`inspect`] first on a conditional listener; a listening socket that fails completes its IRPs
//! and tells the accept event with a NULL socket. [`next_step`] decides under the state lock,
//! [`run_step`] acts with it released. The event loop, told of arrivals by edge (epoll), keeps
//! looking until it has seen the OS backlog empty or found no consumer ([`Look`]).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use wsk::{
    NtStatus, WSK_EVENT_ACCEPT, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_SEND_BACKLOG,
    WSK_FLAG_AT_DISPATCH_LEVEL,
};

use super::accept_event::deliver_event;
use super::conditional::inspect;
use super::connection::Connection;
use super::connection_calls::CONNECTION_DISPATCH;
use super::connection_events;
use super::listening::{Incoming, Listening, reset};
use super::pause::{self, Point};
use super::second_processor;
use super::state::{
    Kind, Shared, Slot, Sock, State, callback_done, counted_listen_dispatch, insert, listening_of,
    live, lock, state,
};
use super::translate;
use super::work::registry;
use crate::irp::{self, IrpRef};
use crate::irql;
use crate::schedule::{self, Fault};

/// What the provider thread does next for a listener.
enum Step {
    Inspect {
        stream: std::net::TcpStream,
        local: SocketAddr,
        remote: SocketAddr,
    },
    DeliverEvent {
        new_key: usize,
        local: SocketAddr,
        remote: SocketAddr,
    },
    ListenerFailed {
        irps: Vec<IrpRef>,
        event: bool,
    },
    Completed {
        irp: IrpRef,
        new_key: usize,
    },
}

/// Serves a listener until nothing more can be delivered (provider thread).
pub(crate) fn service(key: usize) {
    // Whatever woke the loop for this listener (an arrival's edge, a starved WskAccept), its
    // first look clears `quiet`: accepts ask the OS again until one sees the backlog empty.
    let mut fresh = true;
    while let Some(step) = next_step(key, false, &mut fresh) {
        run_step(key, step);
    }
    // Nothing else happens on the loop while an accept callback runs on the second processor.
    second_processor::join();
}

/// Delivers at most one connection; returns the IRP completed, if any.
pub(super) fn deliver_one(key: usize, irp_only: bool) -> Option<IrpRef> {
    let step = next_step(key, irp_only, &mut false)?;
    let completed = if let Step::Completed { irp, .. } = step {
        Some(irp)
    } else {
        None
    };
    run_step(key, step);
    completed
}

/// The next connection the OS accepted on this listener, if any.
fn accept_os(listening: &Listening) -> Option<Incoming> {
    let listener = listening.listener.as_ref()?;
    loop {
        match listener.accept() {
            Ok((stream, remote)) => {
                let stream: std::net::TcpStream = stream.into();
                let local = match listening.fixed_local {
                    Some(local) => local,
                    None => match stream.local_addr() {
                        Ok(local) => local,
                        Err(_) => continue,
                    },
                };
                return Some(Incoming {
                    stream,
                    local,
                    remote,
                });
            }
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(_) => return None,
        }
    }
}

/// Connections taken from the OS per look at a listener: accepts are batched, up to this many
/// wait in `ready` (the backlog the provider holds) before the next `accept4`.
const ACCEPT_BATCH: usize = 16;

/// Decides what to do next for listening socket `key`: looks again as long as the event loop
/// found its batch taken by others before it had seen the OS backlog empty ([`Look::Again`]).
fn next_step(key: usize, irp_only: bool, fresh: &mut bool) -> Option<Step> {
    loop {
        match look(key, irp_only, fresh) {
            Look::Step(step) => return Some(step),
            Look::Idle => return None,
            Look::Again => {}
        }
    }
}

/// What one look at a listening socket found.
enum Look {
    Step(Step),
    /// Nothing to do, and nothing lost: the OS backlog was seen empty (a later arrival is a new
    /// readiness edge), or there is no consumer (`starved`: the next WskAccept has the listener
    /// served), or the listener is gone, broken or closing.
    Idle,
    /// The event loop took a batch without seeing the OS backlog empty, and WskAccept calls
    /// completing inline on other threads took all of it before the loop could hand one out.
    /// The readiness edge that announced what is still in the backlog was consumed: stopping
    /// here would leave those connections, and the IRPs queued for them, waiting forever.
    Again,
}

/// One look at listening socket `key`. The `accept4` calls run under the listener's own lock
/// only (a batch of them, [`ACCEPT_BATCH`]); the decision is made under STATE and that lock
/// together; the new socket is recorded under STATE and registered with the poller under its
/// own lock. `fresh`: the loop's first look since it was woken for this listener (it clears
/// `quiet`, in the same hold as the accepts).
fn look(key: usize, irp_only: bool, fresh: &mut bool) -> Look {
    let Some(shared) = listening_of(key) else {
        return Look::Idle;
    };
    if !irp_only {
        pause::pass(Point::BeforeBatch { listener: key });
    }
    // `drained`: this look saw the OS backlog empty. A WskAccept completing inline (`irp_only`)
    // never looks again: what it leaves in the backlog is the event loop's.
    let (held, drained) = {
        let mut listening = lock(&shared);
        if std::mem::take(fresh) {
            listening.quiet = false;
        }
        if listening.broken || listening.closed {
            return Look::Idle;
        }
        // `quiet`: an accept4 saw the backlog empty and the loop has not served this listener
        // since (a later arrival is a new edge, whose service's first look clears the flag).
        let mut drained = irp_only || listening.quiet;
        if listening.conditional {
            // Conditional accept: inspect every new arrival first, consumer or not (WSK-FACTS
            // §6); the inspected ones wait in `ready`.
            if !irp_only {
                match accept_os(&listening) {
                    Some(incoming) => {
                        return Look::Step(Step::Inspect {
                            stream: incoming.stream,
                            local: incoming.local,
                            remote: incoming.remote,
                        });
                    }
                    None => drained = true,
                }
            }
        } else {
            // Only the event loop takes a batch: it hears of every arrival (epoll), and serves
            // until it has seen the backlog empty or has no consumer. A WskAccept completing
            // inline takes at most the one connection it completes with.
            let batch = if irp_only { 1 } else { ACCEPT_BATCH };
            // Not `quiet`: neither the loop's next look in this service nor an inline accept
            // asks the OS again once it answered EAGAIN; they take only what the loop holds.
            if !listening.quiet {
                while listening.ready.len() < batch {
                    let Some(incoming) = accept_os(&listening) else {
                        drained = true;
                        listening.quiet = true;
                        break;
                    };
                    listening.ready.push_back(incoming);
                }
            }
        }
        (listening.ready.len(), drained)
    };
    if !irp_only && held > 0 {
        pause::pass(Point::AfterBatch {
            listener: key,
            held,
        });
    }
    hand_out(key, &shared, irp_only, drained)
}

/// Hands the first connection held for listening socket `key` to a consumer: a queued accept
/// IRP, else the accept event (decided under STATE and the listener's lock together).
fn hand_out(key: usize, shared: &Shared<Listening>, irp_only: bool, drained: bool) -> Look {
    let mut guard = state();
    let Some(Slot::Live(sock)) = guard.sockets.get_mut(&key) else {
        return Look::Idle;
    };
    let events_on = sock.events & WSK_EVENT_ACCEPT != 0 && !irp_only;
    let inherited =
        sock.events & (WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG);
    let registration = sock.registration;
    let mut listening = lock(shared);
    if listening.broken || listening.closed {
        return Look::Idle;
    }
    let has_irp = !listening.accept_irps.is_empty();
    if !has_irp && !events_on {
        listening.starved = true;
        return Look::Idle;
    }
    let Some(incoming) = listening.ready.pop_front() else {
        return if drained { Look::Idle } else { Look::Again };
    };
    if schedule::should_fail(Fault::ListenerFailure) {
        if events_on {
            count_accept_callback(&mut guard, key);
        }
        drop(guard);
        reset(&incoming.stream);
        listening.break_down(registry().as_deref());
        let irps: Vec<IrpRef> = listening.accept_irps.drain(..).map(|r| r.irp).collect();
        return Look::Step(Step::ListenerFailed {
            irps,
            event: events_on,
        });
    }
    // A queued IRP wins unless the schedule injects the documented race (WSK-FACTS §4).
    let use_event = events_on && (!has_irp || schedule::inject_accept_race());
    let request = if use_event {
        count_accept_callback(&mut guard, key);
        None
    } else {
        listening.accept_irps.pop_front()
    };
    drop(listening);
    drop(guard);
    let (local, remote) = (incoming.local, incoming.remote);
    let reset_now = schedule::should_fail(Fault::ConnectionReset);
    let connection = Connection::accepted(incoming.stream, local, remote, reset_now);
    let (context, dispatch) = request
        .as_ref()
        .map_or((std::ptr::null_mut(), std::ptr::null()), |r| {
            (r.context, r.dispatch)
        });
    // Sockets accepted by WskAccept start with every event disabled (WSK-FACTS §3); those accepted
    // by the event inherit the listener's connection events (WSK-FACTS §5).
    let events = if use_event { inherited } else { 0 };
    let connection: Shared<Connection> = Arc::new(Mutex::new(connection));
    let new_key = insert(
        &mut state(),
        Sock {
            registration,
            kind: Kind::Connection(Arc::clone(&connection)),
            context,
            client_dispatch: dispatch,
            events,
            calls_in_progress: 0,
            callbacks_running: 0,
            accept_event_thread: use_event.then(|| std::thread::current().id()),
        },
        (&raw const CONNECTION_DISPATCH).cast(),
    );
    connection_events::register(&connection, new_key, events != 0);
    match request {
        None => Look::Step(Step::DeliverEvent {
            new_key,
            local,
            remote,
        }),
        Some(request) => {
            // SAFETY: `local_out` is NULL or a SOCKADDR_STORAGE-sized buffer valid until the
            // accept completes (AcceptRequest invariants, WSK-FACTS §3); the IRP is still pending.
            unsafe { translate::write(request.local_out, local) };
            // SAFETY: `remote_out` is, like `local_out`, NULL or a SOCKADDR_STORAGE-sized buffer
            // the driver keeps until this accept completes (PFN_WSK_ACCEPT, WSK-FACTS §3); the IRP
            // is still pending.
            unsafe { translate::write(request.remote_out, remote) };
            Look::Step(Step::Completed {
                irp: request.irp,
                new_key,
            })
        }
    }
}

/// Counts the accept callback just decided on as running, under the same STATE hold as the
/// decision: a disable of WSK_EVENT_ACCEPT from now on finds it running (STATUS_EVENT_PENDING, or
/// STATUS_PENDING with an IRP), never STATUS_SUCCESS followed by the callback (WSK-FACTS §5).
fn count_accept_callback(state: &mut State, key: usize) {
    if let Some(sock) = live(state, key) {
        sock.callbacks_running += 1;
    }
}

/// Does `step` (state lock released: the client's callbacks may call WSK again).
fn run_step(key: usize, step: Step) {
    match step {
        // Information = the accepted PWSK_SOCKET (WSK-FACTS §3).
        Step::Completed { irp, new_key } => {
            second_processor::run(move || irp::complete(irp, NtStatus::SUCCESS, new_key));
        }
        Step::ListenerFailed { irps, event } => {
            for irp in irps {
                irp::complete(irp, NtStatus::CONNECTION_ABORTED, 0);
            }
            if event && let Some((context, dispatch)) = counted_listen_dispatch(key) {
                if let Some(accept_event) = dispatch.WskAcceptEvent {
                    let mut out_context = std::ptr::null_mut();
                    let mut out_dispatch = std::ptr::null();
                    irql::at_dispatch(|| {
                        // SAFETY: the driver's accept callback, called as WSK does when the
                        // listening socket stops working: AcceptSocket NULL (WSK-FACTS §5).
                        unsafe {
                            accept_event(
                                context,
                                WSK_FLAG_AT_DISPATCH_LEVEL,
                                std::ptr::null_mut(),
                                std::ptr::null_mut(),
                                std::ptr::null_mut(),
                                &raw mut out_context,
                                &raw mut out_dispatch,
                            )
                        }
                    });
                }
                callback_done(key);
            }
        }
        Step::DeliverEvent {
            new_key,
            local,
            remote,
        } => second_processor::run(move || deliver_event(key, new_key, local, remote)),
        Step::Inspect {
            stream,
            local,
            remote,
        } => inspect(key, stream, local, remote),
    }
}
