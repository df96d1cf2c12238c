//! The dashboard's store reads on both engines: keyset pagination, search by serial,
//! host name and school, device states from the latest readings and silence, usage
//! hours, and the scope applied to each.

use chrono::Utc;
use parc_server::auth::Scope;
use parc_server::store::{
    DeviceState, FleetFilter, Item, StateThresholds, Store, load_demo_dataset,
};

use crate::support::TestDevice;

fn filter(q: &str) -> FleetFilter {
    FleetFilter {
        q: Some(q.to_string()),
        ..Default::default()
    }
}

async fn ids(store: &Store, scope: &Scope, f: &FleetFilter) -> Vec<String> {
    store
        .fleet_page(scope, f, 500, &StateThresholds::default(), Utc::now())
        .await
        .unwrap()
        .devices
        .into_iter()
        .map(|d| d.device_id)
        .collect()
}

/// Twelve devices with the demo serials PARCDEMO0000–0011 and host names `host-NN`.
async fn twelve(store: &Store) {
    load_demo_dataset(store).await.unwrap();
    for i in 0..12u8 {
        let mut d = TestDevice::new(&format!("d-{i:02}"), i + 1).enrolment();
        d.serial = Some(format!("PARCDEMO{i:04}"));
        d.hostname = Some(format!("host-{i:02}"));
        store.upsert_device(&d, Utc::now()).await.unwrap();
    }
}

async fn the_device_list_pages_by_id_and_finds_serials_hosts_and_schools(store: Store) {
    twelve(&store).await;
    let t = StateThresholds::default();
    let mut seen = Vec::new();
    let mut f = FleetFilter::default();
    loop {
        let page = store
            .fleet_page(&Scope::All, &f, 5, &t, Utc::now())
            .await
            .unwrap();
        assert!(page.devices.len() <= 5);
        seen.extend(page.devices.iter().map(|d| d.device_id.clone()));
        match page.next_after {
            Some(a) => f.after = Some(a),
            None => break,
        }
    }
    let all: Vec<String> = (0..12).map(|i| format!("d-{i:02}")).collect();
    assert_eq!(seen, all, "every device once, in id order");

    assert_eq!(
        ids(&store, &Scope::All, &filter("parcdemo001")).await,
        ["d-10", "d-11"]
    );
    assert_eq!(ids(&store, &Scope::All, &filter("host-0")).await.len(), 10);
    assert_eq!(ids(&store, &Scope::All, &filter("host-07")).await, ["d-07"]);
    // "École élémentaire du Centre" (0420101G) has PARCDEMO0001–0003, 0005–0007 and
    // 0009–0011 among these.
    let centre = ids(&store, &Scope::All, &filter("centre")).await;
    assert_eq!(centre, ids(&store, &Scope::All, &filter("0420101G")).await);
    assert_eq!(
        centre,
        [
            "d-01", "d-02", "d-03", "d-05", "d-06", "d-07", "d-09", "d-10", "d-11"
        ]
    );
    assert!(
        ids(&store, &Scope::All, &filter("%")).await.is_empty(),
        "LIKE wildcards are literal"
    );
    assert!(
        ids(&store, &Scope::All, &filter("nothing-like-it"))
            .await
            .is_empty()
    );

    // A scope narrows every search: Valbois sees its school, not the Département's.
    let valbois = Scope::Organisation("commune-valbois".into());
    assert_eq!(
        ids(&store, &valbois, &filter("host-0")).await,
        ["d-01", "d-02", "d-03", "d-05", "d-06", "d-07", "d-09"]
    );
    assert!(
        ids(&store, &valbois, &filter("parcdemo0000"))
            .await
            .is_empty()
    );
    let mobil = Scope::Holder("mobil-edu".into());
    assert!(
        ids(&store, &mobil, &filter("host-0"))
            .await
            .iter()
            .all(|d| centre.contains(d))
    );
}

