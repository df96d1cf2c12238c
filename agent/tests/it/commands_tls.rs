//! Server→device commands reach the running daemon (and forged ones do not), and the
//! uplink speaks TLS to a broker whose certificate the pinned fleet CA signed — and
//! refuses one it did not.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use chrono::Utc;
use parc_agent::config::AgentConfig;
use parc_protocol::{Body, Command, DeviceKey, Epoch, Header, Kind, Message, seal};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

use crate::support::*;

fn healths(r: &std::sync::Arc<std::sync::Mutex<Received>>) -> usize {
    r.lock()
        .unwrap()
        .kinds()
        .into_iter()
        .filter(|k| *k == Kind::Health)
        .count()
}

/// Publishes one frame at QoS 1 and waits for the broker's PUBACK.
async fn publish(port: u16, topic: String, payload: Vec<u8>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let (client, mut el) = AsyncClient::new(
        MqttOptions::new(format!("pub-{}", free_port()), "127.0.0.1", port),
        10,
    );
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return,
            Ok(Ok(_)) => {}
            other => panic!("publishing the command failed: {other:?}"),
        }
    }
}

fn command(device: &TestDevice, seq: u64, cmd: Command, key: &DeviceKey) -> (String, Vec<u8>) {
    let m = Message::new(
        Header {
            device_id: device.id.clone(),
            epoch: Epoch::from_random([0x5e; 16]),
            seq,
            collected_at: Utc::now(),
            sent_at: Utc::now(),
        },
        Body::Cmd(cmd),
    );
    seal(&m, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn a_signed_collect_now_reaches_the_daemon_and_a_forged_one_does_not() {
    let broker = Mosquitto::start();
    let device = TestDevice::new("d-cmd", 5);
    let state = tempfile::tempdir().unwrap();
    device.write_state(state.path());
    // Health every hour: any second sample within the test comes from the command.
    let text = config_text(&broker.url(), state.path(), "")
        .replace("[collect]\n", "[collect]\nhealth_interval_seconds = 3600\n");
    let cfg = AgentConfig::parse(&text).unwrap();
    let received = subscribe(broker.port, device.key.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(parc_agent::runtime::run(cfg, async {
        let _ = stopped.await;
    }));
    eventually(20, "the first health sample", || healths(&received) == 1).await;

    let (t, forged) = command(
        &device,
        1,
        Command::CollectNow,
        &DeviceKey::from_bytes([9; 32]),
    );
    publish(broker.port, t, forged).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(healths(&received), 1, "a forged command is ignored");

    let (t, signed) = command(&device, 2, Command::CollectNow, &device.key);
    publish(broker.port, t, signed).await;
    eventually(15, "a health sample collected on command", || {
        healths(&received) == 2
    })
    .await;

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("the daemon stops within 5 s")
        .unwrap()
        .unwrap();
}

/// A CA, and a broker certificate for localhost/127.0.0.1 that it signed, as PEM.
fn fleet_ca() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn the_uplink_uses_tls_with_the_pinned_fleet_ca_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = fleet_ca();
    for (name, pem) in [("ca.pem", &ca), ("broker.pem", &cert), ("broker.key", &key)] {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    let (tls_port, plain_port) = (free_port(), free_port());
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\nlog_dest none\n\
             listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/broker.pem\nkeyfile {d}/broker.key\n\
             listener {plain_port} 127.0.0.1\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut mosquitto = std::process::Command::new(mosquitto_bin())
        .arg("-c")
        .arg(&conf)
        .spawn()
        .expect("starting mosquitto");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", plain_port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }

    let device = TestDevice::new("d-tls", 6);
    let received = subscribe(plain_port, device.key.clone());
    let state = tempfile::tempdir().unwrap();
    device.write_state(state.path());
    let url = format!("mqtts://localhost:{tls_port}");
    let ca_line = format!("ca_file = \"{}\"\n", dir.path().join("ca.pem").display());
    let report = parc_agent::runtime::once(
        config(&url, state.path(), &ca_line),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(report.pending, 0, "{report:?}");
    eventually(10, "inventory and health over TLS", || {
        let kinds = received.lock().unwrap().kinds();
        kinds.contains(&Kind::Inventory) && kinds.contains(&Kind::Health)
    })
    .await;

    // Pinned to another CA: the broker's certificate is refused, nothing is sent.
    let (other_ca, _, _) = fleet_ca();
    std::fs::write(dir.path().join("other-ca.pem"), other_ca).unwrap();
    let other_state = tempfile::tempdir().unwrap();
    TestDevice::new("d-tls-2", 7).write_state(other_state.path());
    let ca_line = format!(
        "ca_file = \"{}\"\n",
        dir.path().join("other-ca.pem").display()
    );
    let report = parc_agent::runtime::once(
        config(&url, other_state.path(), &ca_line),
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    assert!(!report.connected, "{report:?}");
    assert!(report.pending > 0);
    let _ = mosquitto.kill();
    let _ = mosquitto.wait();
}
