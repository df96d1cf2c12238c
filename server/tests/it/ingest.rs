//! The ingest accepts a device's own sealed frames and refuses every way of writing as
//! another device, and refuses unknown and revoked devices.

use std::time::Duration;

use chrono::Utc;
use parc_protocol::{Body, DeviceId, DeviceKey, Epoch, Header, Limits, Message, seal};
use parc_server::ingest::{KeyCache, accept};

use crate::support::{TestDb, TestDevice, register};

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

async fn keys(db: &TestDb) -> KeyCache {
    let store = db.store().await;
    register(
        &store,
        &[TestDevice::new("d-a", 1), TestDevice::new("d-b", 2)],
    )
    .await;
    KeyCache::new(store, Duration::from_secs(30))
}

async fn reason(topic: &str, payload: &[u8], keys: &KeyCache) -> &'static str {
    accept(topic, payload, keys, Utc::now(), &Limits::default())
        .await
        .unwrap()
        .unwrap_err()
        .reason()
}

#[tokio::test]
async fn a_device_frame_signed_with_its_key_is_accepted() {
    let db = TestDb::sqlite();
    let keys = keys(&db).await;
    let (topic, payload) = seal(&msg("d-a", 1), &DeviceKey::from_bytes([1; 32]));
    let m = accept(&topic, &payload, &keys, Utc::now(), &Limits::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.header.device_id.as_str(), "d-a");
}

#[tokio::test]
async fn device_a_cannot_write_as_device_b() {
    let db = TestDb::sqlite();
    let keys = keys(&db).await;
    let key_a = DeviceKey::from_bytes([1; 32]);
    // A forges B's id in the payload: sealed for B's topic with A's key.
    let (topic, payload) = seal(&msg("d-b", 1), &key_a);
    assert_eq!(reason(&topic, &payload, &keys).await, "bad_signature");
    // A replays its own valid frame on B's topic.
    let (_, payload) = seal(&msg("d-a", 2), &key_a);
    assert_eq!(
        reason("parc/v1/d-b/health", &payload, &keys).await,
        "bad_signature"
    );
}

#[tokio::test]
async fn unknown_and_revoked_devices_are_refused() {
    let db = TestDb::sqlite();
    let keys = keys(&db).await;
    let (topic, payload) = seal(&msg("d-zzz", 1), &DeviceKey::from_bytes([3; 32]));
    assert_eq!(reason(&topic, &payload, &keys).await, "unknown_device");

    let store = db.store().await;
    let a = DeviceId::parse("d-a").unwrap();
    assert!(store.revoke_device(&a, Utc::now()).await.unwrap());
    keys.invalidate(&a);
    let (topic, payload) = seal(&msg("d-a", 3), &DeviceKey::from_bytes([1; 32]));
    assert_eq!(reason(&topic, &payload, &keys).await, "unknown_device");
}
