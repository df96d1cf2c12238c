//! The store on both engines: the same behaviours, tested on SQLite here and on
//! PostgreSQL in the external suite.

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use parc_protocol::inventory::BatteryInfo;
use parc_protocol::{Body, Inventory, Presence, Status};
use parc_server::store::{Item, Quarantined, Retention, Store};

use crate::support::{TestDevice, register};

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, h, m, 0).unwrap()
}

fn long_ago() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap()
}

fn item(m: parc_protocol::Message) -> Item {
    Item::accepted(m)
}

async fn a_redelivered_message_is_stored_once(store: Store) {
    let mut d = TestDevice::new("d-1", 1);
    register(&store, std::slice::from_ref(&d)).await;
    let m = d.health(90.0);
    let first = store
        .write_batch(&[item(m.clone())], Utc::now(), long_ago())
        .await
        .unwrap();
    assert_eq!(first.stored.get("health"), Some(&1));
    // Redelivered in a later batch, and twice within one batch.
    let again = store
        .write_batch(&[item(m.clone()), item(m.clone())], Utc::now(), long_ago())
        .await
        .unwrap();
    assert_eq!(again.duplicates, 2);
    assert!(again.stored.is_empty());
    let c = store.counts().await.unwrap();
    assert_eq!((c.messages, c.health_samples), (1, 1));
    // A reinstalled agent (new epoch) restarting at seq 1 is not a duplicate.
    let mut reinstalled = TestDevice::new("d-1", 1);
    reinstalled.epoch = parc_protocol::Epoch::from_random([9; 16]);
    let m2 = reinstalled.health(89.0);
    assert_eq!(m2.header.seq, m.header.seq);
    let o = store
        .write_batch(&[item(m2)], Utc::now(), long_ago())
        .await
        .unwrap();
    assert_eq!(o.stored.get("health"), Some(&1));
}

/// A batch is first written on the assumption that every health report in it is new;
/// one stored report deep in it (after whole statements went in) makes the store drop
/// that transaction and write the batch again. Nothing may land twice: not the rows, the
/// hourly aggregates, the rules' queue, nor the other kinds written before the health rows.
async fn a_batch_holding_one_stored_report_stores_every_other_one_once(store: Store) {
    let mut d = TestDevice::new("d-9", 9);
    register(&store, std::slice::from_ref(&d)).await;
    let stored = d.health(90.0);
    store
        .write_batch(&[item(stored.clone())], Utc::now(), long_ago())
        .await
        .unwrap();
    let mut batch = vec![item(d.message(
        Body::Status(Status {
            state: Presence::Online,
        }),
        Utc::now(),
    ))];
    batch.extend((0..899).map(|i| item(d.health(80.0 + f64::from(i % 10)))));
    // Past the first two 400-row statements.
    batch.insert(850, item(stored));
    let o = store
        .write_batch(&batch, Utc::now(), long_ago())
        .await
        .unwrap();
    assert_eq!(o.stored.get("health"), Some(&899));
    assert_eq!(o.stored.get("status"), Some(&1));
    assert_eq!(o.duplicates, 1);
    assert_eq!(o.health_queued, 899);
    let c = store.counts().await.unwrap();
    assert_eq!((c.messages, c.health_samples), (901, 900));
    let now = Utc::now();
    let hours = store
        .hourly_series(&d.id, now - Duration::hours(3), now + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(hours.iter().map(|h| h.samples).sum::<i64>(), 900);
    let mut tx = store.begin_maintenance().await.unwrap();
    let inbox = tx.take_inbox(10_000).await.unwrap();
    assert_eq!(inbox.samples.len(), 900);
    let mut keys: Vec<i64> = inbox.samples.iter().map(|s| s.seq).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 900, "a sample queued twice for the rules");
}

async fn a_replaced_battery_shows_as_a_dated_change(store: Store) {
    let mut d = TestDevice::new("d-2", 2);
    register(&store, std::slice::from_ref(&d)).await;
    let mut inv = Inventory::default();
    inv.identity.system_serial = Some("PF2ABCDE".into());
    inv.agent_version = "0.1.0".into();
    inv.batteries.push(BatteryInfo {
        name: "BAT0".into(),
        serial: Some("OLD1".into()),
        ..Default::default()
    });
    let first = d.message(Body::Inventory(Box::new(inv.clone())), t(9, 0));
    inv.batteries[0].serial = Some("NEW2".into());
    let second = d.message(Body::Inventory(Box::new(inv.clone())), t(10, 0));
    // Delivered in reverse order within one batch: changes still read forwards.
    let o = store
        .write_batch(&[item(second), item(first)], Utc::now(), long_ago())
        .await
        .unwrap();
    assert_eq!(o.inventory_changes, 1);
    let changes = store.inventory_changes(&d.id).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].component, "battery");
    assert_eq!(changes[0].change, "replaced");
    assert_eq!(changes[0].changed_at, t(10, 0));
    assert_eq!(changes[0].before.as_deref(), Some("OLD1"));
    assert_eq!(changes[0].after.as_deref(), Some("NEW2"));
    let latest: Inventory =
        serde_json::from_str(&store.latest_inventory(&d.id).await.unwrap().unwrap()).unwrap();
    assert_eq!(latest.batteries[0].serial.as_deref(), Some("NEW2"));
    let dev = &store.devices().await.unwrap()[0];
    assert_eq!(dev.serial.as_deref(), Some("PF2ABCDE"));
    // An older inventory arriving late changes nothing.
    inv.batteries[0].serial = Some("STALE".into());
    let late = d.message(Body::Inventory(Box::new(inv)), t(8, 0));
    store
        .write_batch(&[item(late)], Utc::now(), long_ago())
        .await
        .unwrap();
    assert_eq!(store.inventory_changes(&d.id).await.unwrap().len(), 1);
}

