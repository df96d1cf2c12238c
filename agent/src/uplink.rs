//! The uplink: the only agent module that knows MQTT. It publishes what the spool holds,
//! oldest first, and removes each record once the broker has acknowledged it; it
//! receives the device's commands.
//!
//! One connection is one session: a fresh rumqttc client and event loop with a clean
//! session, a last will reserved for it (the retained `offline` status, signed with a
//! seq taken from the spool when connecting, since a will is fixed at connect time),
//! then `hello` and the retained `online` status (spooled, sent first), then the
//! backlog. rumqttc 0.25 has no per-publish futures, so PUBACKs are matched by order:
//! each `Outgoing::Publish(pkid)` event belongs to the oldest publish we handed to the
//! client and that has not had one yet; `Incoming::PubAck(pkid)` then acknowledges that
//! spool record. When a connection fails, its client is dropped with whatever it had in
//! flight, and the next session republishes everything still in the spool: duplicates
//! are fine, the server deduplicates on `(device_id, epoch, seq)`.
//!
//! Protocol: MQTT v5 by default (Mosquitto 2, EMQX); v4 (3.1.1) for brokers without v5,
//! such as the server's embedded rumqttd 0.20. Both behave the same here; v5 adds
//! reason codes on PUBACK, which we use to keep a record the broker refused.
//!
//! Shutdown drops the connection without a DISCONNECT packet on purpose: the broker then
//! publishes the will, i.e. our signed, retained `offline` status.
//!
//! It must never delete a record that was not acknowledged with success, never publish
//! a message that is not in the spool (the will aside), never reconnect without
//! backoff, and never let a full rumqttc request channel block its event loop (it only
//! uses `try_*` calls, with a channel larger than the in-flight window).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use parc_protocol::{
    Body, Command, Frame, Hello, Kind, Limits, Presence, Status, device_command_filter,
};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::config::{MqttProtocol, MqttSection};
use crate::outbox::Outbox;
use crate::spool::{Record, Spool, SpoolError};
use crate::state::Enrollment;

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("mqtt.url {0:?}: expected mqtt://host[:port] or mqtts://host[:port]")]
    BadUrl(String),
    #[error("mqtt.ca_file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("no system CA bundle found for mqtts:// (set mqtt.ca_file)")]
    NoSystemRoots,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct UplinkSettings {
    pub host: String,
    pub port: u16,
    /// PEM roots for TLS; `None` for plain TCP.
    pub tls_roots: Option<Vec<u8>>,
    pub protocol: MqttProtocol,
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub keep_alive: Duration,
    pub inflight: u16,
    pub drain_rate_per_second: u32,
    /// Upper bound of the random delay before the first connection.
    pub initial_delay_max: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for UplinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UplinkSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls_roots.is_some())
            .field("protocol", &self.protocol)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// `(tls, host, port)` of an `mqtt://` or `mqtts://` URL.
pub fn parse_mqtt_url(url: &str) -> Result<(bool, String, u16), UplinkError> {
    let bad = || UplinkError::BadUrl(url.to_string());
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h.to_string(), p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (authority.to_string(), if tls { 8883 } else { 1883 }),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(bad());
    }
    Ok((tls, host, port))
}

