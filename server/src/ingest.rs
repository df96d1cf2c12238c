//! Ingestion: takes MQTT publishes from the broker, authenticates each frame with the
//! key of the device its topic names, decodes and validates it with the protocol crate,
//! and records what was accepted and why anything was refused.
//!
//! With `broker` and the demo fleet, the only server code that knows MQTT. It must never
//! trust a message before its HMAC has been checked, never stop on bad input, and never
//! let a bad message affect its neighbours. Storage is in memory for now (the storage
//! issue replaces `Stats` with the SQL store, keeping this flow).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use parc_protocol::{Body, DecodeError, DeviceId, DeviceKey, Frame, Limits, Message, Presence};
use rumqttd::Notification;
use rumqttd::local::{LinkRx, LinkTx};
use serde::Serialize;

/// Why a publish was refused: a protocol reason, or a device the server does not know.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("device {0} is not enrolled (or its key was revoked)")]
    UnknownDevice(String),
}

impl Rejection {
    /// Stable label for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Decode(e) => e.reason(),
            Rejection::UnknownDevice(_) => "unknown_device",
        }
    }
}

/// Keys of enrolled devices.
#[derive(Default)]
pub struct Registry {
    keys: RwLock<HashMap<DeviceId, DeviceKey>>,
}

impl Registry {
    pub fn insert(&self, device: DeviceId, key: DeviceKey) {
        self.keys
            .write()
            .expect("registry lock")
            .insert(device, key);
    }

    pub fn key(&self, device: &DeviceId) -> Option<DeviceKey> {
        self.keys
            .read()
            .expect("registry lock")
            .get(device)
            .cloned()
    }
}

/// Authenticates, decodes and validates one publish. Pure apart from the key lookup.
pub fn accept(
    topic: &str,
    payload: &[u8],
    registry: &Registry,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Message, Rejection> {
    let frame = Frame::parse(topic, payload, limits)?;
    let key = registry
        .key(frame.device_id())
        .ok_or_else(|| Rejection::UnknownDevice(frame.device_id().to_string()))?;
    Ok(frame.open(&key, now, limits)?)
}

/// What the server has seen of one device.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceSummary {
    pub device_id: String,
    pub last_seen: Option<DateTime<Utc>>,
    pub online: Option<bool>,
    pub hostname: Option<String>,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub battery_health_percent: Option<f64>,
    pub messages: u64,
}

/// Counters and per-device summaries.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub received: u64,
    pub accepted: BTreeMap<&'static str, u64>,
    pub rejected: BTreeMap<&'static str, u64>,
    pub devices: BTreeMap<String, DeviceSummary>,
}

impl Stats {
    pub fn record(&mut self, result: &Result<Message, Rejection>) {
        self.received += 1;
        match result {
            Err(r) => *self.rejected.entry(r.reason()).or_default() += 1,
            Ok(m) => {
                *self.accepted.entry(m.kind().as_str()).or_default() += 1;
                let id = m.header.device_id.to_string();
                let d = self
                    .devices
                    .entry(id.clone())
                    .or_insert_with(|| DeviceSummary {
                        device_id: id,
                        ..Default::default()
                    });
                d.messages += 1;
                d.last_seen = d.last_seen.max(Some(m.header.collected_at));
                match &m.body {
                    Body::Status(s) => d.online = Some(s.state == Presence::Online),
                    Body::Inventory(inv) => {
                        d.hostname = inv.os.hostname.clone();
                        d.serial = inv.identity.system_serial.clone();
                        d.model = inv.identity.product_name.clone();
                    }
                    Body::Health(h) => {
                        d.battery_health_percent = h
                            .batteries
                            .iter()
                            .filter_map(|b| b.health_percent)
                            .reduce(f64::min)
                            .or(d.battery_health_percent);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Subscribes the in-process link to every device→server topic and ingests until
/// `shutdown` resolves.
pub async fn run_link(
    mut tx: LinkTx,
    mut rx: LinkRx,
    registry: Arc<Registry>,
    stats: Arc<Mutex<Stats>>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), rumqttd::local::LinkError> {
    for filter in parc_protocol::server_filters(None) {
        tx.subscribe(filter)?;
    }
    tokio::pin!(shutdown);
    loop {
        let notification = tokio::select! {
            () = &mut shutdown => return Ok(()),
            n = rx.next() => n?,
        };
        let Some(Notification::Forward(forward)) = notification else {
            continue;
        };
        let topic = String::from_utf8_lossy(&forward.publish.topic).into_owned();
        let result = accept(
            &topic,
            &forward.publish.payload,
            &registry,
            Utc::now(),
            &limits,
        );
        if let Err(r) = &result {
            tracing::warn!(topic = %topic, reason = r.reason(), error = %r, "rejected");
        }
        stats.lock().expect("stats lock").record(&result);
    }
}
