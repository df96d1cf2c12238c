//! Test helpers: own databases (a SQLite file, or a fresh PostgreSQL database per
//! test), an own Mosquitto process per test, simulated devices sealing real frames,
//! and rumqttc publishers that wait for every PUBACK.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parc_protocol::{Body, DeviceId, DeviceKey, Epoch, Header, Health, Message, seal};
use parc_server::store::{NewDevice, Store};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The PostgreSQL server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("PARC_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A database of the test's own, removed when dropped.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = Store::sqlite_url(dir.path());
        Self {
            url,
            pg_name: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Self {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        let name = format!("parc_t_{}", hex::encode(b));
        let url = Store::create_postgres_database(&pg_admin_url(), &name)
            .await
            .expect("PostgreSQL at PARC_TEST_PG (default 127.0.0.1:5432, database test) must run: start it with .ci/run");
        Self {
            url,
            pg_name: Some(name),
            _dir: None,
        }
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs inside a runtime: do the async cleanup on a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _ = rt.block_on(Store::drop_postgres_database(&pg_admin_url(), &name));
            })
            .join();
        }
    }
}

/// A Mosquitto process of the test's own, configured like packaging/mosquitto for
/// the server (unlimited in-flight and queued messages for persistent sessions).
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages 0\nmax_queued_messages 0\nlog_dest none\n"
            ),
        )
        .unwrap();
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("mosquitto is installed (.ci/run installs it)");
        #[allow(clippy::zombie_processes)] // waited for in Drop
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Self {
                    port,
                    child,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not listen on {addr}");
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A simulated device: its id, key, epoch and sequence.
#[derive(Clone)]
pub struct TestDevice {
    pub id: DeviceId,
    pub key: DeviceKey,
    pub epoch: Epoch,
    pub seq: u64,
}

impl TestDevice {
    pub fn new(name: &str, n: u8) -> Self {
        Self {
            id: DeviceId::parse(name).unwrap(),
            key: DeviceKey::from_bytes([n; 32]),
            epoch: Epoch::from_random([n; 16]),
            seq: 0,
        }
    }

    pub fn enrolment(&self) -> NewDevice {
        NewDevice {
            device_id: self.id.clone(),
            key: self.key.clone(),
            serial: None,
            manufacturer: None,
            product_name: None,
            hostname: None,
            agent_version: None,
            mqtt_password_sha256: Some(parc_server::enroll::sha256_hex(&self.password())),
            mosquitto_password_line: Some(parc_server::enroll::mosquitto_password_line(
                self.id.as_str(),
                &self.password(),
            )),
        }
    }

    /// The broker password this test device was enrolled with.
    pub fn password(&self) -> String {
        format!("pw-{}", self.id)
    }

    pub fn login(&self) -> Option<(String, String)> {
        Some((self.id.to_string(), self.password()))
    }

    pub fn message(&mut self, body: Body, at: DateTime<Utc>) -> Message {
        self.seq += 1;
        Message::new(
            Header {
                device_id: self.id.clone(),
                epoch: self.epoch.clone(),
                seq: self.seq,
                collected_at: at,
                sent_at: at,
            },
            body,
        )
    }

    pub fn health(&mut self, battery: f64) -> Message {
        let h: Health = serde_json::from_value(serde_json::json!({
            "batteries": [{"name": "BAT0", "health_percent": battery, "charge_percent": 80.0}],
            "temperatures": [{"sensor": "thermal_zone0", "celsius": 45.5}],
            "cpu_usage_percent": 12.5
        }))
        .unwrap();
        self.message(Body::Health(Box::new(h)), Utc::now())
    }

    pub fn seal(&self, m: &Message) -> (String, Vec<u8>) {
        seal(m, &self.key)
    }
}

pub async fn register(store: &Store, devices: &[TestDevice]) {
    for d in devices {
        store
            .upsert_device(&d.enrolment(), Utc::now())
            .await
            .unwrap();
    }
}

/// Publishes every (topic, payload) at QoS 1 on one connection and returns once the
/// broker has acknowledged them all.
pub async fn publish_all(
    port: u16,
    client_id: &str,
    login: Option<(String, String)>,
    frames: Vec<(String, Vec<u8>)>,
) {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    if let Some((user, pass)) = login {
        opts.set_credentials(user, pass);
    }
    opts.set_max_packet_size(4 << 20, 4 << 20);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, frames.len() + 10);
    let total = frames.len();
    for (topic, payload) in frames {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let mut acked = 0;
    let mut refused = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked < total {
        let ev = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("broker acknowledged every publish within 60 s");
        match ev {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            // A broker that has only just started may not listen yet: rumqttc keeps
            // the queued publishes and reconnects on the next poll.
            Err(rumqttc::ConnectionError::Io(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused && refused < 50 =>
            {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publisher {client_id}: {e}"),
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
}

/// Waits until `check` holds, polling every 50 ms, for at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

/// Minimal HTTP/1.0 GET returning (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")).await
}

/// Minimal HTTP/1.0 POST of a JSON body returning (status, body).
pub async fn http_post_json(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    http_post(addr, path, "application/json", body).await
}

/// Minimal HTTP/1.0 POST returning (status, body).
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    http_request(
        addr,
        format!(
            "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

/// Runs each named `async fn(Store)` as a test on SQLite, and on PostgreSQL in the
/// external-service suite.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::support::TestDb::sqlite();
                    super::$name(db.store().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs postgres"]
                async fn $name() {
                    let db = $crate::support::TestDb::postgres().await;
                    super::$name(db.store().await).await;
                }
            )*
        }
    };
}

async fn http_request(addr: SocketAddr, request: String) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}