impl UplinkSettings {
    pub fn from_config(mqtt: &MqttSection, enrollment: &Enrollment) -> Result<Self, UplinkError> {
        let (tls, host, port) = parse_mqtt_url(&mqtt.url)?;
        let tls_roots = if !tls {
            None
        } else if mqtt.ca_file.trim().is_empty() {
            let found = SYSTEM_BUNDLES
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .ok_or(UplinkError::NoSystemRoots)?;
            Some(found)
        } else {
            // The fleet CA is pinned: only certificates it signed are accepted.
            Some(
                std::fs::read(&mqtt.ca_file).map_err(|source| UplinkError::CaFile {
                    path: mqtt.ca_file.clone(),
                    source,
                })?,
            )
        };
        Ok(Self {
            host,
            port,
            tls_roots,
            protocol: mqtt.protocol,
            client_id: enrollment.device_id.to_string(),
            username: enrollment.mqtt_username.clone(),
            password: enrollment.mqtt_password.clone(),
            keep_alive: Duration::from_secs(u64::from(mqtt.keep_alive_seconds)),
            inflight: mqtt.inflight.max(1),
            drain_rate_per_second: mqtt.drain_rate_per_second.max(1),
            initial_delay_max: Duration::from_secs(u64::from(mqtt.initial_delay_max_seconds)),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(u64::from(mqtt.reconnect_max_seconds.max(1))),
            connect_timeout: Duration::from_secs(15),
        })
    }
}

/// What the uplink tells the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum UplinkEvent {
    Connected,
    Disconnected(String),
    /// A command signed with this device's key arrived on its `cmd` topic.
    Command(Command),
}

/// A running uplink's inputs: everything but the shutdown signal.
pub struct Uplink {
    pub settings: UplinkSettings,
    pub outbox: Outbox,
    pub spool: Arc<Spool>,
    /// The `hello` body sent on each connection (intervals may change at run time).
    pub hello: Arc<Mutex<Hello>>,
    /// Notified by the runtime after it spooled something.
    pub wake: Arc<Notify>,
    pub events: mpsc::Sender<UplinkEvent>,
}

/// Uniform random in `[0, 1)`.
fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Spreading reconnections matters more than cryptographic quality here.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        b = u64::from(n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .to_le_bytes();
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Exponential backoff with full jitter: attempt n waits uniformly in
/// `[0, min(max, min·2ⁿ)]`, so that devices cut off together spread their returns.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The ceiling of the next wait (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        self.min.saturating_mul(factor).min(self.max)
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(random_unit())
    }
}

/// Token bucket for the backlog drain.
struct RateLimit {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(per_second: u32, burst: u16) -> Self {
        let burst = f64::from(burst.max(1)).min(f64::from(per_second.max(1)));
        Self {
            per_second: f64::from(per_second.max(1)),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + (now - self.last).as_secs_f64() * self.per_second).min(self.burst);
        self.last = now;
    }

    fn try_take(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.last + Duration::from_secs_f64(missing / self.per_second)
    }
}

/// One event from either client version, reduced to what the uplink needs.
enum Ev {
    ConnAck,
    Published(u16),
    PubAck { pkid: u16, refused: Option<String> },
    Message { topic: String, payload: Vec<u8> },
    Other,
}

