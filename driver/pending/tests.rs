//! Tests of the pending room.

use super::*;

fn id(serial: u32) -> WSK_INSPECT_ID {
    WSK_INSPECT_ID {
        Key: 7,
        SerialNumber: serial,
    }
}

fn addr() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

#[test]
fn each_request_ends_exactly_once() {
    let mut q = PendingQueue::new(2, addr());
    let a = q.push(id(1), addr(), addr(), 0).unwrap();
    let b = q.push(id(2), addr(), addr(), 5).unwrap();
    let c = q.push(id(3), addr(), addr(), 9).unwrap();
    assert_eq!(q.deliver().unwrap().id, a, "oldest first");
    assert!(q.decide(a, true));
    assert!(!q.decide(a, false), "already decided");
    assert!(q.abort(&id(2)), "withdrawn");
    assert!(!q.decide(b, true), "a withdrawn request is not found");
    assert_eq!(q.expire(100, 50), 1, "c timed out");
    assert!(!q.decide(c, true));
    let first = q.next_outgoing().unwrap();
    let second = q.next_outgoing().unwrap();
    assert_eq!(q.next_outgoing(), None);
    assert_eq!([first.accept, second.accept], [true, false]);
    assert!(!q.abort(&first.inspect), "in flight: left to finish");
    assert_eq!(q.complete(first.index), Some(Outcome::Withdrawn));
    assert_eq!(q.complete(first.index), None, "completed once");
    assert_eq!(q.complete(second.index), Some(Outcome::TimedOut));
    assert!(q.is_empty());
}

#[test]
fn a_full_queue_refuses_and_ids_go_stale() {
    let mut q = PendingQueue::new(0, addr());
    let ids: Vec<_> = (0..u32::try_from(PENDING_CAPACITY).unwrap())
        .map(|i| q.push(id(i), addr(), addr(), 0).unwrap())
        .collect();
    assert_eq!(q.push(id(999), addr(), addr(), 0), Err(QueueFull));
    assert!(q.abort(&id(0)));
    let reused = q.push(id(1000), addr(), addr(), 0).unwrap();
    assert_ne!(reused, ids[0], "a reused slot has a new serial");
    assert!(!q.decide(ids[0], true));
    assert!(
        !q.decide(
            PendingId(ids::pack(1, ids::serial(reused.0), ids::index(reused.0))),
            true
        ),
        "other listener's id"
    );
}

#[test]
fn a_stale_pending_id_stays_refused_across_queues_and_reuse() {
    // Finding 5 of issue 11: a new listener in the same listener slot, and 2^24 reuses of one
    // queue slot, must not bring an old id back to life.
    let mut old = PendingQueue::new(3, addr());
    let stale = old.push(id(1), addr(), addr(), 0).unwrap();
    let mut q = PendingQueue::new(3, addr());
    let fresh = q.push(id(2), addr(), addr(), 0).unwrap();
    assert_ne!(
        fresh, stale,
        "a new queue in the same listener slot gives new ids"
    );
    assert!(!q.decide(stale, true), "another instance's id is refused");
    assert!(q.abort(&id(2)));
    let first = q.push(id(3), addr(), addr(), 0).unwrap();
    assert!(q.abort(&id(3)));
    for serial in 4..(1u32 << 24) + 4 {
        let pending = q.push(id(serial), addr(), addr(), 0).unwrap();
        assert_ne!(pending, first, "an id was given twice");
        assert!(q.abort(&id(serial)));
    }
    q.push(id(0), addr(), addr(), 0).unwrap();
    assert!(!q.decide(first, true), "the stale id is refused");
}
