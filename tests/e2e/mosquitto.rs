//! Frames crossing the machine's real Mosquitto are authenticated by the server's ingest:
//! a device's own frames are accepted, a frame forged as another device is refused.

use std::time::Duration;

use chrono::Utc;
use parc_protocol::{Body, DeviceId, DeviceKey, Epoch, Header, Limits, Message, seal};
use parc_server::ingest::{Registry, accept};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn unique(prefix: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    format!("{prefix}-{}", hex::encode(b))
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

#[tokio::test]
#[ignore = "needs mosquitto + postgres"]
async fn frames_through_mosquitto_are_authenticated_by_the_server_ingest() {
    let a = DeviceId::parse(&unique("d-e2e-a")).unwrap();
    let b = DeviceId::parse(&unique("d-e2e-b")).unwrap();
    let (key_a, key_b) = (
        DeviceKey::from_bytes([0xa; 32]),
        DeviceKey::from_bytes([0xb; 32]),
    );
    let registry = Registry::default();
    registry.insert(a.clone(), key_a.clone());
    registry.insert(b.clone(), key_b.clone());

    let mut opts = MqttOptions::new(unique("parc-e2e-sub"), "127.0.0.1", 1883);
    opts.set_keep_alive(Duration::from_secs(5));
    let (sub, mut sub_loop) = AsyncClient::new(opts, 64);
    for filter in parc_protocol::server_filters(None) {
        sub.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    }
    // Wait for the subscriptions to be acknowledged, or fail: Mosquitto must be up.
    let mut acked = 0;
    while acked < 5 {
        match tokio::time::timeout(Duration::from_secs(5), sub_loop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("Mosquitto on 127.0.0.1:1883 is not reachable: {e}"),
            Err(_) => panic!("Mosquitto on 127.0.0.1:1883 did not acknowledge the subscription"),
        }
    }

    let (publisher, mut pub_loop) = AsyncClient::new(
        MqttOptions::new(unique("parc-e2e-pub"), "127.0.0.1", 1883),
        64,
    );
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let mut forged = health(&a, 2);
    forged.header.device_id = b.clone();
    for (topic, payload) in [
        seal(&health(&a, 1), &key_a),
        seal(&forged, &key_a),
        seal(&health(&b, 1), &key_b),
    ] {
        publisher
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    let mut outcomes = Vec::new();
    while outcomes.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), sub_loop.poll())
            .await
            .expect("the three publishes arrive through Mosquitto")
            .unwrap();
        if let Event::Incoming(Packet::Publish(p)) = event {
            if !(p.topic.contains(a.as_str()) || p.topic.contains(b.as_str())) {
                continue; // another test's or session's traffic
            }
            let result = accept(
                &p.topic,
                &p.payload,
                &registry,
                Utc::now(),
                &Limits::default(),
            );
            outcomes.push(
                result
                    .map(|m| (m.header.device_id.to_string(), m.header.seq))
                    .map_err(|e| e.reason()),
            );
        }
    }
    outcomes.sort();
    let mut expected = vec![
        Ok((a.to_string(), 1)),
        Ok((b.to_string(), 1)),
        Err("bad_signature"),
    ];
    expected.sort();
    assert_eq!(outcomes, expected);
}
