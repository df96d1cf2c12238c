//! Test helpers: an own Mosquitto per test (restartable on the same port, with
//! persistence so that a subscriber's session and queue survive a graceful restart),
//! a subscriber that decodes and verifies every frame, and enrolment state on disk.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use parc_agent::config::AgentConfig;
use parc_agent::state::{Enrollment, StateDir};
use parc_protocol::{DeviceId, DeviceKey, Frame, Kind, Limits, Message};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn mosquitto_bin() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("mosquitto is installed (.ci/run installs it)")
}

/// A Mosquitto process of the test's own.
pub struct Mosquitto {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\n\
                 persistence true\npersistence_location {}/\n\
                 max_inflight_messages 0\nmax_queued_messages 0\nlog_dest none\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut m = Self {
            port,
            child: None,
            dir,
        };
        m.restart();
        m
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops gracefully (SIGTERM: the persistence file is written).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), libc::SIGTERM);
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        #[allow(clippy::zombie_processes)] // waited for in stop()/Drop
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("mosquitto did not listen on {}", self.port);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn unsafe_kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process id we own; no memory is involved.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A device identity written as enrolment state.
pub struct TestDevice {
    pub id: DeviceId,
    pub key: DeviceKey,
}

impl TestDevice {
    pub fn new(name: &str, n: u8) -> Self {
        Self {
            id: DeviceId::parse(name).unwrap(),
            key: DeviceKey::from_bytes([n; 32]),
        }
    }

    pub fn write_state(&self, state_dir: &Path) {
        StateDir::new(state_dir)
            .save_enrollment(&Enrollment {
                device_id: self.id.clone(),
                device_key: self.key.to_base64(),
                mqtt_username: String::new(),
                mqtt_password: String::new(),
                server_url: "http://127.0.0.1:1".into(),
            })
            .unwrap();
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Agent configuration text for tests: no start delay, fast reconnection.
pub fn config_text(mqtt_url: &str, state_dir: &Path, extra_mqtt: &str) -> String {
    format!(
        "[mqtt]\nurl = \"{mqtt_url}\"\ninitial_delay_max_seconds = 0\nreconnect_max_seconds = 1\n\
         {}{extra_mqtt}\n\
         [collect]\nroot = \"{}\"\nsmartctl = \"\"\n\
         [state]\ndir = \"{}\"\n",
        if extra_mqtt.contains("drain_rate_per_second") {
            ""
        } else {
            "drain_rate_per_second = 1000\n"
        },
        fixture("laptop").display(),
        state_dir.display()
    )
}

pub fn config(mqtt_url: &str, state_dir: &Path, extra_mqtt: &str) -> AgentConfig {
    AgentConfig::parse(&config_text(mqtt_url, state_dir, extra_mqtt)).unwrap()
}

/// Everything a subscriber received, verified with the device key.
#[derive(Default)]
pub struct Received {
    pub by_seq: BTreeMap<u64, Vec<Message>>,
    pub refused: Vec<String>,
}

impl Received {
    pub fn kinds(&self) -> Vec<Kind> {
        self.by_seq
            .values()
            .flat_map(|v| v.iter().map(|m| m.kind()))
            .collect()
    }
}

/// Subscribes to every Parc topic with a persistent session and records what arrives.
pub fn subscribe(port: u16, key: DeviceKey) -> Arc<Mutex<Received>> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let received = Arc::new(Mutex::new(Received::default()));
    let out = received.clone();
    let mut opts = MqttOptions::new(format!("sub-{}", free_port()), "127.0.0.1", port);
    opts.set_clean_session(false)
        .set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut el) = AsyncClient::new(opts, 100);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    tokio::spawn(async move {
        let limits = Limits::default();
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe("parc/v1/#", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let opened = Frame::parse(&p.topic, &p.payload, &limits)
                        .and_then(|f| f.open(&key, Utc::now(), &limits));
                    let mut r = received.lock().unwrap();
                    match opened {
                        Ok(m) => r.by_seq.entry(m.header.seq).or_default().push(m),
                        Err(e) => r.refused.push(format!("{}: {e}", p.topic)),
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscriber subscribed");
    out
}

pub async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {secs} s waiting for: {what}");
}
