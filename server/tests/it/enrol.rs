//! Enrolment over HTTP, broker logins with the issued credentials, and the shipped
//! Mosquitto ACL keeping each device to its own topics.

use chrono::{Duration, Utc};
use parc_protocol::enroll::{EnrollRequest, EnrollResponse};
use parc_protocol::{DeviceId, DeviceKey, Epoch, Kind, Limits, seal_raw, topic};
use parc_server::enroll::new_token;
use parc_server::store::{NewTokenRecord, Store};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};

use crate::pipeline::{Running, start};
use crate::support::*;

async fn token(store: &Store, expires_in: Duration, max_uses: Option<i64>) -> String {
    let t = new_token();
    store
        .create_token(
            &NewTokenRecord {
                id: &t.id,
                secret_sha256: &t.secret_sha256,
                label: "École Jean Moulin",
                scope: Some("0570001S"),
                expires_at: Utc::now() + expires_in,
                max_uses,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    t.token
}

fn request(token: &str, serial: Option<&str>, macs: &[&str]) -> String {
    serde_json::to_string(&EnrollRequest {
        token: token.into(),
        serial: serial.map(str::to_string),
        manufacturer: Some("LENOVO".into()),
        product_name: Some("ThinkPad L13".into()),
        macs: macs.iter().map(|m| m.to_string()).collect(),
        hostname: Some("pc-cm2-04".into()),
        agent_version: "0.1.0".into(),
    })
    .unwrap()
}

async fn enroll(server: &Running, body: &str) -> (u16, serde_json::Value) {
    let (status, body) =
        http_post_json(server.http, parc_protocol::enroll::ENROLL_PATH, body).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// Publishes one health message as `device` with `login`; Ok if the broker took it.
async fn publish_as(
    port: u16,
    login: (String, String),
    device: &EnrollResponse,
) -> Result<(), String> {
    let key = DeviceKey::from_base64(&device.device_key).unwrap();
    let mut d = TestDevice {
        id: device.device_id.clone(),
        key,
        epoch: Epoch::from_random([3; 16]),
        seq: 0,
    };
    let m = d.health(88.0);
    let (t, payload) = d.seal(&m);
    let mut opts = MqttOptions::new(format!("c-{}", free_port()), "127.0.0.1", port);
    opts.set_credentials(login.0, login.1);
    let (client, mut ev) = AsyncClient::new(opts, 10);
    client
        .publish(t, rumqttc::QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no PUBACK within 10 s".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_issues_credentials_that_the_embedded_broker_and_ingest_accept() {
    let server = start(TestDb::sqlite(), None).await;
    let token = token(&server.store, Duration::days(1), None).await;
    let (status, body) = enroll(
        &server,
        &request(&token, Some(" pf2abcde "), &["3C:52:82:00:11:22"]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let device: EnrollResponse = serde_json::from_value(body).unwrap();
    assert!(!device.reenrolled);
    assert_eq!(device.mqtt_username, device.device_id.as_str());

    // The issued login works; a wrong password and no login are refused.
    let login = (device.mqtt_username.clone(), device.mqtt_password.clone());
    publish_as(server.mqtt_port, login.clone(), &device)
        .await
        .unwrap();
    let refused = publish_as(server.mqtt_port, (login.0.clone(), "wrong".into()), &device).await;
    let refused = refused.unwrap_err();
    assert!(
        refused.contains("BadUserNamePassword")
            || refused.contains("NotAuthorized")
            || refused.contains("onnection"),
        "{refused}"
    );
    let store = server.store.clone();
    let id = device.device_id.clone();
    eventually(10, "the enrolled device's message stored", || {
        let (store, id) = (store.clone(), id.clone());
        async move { store.message_count(&id).await.unwrap() == 1 }
    })
    .await;
    let row = &server.store.devices().await.unwrap()[0];
    assert_eq!(row.serial.as_deref(), Some("PF2ABCDE"), "serial normalised");

    // Same hardware again (agent reinstalled): same id, new key; the old key is refused.
    let (status, body) = enroll(&server, &request(&token, Some("PF2ABCDE"), &[])).await;
    assert_eq!(status, 200, "{body}");
    let again: EnrollResponse = serde_json::from_value(body).unwrap();
    assert!(again.reenrolled);
    assert_eq!(again.device_id, device.device_id);
    assert_ne!(again.device_key, device.device_key);
    let keys = parc_server::ingest::KeyCache::new(server.store.clone(), std::time::Duration::ZERO);
    let t = topic(&device.device_id, Kind::Health);
    let old_key = DeviceKey::from_base64(&device.device_key).unwrap();
    let mut d = TestDevice {
        id: device.device_id.clone(),
        key: old_key.clone(),
        epoch: Epoch::from_random([4; 16]),
        seq: 0,
    };
    let raw = d.health(80.0).to_json();
    let verdict = parc_server::ingest::accept(
        &t,
        &seal_raw(&t, &raw, &old_key).unwrap(),
        &keys,
        Utc::now(),
        &Limits::default(),
    )
    .await
    .unwrap();
    assert_eq!(verdict.unwrap_err().reason(), "bad_signature");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_without_a_serial_is_recognised_by_its_mac() {
    let server = start(TestDb::sqlite(), None).await;
    let token = token(&server.store, Duration::days(1), None).await;
    let (_, a) = enroll(
        &server,
        &request(
            &token,
            Some("To be filled by O.E.M."),
            &["3c:52:82:00:11:22", "02:00:00:00:00:01"],
        ),
    )
    .await;
    let (_, b) = enroll(&server, &request(&token, None, &["3C-52-82-00-11-22"])).await;
    let (_, c) = enroll(&server, &request(&token, None, &["3c:52:82:99:99:99"])).await;
    assert_eq!(a["device_id"], b["device_id"]);
    assert_eq!(b["reenrolled"], true);
    assert_ne!(a["device_id"], c["device_id"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_expired_revoked_and_used_up_tokens_are_refused_with_their_reason() {
    let server = start(TestDb::sqlite(), None).await;
    let expired = token(&server.store, Duration::seconds(-1), None).await;
    let once = token(&server.store, Duration::days(1), Some(1)).await;
    let revoked = token(&server.store, Duration::days(1), None).await;
    server
        .store
        .revoke_token(revoked.split('.').next().unwrap(), Utc::now())
        .await
        .unwrap();
    let wrong_secret = format!("{}.nottheone", once.split('.').next().unwrap());
    for (tok, code) in [
        ("garbage", "token_invalid"),
        (wrong_secret.as_str(), "token_invalid"),
        (expired.as_str(), "token_expired"),
        (revoked.as_str(), "token_revoked"),
    ] {
        let (status, body) = enroll(&server, &request(tok, Some("SN1"), &[])).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some(code)),
            "{body}"
        );
    }
    assert_eq!(
        enroll(&server, &request(&once, Some("SN1"), &[])).await.0,
        200
    );
    let (status, body) = enroll(&server, &request(&once, Some("SN2"), &[])).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_used_up"))
    );
    let (status, body) = enroll(&server, "{\"token\": 3}").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("token"),
        "{body}"
    );
    assert_eq!(server.store.counts().await.unwrap().devices, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_cannot_enrol_again() {
    let server = start(TestDb::sqlite(), None).await;
    let token = token(&server.store, Duration::days(1), None).await;
    let (_, body) = enroll(&server, &request(&token, Some("SN9"), &[])).await;
    let id = DeviceId::parse(body["device_id"].as_str().unwrap()).unwrap();
    assert!(server.store.revoke_device(&id, Utc::now()).await.unwrap());
    let (status, body) = enroll(&server, &request(&token, Some("SN9"), &[])).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("device_revoked"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrolments_all_succeed_and_never_overrun_max_uses() {
    let server = start(TestDb::sqlite(), None).await;
    let open = token(&server.store, Duration::days(1), None).await;
    let capped = token(&server.store, Duration::days(1), Some(5)).await;
    let http = server.http;
    // 24 enrolments at once on one token, each on its own task.
    let run = |tok: String, prefix: &'static str| async move {
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let body = request(&tok, Some(&format!("{prefix}{i}")), &[]);
                tokio::spawn(async move {
                    http_post_json(http, parc_protocol::enroll::ENROLL_PATH, &body)
                        .await
                        .0
                })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    };
    let statuses = run(open, "OPEN").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let capped = run(capped, "CAP").await;
    assert_eq!(
        capped.iter().filter(|s| **s == 200).count(),
        5,
        "{capped:?}"
    );
    assert!(capped.iter().all(|s| *s == 200 || *s == 401), "{capped:?}");
    assert_eq!(server.store.counts().await.unwrap().devices, 29);
    server.stop().await;
}

/// Mosquitto with the shipped ACL and a password file from the store: a device's
/// login lets it publish on its own topics only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn mosquitto_with_the_shipped_acl_keeps_each_device_to_its_own_topics() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let mut a = TestDevice::new("d-acl-a", 1);
    let b = TestDevice::new("d-acl-b", 2);
    register(&store, &[a.clone(), b.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    // The devices' lines from the store, plus the server's own account.
    let mut lines = store.mosquitto_password_lines().await.unwrap();
    lines.push(parc_server::enroll::mosquitto_password_line(
        "parc-server",
        "server-pw",
    ));
    std::fs::write(&passwd, lines.join("\n") + "\n").unwrap();
    let acl = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/mosquitto/parc.acl"
    );
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {acl}\npersistence false\nlog_dest none\n",
            passwd.display()
        ),
    )
    .unwrap();
    let mut mosquitto = std::process::Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(&conf)
        .spawn()
        .expect("mosquitto is installed");
    eventually(10, "mosquitto listening", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;

    let mut opts = MqttOptions::new("parc-server-watch", "127.0.0.1", port);
    opts.set_credentials("parc-server", "server-pw");
    let (watch, mut watch_ev) = AsyncClient::new(opts, 10);
    watch
        .subscribe("parc/v1/+/health", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = watch_ev.poll().await.unwrap() {
            break;
        }
    }
    // a publishes on its own topic, then on b's (forged with b's id).
    let own = a.health(90.0);
    let mut forged = a.health(90.0);
    forged.header.device_id = b.id.clone();
    let forged_topic = topic(&b.id, Kind::Health);
    let forged_payload = seal_raw(&forged_topic, &forged.to_json(), &a.key).unwrap();
    publish_all(
        port,
        "a-pub",
        a.login(),
        vec![(forged_topic, forged_payload), a.seal(&own)],
    )
    .await;
    let mut topics = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, watch_ev.poll()).await {
        if let Event::Incoming(Packet::Publish(p)) = ev {
            topics.push(p.topic);
        }
    }
    let _ = mosquitto.kill();
    let _ = mosquitto.wait();
    assert_eq!(
        topics,
        vec![topic(&a.id, Kind::Health)],
        "only a's own topic got through"
    );
}