enum Conn {
    V4(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    V5(rumqttc::v5::AsyncClient, Box<rumqttc::v5::EventLoop>),
}

struct Will {
    topic: String,
    payload: Vec<u8>,
}

impl Conn {
    fn new(s: &UplinkSettings, will: Option<Will>) -> Self {
        // Larger than the window, so try_publish never finds it full.
        let cap = usize::from(s.inflight) * 2 + 16;
        let tls = s.tls_roots.as_ref().map(|ca| {
            rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
                ca: ca.clone(),
                alpn: None,
                client_auth: None,
            })
        });
        match s.protocol {
            MqttProtocol::V4 => {
                let mut o = rumqttc::MqttOptions::new(&s.client_id, &s.host, s.port);
                o.set_keep_alive(s.keep_alive)
                    .set_clean_session(true)
                    .set_inflight(s.inflight)
                    .set_max_packet_size(64 * 1024, 1024 * 1024);
                if !s.username.is_empty() {
                    o.set_credentials(&s.username, &s.password);
                }
                if let Some(t) = tls {
                    o.set_transport(t);
                }
                if let Some(w) = will {
                    o.set_last_will(rumqttc::LastWill::new(
                        w.topic,
                        w.payload,
                        rumqttc::QoS::AtLeastOnce,
                        true,
                    ));
                }
                let (c, e) = rumqttc::AsyncClient::new(o, cap);
                Conn::V4(c, Box::new(e))
            }
            MqttProtocol::V5 => {
                let mut o = rumqttc::v5::MqttOptions::new(&s.client_id, &s.host, s.port);
                o.set_keep_alive(s.keep_alive)
                    .set_clean_start(true)
                    .set_outgoing_inflight_upper_limit(s.inflight)
                    .set_max_packet_size(Some(64 * 1024));
                if !s.username.is_empty() {
                    o.set_credentials(&s.username, &s.password);
                }
                if let Some(t) = tls {
                    o.set_transport(t);
                }
                if let Some(w) = will {
                    o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                        w.topic,
                        w.payload,
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        true,
                        None,
                    ));
                }
                let (c, e) = rumqttc::v5::AsyncClient::new(o, cap);
                Conn::V5(c, Box::new(e))
            }
        }
    }

    async fn poll(&mut self) -> Result<Ev, String> {
        match self {
            Conn::V4(_, el) => {
                use rumqttc::{Event, Outgoing, Packet};
                match el.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(_)) => Ok(Ev::ConnAck),
                    Event::Incoming(Packet::PubAck(a)) => Ok(Ev::PubAck {
                        pkid: a.pkid,
                        refused: None,
                    }),
                    Event::Incoming(Packet::Publish(p)) => Ok(Ev::Message {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    }),
                    Event::Outgoing(Outgoing::Publish(pkid)) => Ok(Ev::Published(pkid)),
                    _ => Ok(Ev::Other),
                }
            }
            Conn::V5(_, el) => {
                use rumqttc::Outgoing;
                use rumqttc::v5::Event;
                use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
                match el.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(_)) => Ok(Ev::ConnAck),
                    Event::Incoming(Packet::PubAck(a)) => Ok(Ev::PubAck {
                        pkid: a.pkid,
                        refused: match a.reason {
                            PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
                            other => Some(format!("{other:?}")),
                        },
                    }),
                    Event::Incoming(Packet::Publish(p)) => Ok(Ev::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                    }),
                    Event::Outgoing(Outgoing::Publish(pkid)) => Ok(Ev::Published(pkid)),
                    _ => Ok(Ev::Other),
                }
            }
        }
    }

    fn try_publish(&self, topic: &str, retain: bool, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Conn::V4(c, _) => c
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
                .map_err(|e| e.to_string()),
            Conn::V5(c, _) => c
                .try_publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    retain,
                    payload,
                )
                .map_err(|e| e.to_string()),
        }
    }

    fn try_subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Conn::V4(c, _) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Conn::V5(c, _) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }
}

/// Runs `f` on the blocking pool: spool writes fsync.
async fn blocking<T: Send + 'static>(
    spool: &Arc<Spool>,
    f: impl FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, String> {
    let s = spool.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| format!("spool task: {e}"))?
        .map_err(|e| e.to_string())
}

fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

enum SessionEnd {
    Shutdown,
    Failed { connected: bool, reason: String },
}

/// Acks are committed without fsync; this many make one durable commit, which also
/// lets redb reuse the pages they freed.
const FLUSH_EVERY_ACKS: u32 = 256;

