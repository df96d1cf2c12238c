//! The decoder must never panic, whatever the bytes: 100,000 arbitrary payloads and
//! 100,000 mutations of valid messages and frames.

use std::sync::LazyLock;

use parc_protocol::{Frame, Kind, Limits, Message};
use proptest::prelude::*;

use crate::samples;

static VALID: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let mut v: Vec<Vec<u8>> = samples::all()
        .into_iter()
        .map(|(_, m)| m.to_json().into_bytes())
        .collect();
    v.push(parc_protocol::seal(&samples::health(), &samples::key()).1);
    v
});

fn exercise(payload: &[u8]) {
    let limits = Limits::default();
    let _ = Message::decode(payload, None, samples::now(), &limits);
    let _ = Message::decode(
        payload,
        Some((&samples::device(), Kind::Health)),
        samples::now(),
        &limits,
    );
    if let Ok(frame) = Frame::parse("parc/v1/d-0123456789abcdef/health", payload, &limits) {
        let _ = frame.open(&samples::key(), samples::now(), &limits);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        which in 0usize..7,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut payload = VALID[which].clone();
        for (pos, byte, op) in edits {
            if payload.is_empty() { break; }
            let i = pos % payload.len();
            match op {
                0 => payload[i] = byte,
                1 => { payload.remove(i); }
                _ => payload.insert(i, byte),
            }
        }
        exercise(&payload);
    }
}
