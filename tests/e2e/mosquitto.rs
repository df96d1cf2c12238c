//! Two server replicas side by side behind the machine's real Mosquitto
//! (127.0.0.1:1883) and one PostgreSQL database: a shared subscription splits the
//! devices' messages between them, every message is stored exactly once, and a frame
//! forged as another device is quarantined.

use std::time::Duration;

use chrono::Utc;
use parc_protocol::{Body, DeviceId, DeviceKey, Epoch, Header, Message, seal};
use parc_server::app::Prepared;
use parc_server::config::ServerConfig;
use parc_server::store::{NewDevice, Store};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn unique(prefix: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    format!("{prefix}_{}", hex::encode(b))
}

fn health(device: &DeviceId, seq: u64) -> Message {
    Message::new(
        Header {
            device_id: device.clone(),
            epoch: Epoch::from_random([5; 16]),
            seq,
            collected_at: Utc::now(),
            sent_at: Utc::now(),
        },
        Body::Health(Box::default()),
    )
}

fn pg_admin_url() -> String {
    std::env::var("PARC_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto + postgres"]
async fn two_replicas_share_the_machines_mosquitto_and_store_each_message_once() {
    let db_name = unique("parc_e2e");
    let db_url = Store::create_postgres_database(&pg_admin_url(), &db_name)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 must run (.ci/run starts it)");
    let store = Store::connect(&db_url).await.unwrap();
    let a = DeviceId::parse(&unique("d-e2e-a")).unwrap();
    let b = DeviceId::parse(&unique("d-e2e-b")).unwrap();
    let (key_a, key_b) = (
        DeviceKey::from_bytes([0xa; 32]),
        DeviceKey::from_bytes([0xb; 32]),
    );
    for (id, key) in [(&a, &key_a), (&b, &key_b)] {
        store
            .upsert_device(
                &NewDevice {
                    device_id: id.clone(),
                    key: key.clone(),
                    serial: None,
                    manufacturer: None,
                    product_name: None,
                    hostname: None,
                    agent_version: None,
                    // The machine's Mosquitto allows anonymous clients; the frames'
                    // HMAC is what this test relies on.
                    mqtt_password_sha256: None,
                    mosquitto_password_line: None,
                },
                Utc::now(),
            )
            .await
            .unwrap();
    }

    let group = unique("parc");
    let mut replicas = Vec::new();
    for n in 0..2 {
        let mut cfg = ServerConfig::defaults();
        cfg.mqtt.url = Some("mqtt://127.0.0.1:1883".into());
        cfg.mqtt.client_id = unique(&format!("parc-e2e-replica{n}"));
        cfg.mqtt.shared_group = Some(group.clone());
        cfg.database.url = Some(db_url.clone());
        let prepared = Prepared::new(cfg).await.unwrap();
        let ingest = prepared.ingest.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(prepared.run(listener, async {
            let _ = rx.await;
        }));
        replicas.push((ingest, tx, task));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !replicas
        .iter()
        .all(|(i, _, _)| i.connected.load(std::sync::atomic::Ordering::Relaxed))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replicas did not subscribe at Mosquitto on 127.0.0.1:1883: is it running?"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (publisher, mut pub_loop) = AsyncClient::new(
        MqttOptions::new(unique("parc-e2e-pub"), "127.0.0.1", 1883),
        1024,
    );
    let per_device = 200;
    for seq in 1..=per_device {
        for (id, key) in [(&a, &key_a), (&b, &key_b)] {
            let (topic, payload) = seal(&health(id, seq), key);
            publisher
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    }
    // Device a forges a frame as b.
    let (forged_topic, forged) = seal(&health(&b, 10_000), &key_a);
    publisher
        .publish(forged_topic, QoS::AtLeastOnce, false, forged)
        .await
        .unwrap();
    let total = 2 * per_device as usize + 1;
    let mut acked = 0;
    while acked < total {
        match tokio::time::timeout(Duration::from_secs(20), pub_loop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            other => panic!("publishing through Mosquitto failed: {other:?}"),
        }
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let counts = loop {
        let c = store.counts().await.unwrap();
        if c.messages == 2 * per_device as i64 && c.quarantined.get("bad_signature") == Some(&1) {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not everything arrived: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(counts.health_samples, 2 * per_device as i64);
    assert_eq!(store.message_count(&a).await.unwrap(), per_device as i64);
    let mut shares = Vec::new();
    for (ingest, tx, task) in replicas {
        shares.push(ingest.metrics.received.get());
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("replica stops")
            .unwrap()
            .unwrap();
    }
    assert!(
        shares.iter().all(|&n| n > 0),
        "both replicas took a share of the messages: {shares:?}"
    );
    assert_eq!(shares.iter().sum::<u64>(), total as u64);
    store.close().await;
    Store::drop_postgres_database(&pg_admin_url(), &db_name)
        .await
        .unwrap();
}
