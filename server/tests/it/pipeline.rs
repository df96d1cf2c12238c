//! The whole ingest path through a real broker into a real database: the embedded
//! broker with SQLite here, an own Mosquitto with PostgreSQL in the external suite.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use parc_protocol::{Body, Hello, Kind, Presence, Status, seal_raw, topic};
use parc_server::app::{Prepared, ServerError};
use parc_server::config::ServerConfig;
use parc_server::store::Store;
use tokio::sync::oneshot;

use crate::support::*;

pub struct Running {
    pub store: Store,
    pub http: SocketAddr,
    pub mqtt_port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
    _mosquitto: Option<Mosquitto>,
    _db: TestDb,
}

impl Running {
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("server stops within 15 s")
            .unwrap()
            .unwrap();
    }

    pub async fn metric(&self, line_prefix: &str) -> Option<f64> {
        let (_, body) = http_get(self.http, "/metrics").await;
        body.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// Starts a server on `db`; with `mosquitto`, through it, else with the embedded broker.
pub async fn start(db: TestDb, mosquitto: Option<Mosquitto>) -> Running {
    start_with_writers(db, mosquitto, 0).await
}

/// [`start`] with `ingest.writers` set (0: the engine's default).
pub async fn start_with_writers(
    db: TestDb,
    mosquitto: Option<Mosquitto>,
    writers: usize,
) -> Running {
    let mut cfg = ServerConfig::defaults();
    cfg.ingest.writers = writers;
    let mqtt_port = match &mosquitto {
        Some(m) => {
            cfg.mqtt.url = Some(m.url());
            cfg.mqtt.client_id = format!("parc-test-{}", free_port());
            m.port
        }
        None => {
            let port = free_port();
            cfg.mqtt.listen = format!("127.0.0.1:{port}").parse().unwrap();
            port
        }
    };
    cfg.database.url = Some(db.url.clone());
    cfg.ingest.batch_max_wait_ms = 20;
    let prepared = Prepared::new(cfg).await.unwrap();
    let store = prepared.ingest.store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(prepared.run(listener, async {
        let _ = rx.await;
    }));
    eventually(20, "server ready", || async {
        http_get(http, "/readyz").await.0 == 200
    })
    .await;
    Running {
        store,
        http,
        mqtt_port,
        stop: Some(tx),
        task,
        _mosquitto: mosquitto,
        _db: db,
    }
}

async fn an_agents_messages_are_stored(server: Running) {
    let mut d = TestDevice::new("d-agent", 7);
    register(&server.store, std::slice::from_ref(&d)).await;
    let mut frames = Vec::new();
    let hello = d.message(
        Body::Hello(
            serde_json::from_value::<Hello>(serde_json::json!({"agent_version": "0.1.0"})).unwrap(),
        ),
        Utc::now(),
    );
    frames.push(d.seal(&hello));
    let status = d.message(
        Body::Status(Status {
            state: Presence::Online,
        }),
        Utc::now(),
    );
    frames.push(d.seal(&status));
    for i in 0..5 {
        let m = d.health(90.0 - f64::from(i));
        frames.push(d.seal(&m));
    }
    publish_all(server.mqtt_port, "agent-pub", d.login(), frames).await;
    let store = server.store.clone();
    eventually(10, "7 messages stored", || {
        let store = store.clone();
        async move { store.counts().await.unwrap().messages == 7 }
    })
    .await;
    let c = server.store.counts().await.unwrap();
    assert_eq!(c.health_samples, 5);
    assert_eq!(c.devices_online, 1);
    assert!(c.quarantined.is_empty(), "{:?}", c.quarantined);
    let devices = server.store.devices().await.unwrap();
    assert_eq!(devices[0].agent_version.as_deref(), Some("0.1.0"));
    assert_eq!(devices[0].online, Some(true));
    assert!(devices[0].last_seen.is_some());
    assert_eq!(devices[0].battery_health_percent, Some(86.0));
    let series = server
        .store
        .health_series(
            &d.id,
            Utc::now() - chrono::Duration::hours(1),
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    assert_eq!(series.len(), 5);
    assert_eq!(server.metric("parc_devices_online ").await, Some(1.0));
    server.stop().await;
}

/// Each hostile publish sits between two valid ones; returns the expected reasons.
async fn hostile_corpus_is_quarantined_and_neighbours_stored(server: Running) {
    let mut a = TestDevice::new("d-a", 1);
    let mut b = TestDevice::new("d-b", 2);
    let mut stranger = TestDevice::new("d-stranger", 3);
    register(&server.store, &[a.clone(), b.clone()]).await;

    let health_topic = topic(&a.id, Kind::Health);
    let mut hostile: Vec<(&str, (String, Vec<u8>))> = Vec::new();
    hostile.push((
        "invalid_json",
        (health_topic.clone(), b"{not json".to_vec()),
    ));
    {
        let m = a.health(80.0);
        let raw = m.to_json().replace(
            "\"cpu_usage_percent\":12.5",
            "\"cpu_usage_percent\":\"hot\"",
        );
        assert!(raw.contains("\"hot\""));
        hostile.push((
            "schema",
            (
                health_topic.clone(),
                seal_raw(&health_topic, &raw, &a.key).unwrap(),
            ),
        ));
    }
    hostile.push(("too_large", (health_topic.clone(), vec![b' '; 1 << 20])));
    {
        // Signed by b for b's topic, but the body says it comes from a.
        let m = a.health(80.0);
        let t = topic(&b.id, Kind::Health);
        hostile.push((
            "device_mismatch",
            (t.clone(), seal_raw(&t, &m.to_json(), &b.key).unwrap()),
        ));
    }
    {
        // b writing as a with its own key.
        let m = a.health(80.0);
        hostile.push((
            "bad_signature",
            (
                health_topic.clone(),
                seal_raw(&health_topic, &m.to_json(), &b.key).unwrap(),
            ),
        ));
    }
    {
        let future = Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap();
        let mut m = a.health(80.0);
        m.header.collected_at = future;
        m.header.sent_at = future;
        hostile.push(("future_timestamp", a.seal(&m)));
    }
    {
        let m = a.health(80.0);
        let raw = m
            .to_json()
            .replace("\"schema_version\":\"1.0\"", "\"schema_version\":\"2.0\"");
        assert!(raw.contains("\"2.0\""));
        hostile.push((
            "unsupported_version",
            (
                health_topic.clone(),
                seal_raw(&health_topic, &raw, &a.key).unwrap(),
            ),
        ));
    }
    {
        let m = stranger.health(80.0);
        hostile.push(("unknown_device", stranger.seal(&m)));
    }

    let mut frames = Vec::new();
    let mut valid = 0;
    for (_, frame) in &hostile {
        let m = a.health(70.0);
        frames.push(a.seal(&m));
        frames.push(frame.clone());
        valid += 1;
    }
    let m = b.health(75.0);
    let replayed = b.seal(&m);
    frames.push(replayed.clone());
    frames.push(replayed);
    valid += 1;
    // One client holding device a's broker login sends everything.
    publish_all(server.mqtt_port, "hostile-pub", a.login(), frames).await;

    let store = server.store.clone();
    let expected = hostile.len() as i64;
    eventually(
        15,
        "valid messages stored and hostile ones quarantined",
        || {
            let store = store.clone();
            async move {
                let c = store.counts().await.unwrap();
                c.messages == valid && c.quarantined.values().sum::<i64>() == expected
            }
        },
    )
    .await;
    let c = server.store.counts().await.unwrap();
    for (reason, _) in &hostile {
        assert_eq!(
            c.quarantined.get(*reason),
            Some(&1),
            "reason {reason}: {:?}",
            c.quarantined
        );
    }
    assert_eq!(c.health_samples, valid);
    let q = server.store.quarantine(100).await.unwrap();
    let large = q.iter().find(|r| r.reason == "too_large").unwrap();
    assert_eq!(large.size_bytes, 1 << 20);
    assert!(large.head.len() <= 256);
    assert_eq!(large.topic, health_topic);
    eventually(5, "duplicate counted", || async {
        server.metric("parc_ingest_duplicates_total ").await == Some(1.0)
    })
    .await;
    assert_eq!(
        server
            .metric("parc_ingest_rejected_total{reason=\"bad_signature\"}")
            .await,
        Some(1.0)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_messages_are_stored_with_the_embedded_broker_and_sqlite() {
    an_agents_messages_are_stored(start(TestDb::sqlite(), None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto + postgres"]
async fn an_agents_messages_are_stored_with_mosquitto_and_postgres() {
    let db = TestDb::postgres().await;
    an_agents_messages_are_stored(start(db, Some(Mosquitto::start())).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus_is_quarantined_with_the_embedded_broker_and_sqlite() {
    hostile_corpus_is_quarantined_and_neighbours_stored(start(TestDb::sqlite(), None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto + postgres"]
async fn hostile_corpus_is_quarantined_with_mosquitto_and_postgres() {
    let db = TestDb::postgres().await;
    hostile_corpus_is_quarantined_and_neighbours_stored(start(db, Some(Mosquitto::start())).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_the_database_and_broker_and_metrics_are_exposed() {
    let server = start(TestDb::sqlite(), None).await;
    let (status, body) = http_get(server.http, "/readyz").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"database\":true"), "{body}");
    let (_, metrics) = http_get(server.http, "/metrics").await;
    for name in [
        "parc_ingest_received_total",
        "parc_ingest_duplicates_total",
        "parc_ingest_batch_size",
        "parc_ingest_commit_seconds",
        "parc_ingest_queue_depth",
        "parc_ingest_uncommitted 0",
        "parc_devices_online",
        "parc_mqtt_connected 1",
    ] {
        assert!(metrics.contains(name), "{name} missing in\n{metrics}");
    }
    server.stop().await;
}

/// More than the embedded broker's link buffer holds at once (rumqttd unschedules a
/// link whose buffer fills up; the ingest must ask for more, or the rest of the burst
/// stays in the broker's log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_bigger_than_the_brokers_link_buffer_is_stored_whole() {
    burst_is_stored_whole_and_once(0).await;
}

/// Several writers on SQLite take turns on its one write lock; each device's messages
/// stay in one writer, and nothing is lost or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_writers_on_sqlite_store_a_burst_whole_and_once() {
    burst_is_stored_whole_and_once(3).await;
}

async fn burst_is_stored_whole_and_once(writers: usize) {
    const DEVICES: usize = 10;
    const EACH: usize = 300;
    let server = start_with_writers(TestDb::sqlite(), None, writers).await;
    let mut devices: Vec<TestDevice> = (0..DEVICES)
        .map(|n| TestDevice::new(&format!("d-burst-{n:02}"), 40 + n as u8))
        .collect();
    register(&server.store, &devices).await;
    let mut publishers = Vec::new();
    for d in &mut devices {
        let frames: Vec<_> = (0..EACH)
            .map(|i| {
                let m = d.health(90.0 - (i % 10) as f64);
                d.seal(&m)
            })
            .collect();
        let (port, id, login) = (server.mqtt_port, format!("burst-{}", d.id), d.login());
        publishers.push(tokio::spawn(async move {
            publish_all(port, &id, login, frames).await
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let store = server.store.clone();
    eventually(30, "the whole burst stored", || {
        let store = store.clone();
        async move { store.counts().await.unwrap().health_samples == (DEVICES * EACH) as i64 }
    })
    .await;
    assert_eq!(
        server.metric("parc_ingest_duplicates_total ").await,
        Some(0.0),
        "a message stored twice"
    );
    server.stop().await;
}