impl Uplink {
    /// Connects, publishes and reconnects until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let first = self.settings.initial_delay_max.mul_f64(random_unit());
        if !first.is_zero() {
            tracing::info!(
                delay_ms = first.as_millis() as u64,
                "waiting before connecting"
            );
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(first) => {}
            }
        }
        let mut backoff = Backoff::new(self.settings.backoff_min, self.settings.backoff_max);
        loop {
            let end = self.session(&mut shutdown).await;
            if let Err(e) = self.spool.flush() {
                tracing::warn!(error = %e, "spool flush failed");
            }
            match end {
                SessionEnd::Shutdown => return,
                SessionEnd::Failed { connected, reason } => {
                    if connected {
                        backoff.reset();
                    }
                    let _ = self
                        .events
                        .try_send(UplinkEvent::Disconnected(reason.clone()));
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        %reason,
                        retry_in_ms = delay.as_millis() as u64,
                        "MQTT connection lost or refused"
                    );
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn session(&self, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> SessionEnd {
        let fail = |connected, reason: String| SessionEnd::Failed { connected, reason };
        // The will is fixed at connect time: reserve its seq now.
        let will_seq = match blocking(&self.spool, |s| s.next_seq()).await {
            Ok(s) => s,
            Err(e) => return fail(false, e),
        };
        let (topic, payload) = self.outbox.seal_now(
            Body::Status(Status {
                state: Presence::Offline,
            }),
            will_seq,
            Utc::now(),
        );
        let mut conn = Conn::new(&self.settings, Some(Will { topic, payload }));

        // Connect.
        let connect = async {
            loop {
                match conn.poll().await {
                    Ok(Ev::ConnAck) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        };
        tokio::select! {
            _ = &mut *shutdown => return SessionEnd::Shutdown,
            r = tokio::time::timeout(self.settings.connect_timeout, connect) => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return fail(false, e),
                Err(_) => return fail(false, "connect timed out".into()),
            }
        }
        tracing::info!(host = %self.settings.host, port = self.settings.port, "connected to the broker");
        let _ = self.events.try_send(UplinkEvent::Connected);
        let cmd_filter = device_command_filter(&self.outbox.device_id);
        if let Err(e) = conn.try_subscribe(&cmd_filter) {
            return fail(true, e);
        }

        // hello and online go first: the server learns who we are before the backlog.
        let hello = self
            .hello
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let ob = self.outbox.clone();
        let first = blocking(&self.spool, move |s| {
            let now = Utc::now();
            let h = ob.push(s, Body::Hello(hello), now)?;
            let st = ob.push(
                s,
                Body::Status(Status {
                    state: Presence::Online,
                }),
                now,
            )?;
            Ok(vec![h.id, st.id])
        })
        .await;
        let first = match first {
            Ok(ids) => ids,
            Err(e) => return fail(true, e),
        };
        let skip: HashSet<u64> = first.iter().copied().collect();
        let mut queue: VecDeque<Record> = match self.spool.pending_after(Some(first[0] - 1), 16) {
            Ok(v) => v.into_iter().filter(|r| skip.contains(&r.id)).collect(),
            Err(e) => return fail(true, e.to_string()),
        };

        let window = usize::from(self.settings.inflight);
        let mut rate = RateLimit::new(self.settings.drain_rate_per_second, self.settings.inflight);
        let mut cursor: Option<u64> = None;
        let mut exhausted = false;
        let mut awaiting_pkid: VecDeque<u64> = VecDeque::new();
        let mut inflight: HashMap<u16, u64> = HashMap::new();
        let mut acks_since_flush = 0u32;
        let limits = Limits::default();

        loop {
            // Fill the window.
            let mut waiting_for_token = false;
            while awaiting_pkid.len() + inflight.len() < window {
                if queue.is_empty() && !exhausted {
                    match self.spool.pending_after(cursor, window * 2) {
                        Ok(v) => {
                            if let Some(last) = v.last() {
                                cursor = Some(last.id);
                            }
                            exhausted = v.is_empty();
                            queue.extend(v.into_iter().filter(|r| !skip.contains(&r.id)));
                        }
                        Err(e) => return fail(true, e.to_string()),
                    }
                }
                if queue.is_empty() {
                    break;
                }
                if !rate.try_take() {
                    waiting_for_token = true;
                    break;
                }
                let Some(rec) = queue.pop_front() else { break };
                let payload = self.outbox.frame(&rec, Utc::now());
                if let Err(e) = conn.try_publish(&rec.topic, rec.kind.retained(), payload) {
                    return fail(true, e);
                }
                awaiting_pkid.push_back(rec.id);
            }

            let token_at = rate.next_at();
            tokio::select! {
                biased;
                _ = &mut *shutdown => return SessionEnd::Shutdown,
                ev = conn.poll() => match ev {
                    Err(e) => return fail(true, e),
                    Ok(Ev::Published(pkid)) => {
                        if let Some(id) = awaiting_pkid.pop_front() {
                            inflight.insert(pkid, id);
                        }
                    }
                    Ok(Ev::PubAck { pkid, refused }) => {
                        if let Some(id) = inflight.remove(&pkid) {
                            match refused {
                                None => {
                                    if let Err(e) = self.spool.ack(&[id], now_ms()) {
                                        return fail(true, e.to_string());
                                    }
                                    acks_since_flush += 1;
                                    if acks_since_flush >= FLUSH_EVERY_ACKS {
                                        acks_since_flush = 0;
                                        if let Err(e) = blocking(&self.spool, |s| s.flush()).await {
                                            return fail(true, e);
                                        }
                                    }
                                }
                                // Kept: it is retried on the next connection.
                                Some(reason) => tracing::warn!(id, %reason, "broker refused a message"),
                            }
                        }
                    }
                    Ok(Ev::Message { topic, payload }) => {
                        self.on_command(&topic, &payload, &limits);
                    }
                    Ok(Ev::ConnAck | Ev::Other) => {}
                },
                _ = self.wake.notified(), if exhausted && queue.is_empty() => {
                    exhausted = false;
                }
                _ = tokio::time::sleep_until(token_at), if waiting_for_token => {}
            }
        }
    }

    fn on_command(&self, topic: &str, payload: &[u8], limits: &Limits) {
        let opened = Frame::parse(topic, payload, limits).and_then(|f| {
            if f.device_id() != &self.outbox.device_id || f.kind() != Kind::Cmd {
                return Err(parc_protocol::DecodeError::Topic {
                    topic: topic.chars().take(200).collect(),
                    problem: "not this device's cmd topic".into(),
                });
            }
            f.open(&self.outbox.key, Utc::now(), limits)
        });
        match opened {
            Ok(m) => match m.body {
                Body::Cmd(c) => {
                    tracing::info!(command = ?c, "command received");
                    if self.events.try_send(UplinkEvent::Command(c)).is_err() {
                        tracing::warn!("command dropped: the runtime is not keeping up");
                    }
                }
                other => {
                    tracing::warn!(kind = %other.kind(), "non-command message on the cmd topic")
                }
            },
            Err(e) => tracing::warn!(reason = e.reason(), error = %e, "refused a command"),
        }
    }
}

/// Tries one MQTT connection without a will and without publishing (`parc-agent
/// status`); the client id is suffixed so that it does not take over the daemon's
/// session. Returns the time the CONNACK took.
pub async fn probe(settings: &UplinkSettings) -> Result<Duration, String> {
    let mut s = settings.clone();
    s.client_id = format!("{}-probe", s.client_id);
    let mut conn = Conn::new(&s, None);
    let start = Instant::now();
    let r = tokio::time::timeout(s.connect_timeout, async {
        loop {
            if let Ev::ConnAck = conn.poll().await? {
                return Ok::<(), String>(());
            }
        }
    })
    .await;
    match r {
        Ok(Ok(())) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("connect timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_mqtt_url("mqtts://broker.example.org").unwrap(),
            (true, "broker.example.org".into(), 8883)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://127.0.0.1:1884").unwrap(),
            (false, "127.0.0.1".into(), 1884)
        );
        assert!(parse_mqtt_url("http://x").is_err());
        assert!(parse_mqtt_url("mqtt://:1883").is_err());
    }

    #[test]
    fn backoff_grows_to_its_cap_with_full_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            ceilings.push(b.ceiling().as_secs());
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(300));
        }
        assert_eq!(&ceilings[..4], &[1, 2, 4, 8]);
        assert_eq!(*ceilings.last().unwrap(), 300);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }
}
