//! The disk spool: durability across reopening, checksums, the size bound, seq.

use parc_agent::spool::{Spool, SpoolError};
use parc_agent::state::random_epoch;
use parc_protocol::{Epoch, Kind};

fn open(dir: &std::path::Path, max: u64) -> Spool {
    Spool::open(&dir.join("spool.redb"), max, random_epoch).unwrap()
}

fn push(s: &Spool, kind: Kind, body_len: usize) -> u64 {
    s.push_new(kind, |seq| {
        (
            format!("parc/v1/d-1/{kind}"),
            format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(body_len)),
        )
    })
    .unwrap()
    .id
}

#[test]
fn records_seq_and_epoch_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (epoch, ids) = {
        let s = open(dir.path(), 1 << 20);
        let ids: Vec<u64> = (0..5).map(|_| push(&s, Kind::Health, 10)).collect();
        s.ack(&ids[..2], 1_000).unwrap();
        (s.epoch().clone(), ids)
    };
    let s = open(dir.path(), 1 << 20);
    assert_eq!(s.epoch(), &epoch, "the epoch is created once");
    let pending = s.pending(100).unwrap();
    assert_eq!(
        pending.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids[2..].to_vec(),
        "unacknowledged records survive, oldest first"
    );
    assert_eq!(
        pending.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(pending[0].topic, "parc/v1/d-1/health");
    assert!(pending[0].message.starts_with("{\"seq\":3,"));
    // seq only grows across restarts, and reserving one is durable too.
    assert_eq!(s.next_seq().unwrap(), 6);
    drop(s);
    let s = open(dir.path(), 1 << 20);
    assert_eq!(push(&s, Kind::Event, 1), 6, "ids keep growing too");
    assert_eq!(s.pending(100).unwrap().last().unwrap().seq, 7);
    assert_eq!(s.stats().unwrap().last_ack_ms, Some(1_000));
}

#[test]
fn a_new_spool_file_gets_a_new_epoch() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ea = open(a.path(), 1 << 20).epoch().clone();
    let eb = open(b.path(), 1 << 20).epoch().clone();
    assert_ne!(ea, eb);
    assert!(Epoch::parse(ea.as_str()).is_ok());
}

#[test]
fn pending_after_pages_through_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 1 << 20);
    let ids: Vec<u64> = (0..10).map(|_| push(&s, Kind::Health, 1)).collect();
    let first = s.pending_after(None, 4).unwrap();
    assert_eq!(first.len(), 4);
    let next = s.pending_after(Some(first[3].id), 100).unwrap();
    assert_eq!(
        next.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids[4..].to_vec()
    );
}

#[test]
fn a_corrupted_record_is_skipped_counted_and_the_others_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 1 << 20);
    let ids: Vec<u64> = (0..5).map(|_| push(&s, Kind::Health, 50)).collect();
    assert!(s.corrupt_record_for_tests(ids[2]).unwrap());
    let pending = s.pending(100).unwrap();
    assert_eq!(
        pending.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[0], ids[1], ids[3], ids[4]]
    );
    let stats = s.stats().unwrap();
    assert_eq!(stats.corrupt_total, 1);
    assert_eq!(
        stats.records, 4,
        "the corrupted record is removed, not retried forever"
    );
    // Its bytes are released.
    s.ack(&[ids[0], ids[1], ids[3], ids[4]], 1).unwrap();
    assert_eq!(s.bytes().unwrap(), 0);
}

#[test]
fn the_bound_drops_the_oldest_health_samples_first() {
    let dir = tempfile::tempdir().unwrap();
    let max = 64 * 1024;
    let s = open(dir.path(), max);
    let inventory = push(&s, Kind::Inventory, 2_000);
    let hello = push(&s, Kind::Hello, 100);
    let health: Vec<u64> = (0..200).map(|_| push(&s, Kind::Health, 900)).collect();
    let event = push(&s, Kind::Event, 100);
    let stats = s.stats().unwrap();
    assert!(stats.bytes <= max, "{} > {max}", stats.bytes);
    assert!(stats.dropped_total > 100, "{stats:?}");
    let kept: Vec<u64> = s.pending(1_000).unwrap().iter().map(|r| r.id).collect();
    for id in [inventory, hello, event] {
        assert!(kept.contains(&id), "non-health record {id} kept");
    }
    // The health samples kept are the newest ones, contiguous up to the last.
    let kept_health: Vec<u64> = kept
        .iter()
        .copied()
        .filter(|id| health.contains(id))
        .collect();
    let n = kept_health.len();
    assert!(n > 10);
    assert_eq!(kept_health, health[health.len() - n..].to_vec());
    // The count is handed over once.
    let dropped = s.take_dropped_count().unwrap();
    assert_eq!(dropped, stats.dropped_total);
    assert_eq!(dropped as usize, health.len() - n);
    assert_eq!(s.take_dropped_count().unwrap(), 0);
}

#[test]
fn without_health_the_older_inventories_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let max = 32 * 1024;
    let s = open(dir.path(), max);
    let event = push(&s, Kind::Event, 100);
    let inventories: Vec<u64> = (0..40).map(|_| push(&s, Kind::Inventory, 3_000)).collect();
    let kept: Vec<u64> = s.pending(1_000).unwrap().iter().map(|r| r.id).collect();
    assert!(kept.contains(&event));
    assert!(kept.contains(inventories.last().unwrap()));
    assert!(s.bytes().unwrap() <= max);
}

#[test]
fn a_record_larger_than_the_spool_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 4 * 1024);
    let err = s
        .push_new(Kind::Inventory, |_| ("t".into(), "x".repeat(10_000)))
        .unwrap_err();
    assert!(matches!(err, SpoolError::TooLarge { .. }), "{err}");
}

#[test]
fn a_second_writer_is_refused_while_the_first_has_it_open() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(dir.path(), 1 << 20);
    let err = Spool::open(&dir.path().join("spool.redb"), 1 << 20, random_epoch).unwrap_err();
    assert!(matches!(err, SpoolError::Locked), "{err}");
}

#[test]
fn an_in_memory_spool_keeps_order_seq_and_the_bound_like_the_file() {
    let s = Spool::in_memory(4_000, random_epoch).unwrap();
    let ids: Vec<u64> = (0..3).map(|_| push(&s, Kind::Health, 10)).collect();
    s.ack(&ids[..1], 5).unwrap();
    let pending = s.pending(10).unwrap();
    assert_eq!(
        pending.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
    // Past the bound the oldest health samples go first, and the loss is counted.
    for _ in 0..40 {
        push(&s, Kind::Health, 200);
    }
    let stats = s.stats().unwrap();
    assert!(stats.bytes <= 4_000, "{stats:?}");
    assert!(stats.dropped_total > 0, "{stats:?}");
    assert_eq!(s.next_seq().unwrap(), 44);
}
