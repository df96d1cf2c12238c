//! The ingest accepts a device's own sealed frames and refuses every way of writing as
//! another device.

use chrono::Utc;
use parc_protocol::{Body, DeviceId, DeviceKey, Epoch, Header, Health, Limits, Message, seal};
use parc_server::ingest::{Registry, Stats, accept};

fn msg(device: &str, seq: u64) -> Message {
    Message::new(
        Header {
            device_id: DeviceId::parse(device).unwrap(),
            epoch: Epoch::from_random([1; 16]),
            seq,
            collected_at: Utc::now(),
            sent_at: Utc::now(),
        },
        Body::Health(Box::default()),
    )
}

fn registry() -> Registry {
    let r = Registry::default();
    r.insert(
        DeviceId::parse("d-a").unwrap(),
        DeviceKey::from_bytes([1; 32]),
    );
    r.insert(
        DeviceId::parse("d-b").unwrap(),
        DeviceKey::from_bytes([2; 32]),
    );
    r
}

#[test]
fn a_device_frame_signed_with_its_key_is_accepted() {
    let (topic, payload) = seal(&msg("d-a", 1), &DeviceKey::from_bytes([1; 32]));
    let m = accept(
        &topic,
        &payload,
        &registry(),
        Utc::now(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(m.header.device_id.as_str(), "d-a");
}

#[test]
fn device_a_cannot_write_as_device_b() {
    let reg = registry();
    let key_a = DeviceKey::from_bytes([1; 32]);
    // A forges B's id in the payload: sealed for B's topic with A's key.
    let (topic, payload) = seal(&msg("d-b", 1), &key_a);
    assert_eq!(
        accept(&topic, &payload, &reg, Utc::now(), &Limits::default())
            .unwrap_err()
            .reason(),
        "bad_signature"
    );
    // A replays its own valid frame on B's topic.
    let (_, payload) = seal(&msg("d-a", 2), &key_a);
    let err = accept(
        "parc/v1/d-b/health",
        &payload,
        &reg,
        Utc::now(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(err.reason(), "bad_signature");
}

#[test]
fn an_unknown_device_is_refused_and_counted() {
    let (topic, payload) = seal(&msg("d-zzz", 1), &DeviceKey::from_bytes([3; 32]));
    let result = accept(
        &topic,
        &payload,
        &registry(),
        Utc::now(),
        &Limits::default(),
    );
    assert_eq!(result.as_ref().unwrap_err().reason(), "unknown_device");
    let mut stats = Stats::default();
    stats.record(&result);
    stats.record(&accept(
        "parc/v1/d-a/health",
        b"{not json",
        &registry(),
        Utc::now(),
        &Limits::default(),
    ));
    assert_eq!(stats.rejected.get("unknown_device"), Some(&1));
    assert_eq!(stats.rejected.get("invalid_json"), Some(&1));
    assert_eq!(stats.received, 2);
}

#[test]
fn battery_health_is_summarised_per_device() {
    let mut m = msg("d-a", 3);
    let mut h = Health::default();
    h.batteries.push(parc_protocol::health::BatteryHealth {
        name: "BAT0".into(),
        health_percent: Some(52.0),
        ..Default::default()
    });
    m.body = Body::Health(Box::new(h));
    let (topic, payload) = seal(&m, &DeviceKey::from_bytes([1; 32]));
    let mut stats = Stats::default();
    stats.record(&accept(
        &topic,
        &payload,
        &registry(),
        Utc::now(),
        &Limits::default(),
    ));
    assert_eq!(stats.devices["d-a"].battery_health_percent, Some(52.0));
}
