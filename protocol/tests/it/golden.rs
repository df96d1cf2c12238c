//! Golden files pin the wire format: any change to how a message encodes shows up as
//! a diff here. Regenerate deliberately with `PARC_BLESS=1 cargo test -p parc-protocol`
//! and review the diff: within v1, changes must be additive.

use std::path::PathBuf;

use parc_protocol::{Frame, Limits, Message, seal};

use crate::samples;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn check_golden(name: &str, actual: &str) {
    let path = data_dir().join(name);
    if std::env::var_os("PARC_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

#[test]
fn every_kind_encodes_exactly_as_its_golden_file() {
    for (name, msg) in samples::all() {
        check_golden(name, &(msg.to_json_pretty() + "\n"));
    }
}

#[test]
fn every_golden_file_decodes_to_the_sample_it_was_made_from() {
    for (name, msg) in samples::all() {
        let text = std::fs::read(data_dir().join(name)).unwrap();
        let decoded = Message::decode(
            &text,
            Some((&msg.header.device_id, msg.kind())),
            samples::now(),
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, msg, "{name}");
    }
}

#[test]
fn signed_frame_is_pinned_and_opens_with_the_device_key() {
    let (topic, payload) = seal(&samples::health(), &samples::key());
    assert_eq!(topic, "parc/v1/d-0123456789abcdef/health");
    check_golden(
        "frame-health.json",
        &(String::from_utf8(payload).unwrap() + "\n"),
    );
    let golden = std::fs::read(data_dir().join("frame-health.json")).unwrap();
    let golden = golden.strip_suffix(b"\n").unwrap();
    let frame = Frame::parse(&topic, golden, &Limits::default()).unwrap();
    let msg = frame
        .open(&samples::key(), samples::now(), &Limits::default())
        .unwrap();
    assert_eq!(msg, samples::health());
}

#[test]
fn unknown_fields_are_tolerated_for_forward_compatibility() {
    let text = std::fs::read_to_string(data_dir().join("health-v1.7-extra-fields.json")).unwrap();
    let msg = Message::decode(text.as_bytes(), None, samples::now(), &Limits::default()).unwrap();
    let parc_protocol::Body::Health(h) = msg.body else {
        panic!("not health")
    };
    assert_eq!(h.batteries[0].health_percent, Some(52.0));
    assert_eq!(h.uptime_seconds, None, "absent stays absent, never 0");
}