async fn hourly_aggregates_merge_late_samples_exactly(store: Store) {
    let mut d = TestDevice::new("d-3", 3);
    register(&store, std::slice::from_ref(&d)).await;
    let mut at = |battery: f64, minute: u32| {
        let mut m = d.health(battery);
        m.header.collected_at = t(14, minute);
        item(m)
    };
    let batch1 = [at(80.0, 5), at(78.0, 20)];
    let batch2 = [at(79.0, 50), at(70.0, 10)];
    let next_hour = {
        let mut m = d.health(60.0);
        m.header.collected_at = t(15, 1);
        item(m)
    };
    store
        .write_batch(&batch1, Utc::now(), long_ago())
        .await
        .unwrap();
    store
        .write_batch(&batch2, Utc::now(), long_ago())
        .await
        .unwrap();
    store
        .write_batch(&[next_hour], Utc::now(), long_ago())
        .await
        .unwrap();
    let hours = store.hourly_series(&d.id, t(0, 0), t(23, 0)).await.unwrap();
    assert_eq!(hours.len(), 2);
    assert_eq!(hours[0].hour, t(14, 0));
    assert_eq!(hours[0].samples, 4);
    assert_eq!(hours[0].battery_health_min, Some(70.0));
    assert_eq!(hours[0].battery_charge_avg, Some(80.0));
    assert_eq!(hours[0].cpu_usage_avg, Some(12.5));
    assert_eq!(hours[0].temperature_max_celsius, Some(45.5));
    assert_eq!(hours[1].battery_health_min, Some(60.0));
}

async fn retention_prunes_raw_samples_but_keeps_hourly_aggregates(store: Store) {
    let mut d = TestDevice::new("d-4", 4);
    register(&store, std::slice::from_ref(&d)).await;
    let now = Utc::now();
    let mut old = d.health(80.0);
    old.header.collected_at = now - Duration::days(40);
    let recent = d.health(79.0);
    store
        .write_batch(
            &[item(old), item(recent)],
            now - Duration::days(40),
            long_ago(),
        )
        .await
        .unwrap();
    let bad = Quarantined::new(
        now - Duration::days(40),
        "parc/v1/x/health",
        b"{",
        "invalid_json",
        "x".into(),
    );
    store
        .write_batch(&[Item::Rejected(Box::new(bad))], now, long_ago())
        .await
        .unwrap();
    let pruned = store.prune(now, &Retention::default()).await.unwrap();
    assert_eq!(pruned.health_samples, 1);
    assert_eq!(pruned.quarantine, 1);
    let c = store.counts().await.unwrap();
    assert_eq!(c.health_samples, 1);
    assert_eq!(c.health_hours, 2, "hourly aggregates outlive raw samples");
    // Messages older than raw retention are not stored again after pruning.
    let mut ancient = d.health(50.0);
    ancient.header.collected_at = now - Duration::days(60);
    let o = store
        .write_batch(&[item(ancient)], now, now - Duration::days(30))
        .await
        .unwrap();
    assert_eq!((o.stale, o.stored.len()), (1, 0));
}

async fn presence_follows_the_newest_status(store: Store) {
    let mut d = TestDevice::new("d-5", 5);
    register(&store, std::slice::from_ref(&d)).await;
    let online = d.message(
        Body::Status(Status {
            state: Presence::Online,
        }),
        t(10, 0),
    );
    let offline_older = d.message(
        Body::Status(Status {
            state: Presence::Offline,
        }),
        t(9, 0),
    );
    let o = store
        .write_batch(&[item(online), item(offline_older)], Utc::now(), long_ago())
        .await
        .unwrap();
    assert!(o.presence_changed);
    assert_eq!(store.devices_online().await.unwrap(), 1);
    let offline = d.message(
        Body::Status(Status {
            state: Presence::Offline,
        }),
        t(11, 0),
    );
    store
        .write_batch(&[item(offline)], Utc::now(), long_ago())
        .await
        .unwrap();
    assert_eq!(store.devices_online().await.unwrap(), 0);
}

on_both_engines!(
    a_redelivered_message_is_stored_once,
    a_batch_holding_one_stored_report_stores_every_other_one_once,
    a_replaced_battery_shows_as_a_dated_change,
    hourly_aggregates_merge_late_samples_exactly,
    retention_prunes_raw_samples_but_keeps_hourly_aggregates,
    presence_follows_the_newest_status,
);