async fn states_follow_the_latest_readings_and_silence(store: Store) {
    let mut devices: Vec<TestDevice> = ["d-good", "d-worn", "d-tired", "d-quiet"]
        .iter()
        .enumerate()
        .map(|(i, n)| TestDevice::new(n, i as u8 + 1))
        .collect();
    crate::support::register(&store, &devices).await;
    let mut items = Vec::new();
    for (d, battery) in devices.iter_mut().zip([92.0, 50.0, 70.0]) {
        // An older, better reading first: only the latest counts.
        items.push(Item::accepted(d.health(99.0)));
        let mut m = d.health(battery);
        m.header.collected_at += chrono::Duration::seconds(1);
        items.push(Item::accepted(m));
    }
    let long_ago = chrono::DateTime::<Utc>::UNIX_EPOCH;
    store
        .write_batch(&items, Utc::now(), long_ago)
        .await
        .unwrap();
    assert_eq!(store.refresh_device_latest(long_ago).await.unwrap(), 3);

    let t = StateThresholds::default();
    let o = store
        .fleet_overview(&Scope::All, &t, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        (
            o.totals.healthy,
            o.totals.warning,
            o.totals.faulty,
            o.totals.silent
        ),
        (1, 1, 1, 1),
        "{o:?}"
    );
    for (state, expected) in [
        (DeviceState::Healthy, "d-good"),
        (DeviceState::Faulty, "d-worn"),
        (DeviceState::Warning, "d-tired"),
        (DeviceState::Silent, "d-quiet"),
    ] {
        let f = FleetFilter {
            state: Some(state),
            ..Default::default()
        };
        assert_eq!(ids(&store, &Scope::All, &f).await, [expected], "{state:?}");
    }
    let worn = store
        .fleet_device(&Scope::All, "d-worn", &t, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(worn.battery_health_percent, Some(50.0));
    // Undelivered devices exist for a fleet-wide scope only.
    let tech = Scope::Organisation("commune-valbois".into());
    assert!(
        store
            .fleet_device(&tech, "d-worn", &t, Utc::now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .fleet_overview(&tech, &t, Utc::now())
            .await
            .unwrap()
            .totals
            .total,
        0
    );

    // Usage: each reporting device was on during the current hour.
    let now = Utc::now();
    let u = store
        .usage(
            &Scope::All,
            now - chrono::Duration::hours(2),
            now + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    let hours: Vec<(String, i64)> = u
        .devices
        .iter()
        .map(|d| (d.device_id.clone(), d.hours))
        .collect();
    assert_eq!(hours.len(), 3, "{hours:?}");
    assert!(hours.iter().all(|(_, h)| *h == 1), "{hours:?}");
    assert!(
        store
            .usage(&tech, now - chrono::Duration::hours(2), now)
            .await
            .unwrap()
            .devices
            .is_empty()
    );
}

/// Two epochs of one device (a reinstalled agent) can report in the same millisecond.
async fn samples_collected_in_the_same_millisecond_refresh_into_one_latest_row(store: Store) {
    let mut a = TestDevice::new("d-same-ms", 61);
    let mut b = TestDevice::new("d-same-ms", 62);
    crate::support::register(&store, std::slice::from_ref(&a)).await;
    let at = Utc::now();
    let health = |v: f64| -> parc_protocol::Body {
        parc_protocol::Body::Health(Box::new(
            serde_json::from_value(serde_json::json!({
                "batteries": [{"name": "BAT0", "health_percent": v}]
            }))
            .unwrap(),
        ))
    };
    let items = vec![
        Item::accepted(a.message(health(80.0), at)),
        Item::accepted(b.message(health(70.0), at)),
    ];
    let now = Utc::now();
    store
        .write_batch(&items, now, now - chrono::Duration::days(1))
        .await
        .unwrap();
    let since = at - chrono::Duration::minutes(1);
    assert_eq!(store.refresh_device_latest(since).await.unwrap(), 1);
}

on_both_engines!(
    the_device_list_pages_by_id_and_finds_serials_hosts_and_schools,
    states_follow_the_latest_readings_and_silence,
    samples_collected_in_the_same_millisecond_refresh_into_one_latest_row,
);
