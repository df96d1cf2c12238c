//! Ingestion: the only server module that knows MQTT (with `broker` and the demo
//! fleet). It reads publishes from the embedded broker's in-process link or from an
//! external broker (rumqttc, persistent session, manual acks), authenticates each
//! frame with the key of the device its topic names, decodes and validates it with
//! the protocol crate, and hands it to a writer task that commits in batches. From an
//! external broker, decoding runs on several tasks at once, in chunks whose order is
//! kept ([`Decoders`]).
//!
//! Invariants: a message is acknowledged to the broker only after the batch holding
//! it is committed, so a crash loses nothing (the broker redelivers, the store
//! dedups); nothing is trusted before its HMAC is checked; bad input is quarantined
//! and never stops the loop or affects its neighbours; queues are bounded, so a slow
//! database slows reading from the broker instead of growing memory. With several
//! writers (`ingest.writers`), a device's messages always go to the same one (two
//! transactions never touch one device's rows) and acknowledgements still leave in
//! the order the messages arrived.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::FutureExt as _;
use parc_protocol::{DecodeError, DeviceId, DeviceKey, Frame, Limits, Message};
use rumqttc::Transport;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttd::Notification;
use rumqttd::local::{LinkRx, LinkTx};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::{Item, Quarantined, Store, StoreError};

/// Why a publish was refused: a protocol reason, or a device the server does not know.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("device {0} is not enrolled (or it was revoked)")]
    UnknownDevice(String),
}

impl Rejection {
    /// Stable label for counters and the quarantine.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Decode(e) => e.reason(),
            Rejection::UnknownDevice(_) => "unknown_device",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("embedded broker link: {0}")]
    Link(String),
    #[error("MQTT broker: {0}")]
    Mqtt(String),
    #[error("reading {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Device keys, cached for `ttl` in front of the store so that each message does not
/// cost a query. A revocation reaches every replica within `ttl`.
pub struct KeyCache {
    store: Store,
    ttl: Duration,
    map: std::sync::Mutex<HashMap<String, (Option<DeviceKey>, Instant)>>,
}

impl KeyCache {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            map: Default::default(),
        }
    }

    pub async fn key(&self, device: &DeviceId) -> Result<Option<DeviceKey>, StoreError> {
        if let Some((key, at)) = self.lock().get(device.as_str())
            && at.elapsed() < self.ttl
        {
            return Ok(key.clone());
        }
        let key = self.store.device_key(device).await?;
        let mut map = self.lock();
        if map.len() > 200_000 {
            // Forged ids must not grow the cache without bound.
            map.clear();
        }
        map.insert(device.as_str().to_string(), (key.clone(), Instant::now()));
        Ok(key)
    }

    /// Forgets a device at once (after enrolment or revocation on this replica).
    pub fn invalidate(&self, device: &DeviceId) {
        self.lock().remove(device.as_str());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<DeviceKey>, Instant)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Authenticates, decodes and validates one publish.
pub async fn accept(
    topic: &str,
    payload: &[u8],
    keys: &KeyCache,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Result<Message, Rejection>, StoreError> {
    let frame = match Frame::parse(topic, payload, limits) {
        Ok(f) => f,
        Err(e) => return Ok(Err(e.into())),
    };
    let Some(key) = keys.key(frame.device_id()).await? else {
        return Ok(Err(Rejection::UnknownDevice(frame.device_id().to_string())));
    };
    Ok(frame.open(&key, now, limits).map_err(Rejection::from))
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub limits: Limits,
    pub batch_max_messages: usize,
    pub batch_max_wait: Duration,
    pub queue_capacity: usize,
    /// Messages collected longer ago than this are acknowledged but not stored.
    pub raw_retention: Duration,
    /// Batches committed at once (see [`writers_for`]).
    pub writers: usize,
}

/// Writers for a configured count on an engine: 0 picks one on SQLite, whose single
/// write lock would only make a second writer poll for it, and two on PostgreSQL, where
/// a commit waits on round trips and a second batch can use the other core meanwhile.
pub fn writers_for(configured: usize, engine: crate::store::Engine) -> usize {
    match (configured, engine) {
        (0, crate::store::Engine::Sqlite) => 1,
        (0, crate::store::Engine::Postgres) => 2,
        (n, _) => n,
    }
}

impl IngestOptions {
    pub fn from_config(cfg: &crate::config::ServerConfig) -> Self {
        Self {
            limits: Limits {
                max_payload_bytes: cfg.mqtt.max_payload_bytes,
                ..Limits::default()
            },
            batch_max_messages: cfg.ingest.batch_max_messages,
            batch_max_wait: Duration::from_millis(cfg.ingest.batch_max_wait_ms),
            queue_capacity: cfg.ingest.queue_capacity,
            raw_retention: cfg.retention().raw,
            writers: cfg.ingest.writers,
        }
    }
}

/// State shared by the reader, the writer and the HTTP handlers.
pub struct Ingest {
    pub store: Store,
    pub keys: KeyCache,
    pub metrics: Arc<Metrics>,
    pub options: IngestOptions,
    /// The source is subscribed (embedded link up, or connected to the broker).
    pub connected: AtomicBool,
    /// The last commit succeeded.
    pub writer_ok: AtomicBool,
    /// Woken after a commit that queued health samples for the rules.
    pub rules_wakeup: Arc<tokio::sync::Notify>,
}

impl Ingest {
    pub fn new(store: Store, metrics: Arc<Metrics>, options: IngestOptions) -> Self {
        Self {
            keys: KeyCache::new(store.clone(), Duration::from_secs(30)),
            store,
            metrics,
            options,
            connected: AtomicBool::new(false),
            writer_ok: AtomicBool::new(true),
            rules_wakeup: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

/// How to acknowledge a message once committed: its packet id and QoS, nothing of the
/// publish itself. Holding the publish until the commit (a few hundred ms) kept its
/// topic, and with it the client's read buffer it points into, alive meanwhile, and made
/// each queued message about 350 bytes instead of 40.
struct Ack {
    pkid: u16,
    qos: QoS,
    /// Connection it arrived on: after a reconnect the broker redelivers unacked
    /// messages itself, and an ack for an old packet id could hit a newer message.
    generation: u64,
}

impl Ack {
    /// What `AsyncClient::ack` reads of a publish: its QoS and packet id.
    fn publish(&self) -> rumqttc::v5::mqttbytes::v5::Publish {
        rumqttc::v5::mqttbytes::v5::Publish {
            qos: self.qos,
            pkid: self.pkid,
            ..Default::default()
        }
    }
}

/// A committed batch's acknowledgements, each with its message's arrival number.
type BatchAcks = Vec<(u64, Option<Ack>)>;

struct Pending {
    item: Item,
    ack: Option<Ack>,
    /// Arrival order, for acknowledging in that order.
    seq: u64,
}

/// Where the reader hands decoded messages to the writers: one bounded queue per writer,
/// chosen by device, and the acknowledgements put back in arrival order.
struct Lanes {
    queues: Vec<mpsc::Sender<Pending>>,
    next_seq: u64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl Lanes {
    fn start(ingest: &Arc<Ingest>, acker: Option<Acker>, shutdown: &Shutdown) -> Self {
        let n = writers_for(ingest.options.writers, ingest.store.engine()).max(1);
        let per_lane = (ingest.options.queue_capacity / n).max(ingest.options.batch_max_messages);
        let mut tasks = Vec::new();
        let acks = acker.map(|acker| {
            let (tx, rx) = mpsc::unbounded_channel();
            tasks.push(tokio::spawn(acknowledge_in_order(acker, rx)));
            tx
        });
        let mut queues = Vec::new();
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(per_lane);
            queues.push(tx);
            tasks.push(tokio::spawn(writer(
                ingest.clone(),
                rx,
                acks.clone(),
                shutdown.clone(),
            )));
        }
        Self {
            queues,
            next_seq: 0,
            tasks,
            metrics: ingest.metrics.clone(),
        }
    }

    /// Queues one message (waiting while its writer's queue is full); false once the
    /// writers have stopped.
    async fn send(&mut self, item: Item, ack: Option<Ack>) -> bool {
        let lane = match &item {
            Item::Accepted(a) => lane_of(a.message.header.device_id.as_str(), self.queues.len()),
            Item::Rejected(q) => lane_of(&q.topic, self.queues.len()),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        // Counted up here and down by the writer that takes it (`queue_depth`: what all
        // queues hold) and commits it (`uncommitted`, which the rules yield to).
        self.metrics.queue_depth.inc();
        self.metrics.uncommitted.inc();
        let sent = self.queues[lane]
            .send(Pending { item, ack, seq })
            .await
            .is_ok();
        if !sent {
            self.metrics.queue_depth.dec();
            self.metrics.uncommitted.dec();
        }
        sent
    }

    /// Closes the queues and waits for the writers to commit what they hold and for the
    /// last acknowledgements to be handed to the client.
    async fn close(self) {
        drop(self.queues);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn lane_of(key: &str, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    // FNV-1a: stable, and good enough to spread device ids.
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % lanes as u64) as usize
}

/// Puts acknowledgements back in arrival order: what `push` returns may be sent now.
#[derive(Debug)]
struct InOrder<T> {
    waiting: std::collections::BTreeMap<u64, Option<T>>,
    next: u64,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        Self {
            waiting: Default::default(),
            next: 0,
        }
    }
}

impl<T> InOrder<T> {
    /// Takes a committed batch's `(seq, ack)` pairs (`None`: nothing to acknowledge, as
    /// from the embedded link); returns the acks whose predecessors are all committed.
    fn push(&mut self, batch: Vec<(u64, Option<T>)>) -> Vec<T> {
        // A single writer (SQLite) commits batches in arrival order: those pass straight
        // through, without a map entry per message.
        let next = self.next;
        if self.waiting.is_empty() && batch.iter().zip(next..).all(|((seq, _), n)| *seq == n) {
            self.next += batch.len() as u64;
            return batch.into_iter().filter_map(|(_, ack)| ack).collect();
        }
        self.waiting.extend(batch);
        let mut out = Vec::new();
        while let Some(ack) = self.waiting.remove(&self.next) {
            self.next += 1;
            out.extend(ack);
        }
        out
    }
}

/// Sends the writers' acknowledgements in arrival order: MQTT wants a subscriber's
/// PUBACKs in the order of the PUBLISHes, and a later batch of another writer may
/// commit first. A message never committed (a failed batch at shutdown) holds back the
/// acks after it; the broker redelivers them all at the next start.
async fn acknowledge_in_order(acker: Acker, mut rx: mpsc::UnboundedReceiver<BatchAcks>) {
    let mut order = InOrder::default();
    while let Some(batch) = rx.recv().await {
        for ack in order.push(batch) {
            if ack.generation == acker.generation.load(Ordering::Acquire)
                && let Err(e) = acker.client.ack(&ack.publish()).await
            {
                tracing::warn!(error = %e, "acknowledging to the broker failed; it will redeliver");
            }
        }
    }
}

/// The external-broker client the writer acknowledges through.
struct Acker {
    client: AsyncClient,
    generation: Arc<AtomicU64>,
}

/// Decodes one publish into a pending item; only a store failure (key lookup) is an
/// error, and then the message is left unacknowledged for redelivery.
async fn prepare(ingest: &Ingest, topic: &str, payload: &[u8]) -> Result<Item, StoreError> {
    ingest.metrics.received.inc();
    let now = Utc::now();
    Ok(
        match accept(topic, payload, &ingest.keys, now, &ingest.options.limits).await? {
            Ok(m) => Item::accepted(m),
            Err(r) => {
                tracing::warn!(topic = %topic.chars().take(128).collect::<String>(), reason = r.reason(), error = %r, "publish refused");
                Item::Rejected(Box::new(Quarantined::new(
                    now,
                    topic,
                    payload,
                    r.reason(),
                    r.to_string(),
                )))
            }
        },
    )
}

/// Commits batches until the queue closes; acknowledges each batch after its commit.
async fn writer(
    ingest: Arc<Ingest>,
    mut rx: mpsc::Receiver<Pending>,
    acks_out: Option<mpsc::UnboundedSender<BatchAcks>>,
    shutdown: Shutdown,
) {
    let opts = ingest.options.clone();
    let m = &ingest.metrics;
    let max = opts.batch_max_messages.max(1);
    // Kept from batch to batch: allocated anew, these (hundreds of KiB) came back from
    // the allocator as fresh pages that the kernel zeroed on first touch, every batch.
    let mut batch = Vec::with_capacity(max);
    let mut items: Vec<Item> = Vec::with_capacity(max);
    loop {
        // `recv_many` takes whatever is queued in one call. With one `recv` per message
        // the task yielded every 128 messages (tokio's cooperative budget): a full batch
        // took 10–30 ms to gather with the queue full (measured in ingest_bench).
        if rx.recv_many(&mut batch, max).await == 0 {
            break; // closed and empty
        }
        let deadline = tokio::time::Instant::now() + opts.batch_max_wait;
        while batch.len() < max {
            let room = max - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        m.queue_depth.dec_by(batch.len() as i64);
        let mut acks: BatchAcks = Vec::with_capacity(batch.len());
        for p in batch.drain(..) {
            items.push(p.item);
            acks.push((p.seq, p.ack));
        }
        let mut backoff = Duration::from_millis(200);
        let outcome = loop {
            let started = Instant::now();
            let now = Utc::now();
            let stale_before = now
                - chrono::Duration::from_std(opts.raw_retention).unwrap_or(chrono::Duration::MAX);
            match ingest.store.write_batch(&items, now, stale_before).await {
                Ok(o) => {
                    m.commit_seconds.observe(started.elapsed().as_secs_f64());
                    ingest.writer_ok.store(true, Ordering::Relaxed);
                    break Some(o);
                }
                Err(e) => {
                    m.commit_failures.inc();
                    ingest.writer_ok.store(false, Ordering::Relaxed);
                    tracing::error!(error = %e, messages = items.len(), "batch commit failed; retrying");
                    if shutdown.is_fired() {
                        // Unacknowledged: the broker keeps them for the next start.
                        break None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        };
        // Committed, or abandoned at shutdown for the broker to redeliver.
        let committed = items.len();
        items.clear();
        m.uncommitted.dec_by(committed as i64);
        let Some(outcome) = outcome else { continue };
        tracing::debug!(messages = committed, queued = rx.len(), "batch committed");
        m.batch_size.observe(committed as f64);
        for (kind, n) in &outcome.stored {
            m.stored
                .get_or_create(&Metrics::label("kind", kind))
                .inc_by(*n);
        }
        for (reason, n) in &outcome.quarantined {
            m.rejected
                .get_or_create(&Metrics::label("reason", reason))
                .inc_by(*n);
        }
        if outcome.health_queued > 0 {
            ingest.rules_wakeup.notify_one();
        }
        m.duplicates.inc_by(outcome.duplicates);
        m.stale.inc_by(outcome.stale);
        if outcome.presence_changed
            && let Ok(n) = ingest.store.devices_online().await
        {
            m.devices_online.set(n);
        }
        if let Some(out) = &acks_out {
            tracing::debug!(acks = acks.len(), "acknowledging");
            let _ = out.send(acks);
        }
    }
}

/// Ingests from the embedded broker's in-process link until `shutdown`.
pub async fn run_embedded(
    ingest: Arc<Ingest>,
    mut tx: LinkTx,
    mut rx: LinkRx,
    shutdown: Shutdown,
) -> Result<(), IngestError> {
    let filters = parc_protocol::server_filters(None);
    for filter in &filters {
        tx.subscribe(filter.clone())
            .map_err(|e| IngestError::Link(e.to_string()))?;
    }
    // Subscribed once the router acknowledged every filter: a device publishing before
    // that would reach nobody, so readiness waits for the acks.
    let mut unacked = filters.len();
    let mut lanes = Lanes::start(&ingest, None, &shutdown);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let result = loop {
        let notification = tokio::select! {
            () = &mut stop => break Ok(()),
            n = rx.next() => match n {
                Ok(n) => n,
                Err(e) => break Err(IngestError::Link(e.to_string())),
            },
        };
        let forward = match notification {
            Some(Notification::Forward(forward)) => forward,
            // The router stopped feeding this link (its buffer filled up): say it is
            // ready again, or the rest of the data stays in the broker's log.
            Some(Notification::Unschedule) => {
                if let Err(e) = rx.wake().await {
                    break Err(IngestError::Link(e.to_string()));
                }
                continue;
            }
            Some(Notification::DeviceAck(_)) if unacked > 0 => {
                unacked -= 1;
                if unacked == 0 {
                    ingest.connected.store(true, Ordering::Relaxed);
                    ingest.metrics.mqtt_connected.set(1);
                }
                continue;
            }
            _ => continue,
        };
        let topic = String::from_utf8_lossy(&forward.publish.topic).into_owned();
        let item = loop {
            match prepare(&ingest, &topic, &forward.publish.payload).await {
                Ok(item) => break item,
                Err(e) => {
                    // The link has no redelivery: wait for the database rather than drop.
                    tracing::error!(error = %e, "device key lookup failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        if !lanes.send(item, None).await {
            break Ok(());
        }
    };
    ingest.connected.store(false, Ordering::Relaxed);
    ingest.metrics.mqtt_connected.set(0);
    lanes.close().await;
    result
}

/// An external broker address: `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(format!("`{url}` must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}` in `{url}` is not a port number"))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("`{url}` has no host name"));
        }
        Ok(Self {
            tls,
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        })
    }
}

/// Connection settings for an external broker.
#[derive(Debug, Clone)]
pub struct ExternalMqtt {
    pub url: BrokerUrl,
    pub client_id: String,
    pub shared_group: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<std::path::PathBuf>,
}

/// Acknowledgements written per flush to an external broker, beyond the first.
const ACK_BATCH: usize = 1000;

/// Publishes decoded by one task (see [`Decoders`]).
const DECODE_CHUNK: usize = 64;
/// Chunks being decoded or waiting to be queued, at most.
const DECODE_CHUNKS_IN_FLIGHT: usize = 16;

/// A publish as read from the broker, not yet decoded.
struct Raw {
    topic: Bytes,
    payload: Bytes,
    ack: Ack,
}

type Decoded = Vec<(Result<Item, StoreError>, Ack)>;

/// Decodes publishes on every worker thread at once, keeping their arrival order: the
/// reader hands over chunks of what the broker already sent, each chunk is decoded by
/// a task of its own, and one forwarder queues the results for the writers in the order
/// the chunks were read. Decoding (HMAC, JSON, the stored form of a health report) is
/// most of the reader's work; done on the reader's task it was the pipeline's slowest
/// serial step.
struct Decoders {
    ingest: Arc<Ingest>,
    chunk: Vec<Raw>,
    order: mpsc::Sender<tokio::task::JoinHandle<Decoded>>,
}

impl Decoders {
    /// Starts the forwarder, which owns the writers' queues: when the returned stage is
    /// dropped, the forwarder queues what was already handed over, closes the queues,
    /// waits for the writers, then fires `done`.
    fn start(ingest: Arc<Ingest>, lanes: Lanes, done: oneshot::Sender<()>) -> Self {
        let (order, rx) = mpsc::channel(DECODE_CHUNKS_IN_FLIGHT);
        tokio::spawn(forward_decoded(rx, lanes, done));
        Self {
            ingest,
            chunk: Vec::with_capacity(DECODE_CHUNK),
            order,
        }
    }

    /// Adds a publish; hands the chunk over once full. False once the writers stopped.
    async fn push(&mut self, raw: Raw) -> bool {
        self.chunk.push(raw);
        self.chunk.len() < DECODE_CHUNK || self.flush().await
    }

    /// Hands the chunk over (waiting while too many are in flight); false once the
    /// writers stopped.
    async fn flush(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(DECODE_CHUNK));
        let ingest = self.ingest.clone();
        let task = tokio::spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for raw in chunk {
                let topic = String::from_utf8_lossy(&raw.topic);
                out.push((prepare(&ingest, &topic, &raw.payload).await, raw.ack));
            }
            out
        });
        self.order.send(task).await.is_ok()
    }
}

/// Queues decoded chunks for the writers in the order they were read.
async fn forward_decoded(
    mut order: mpsc::Receiver<tokio::task::JoinHandle<Decoded>>,
    mut lanes: Lanes,
    done: oneshot::Sender<()>,
) {
    'chunks: while let Some(task) = order.recv().await {
        let decoded = match task.await {
            Ok(decoded) => decoded,
            Err(e) => {
                // Left unacknowledged: redelivered after the next reconnect.
                tracing::error!(error = %e, "decoding a chunk of messages failed");
                continue;
            }
        };
        for (item, ack) in decoded {
            match item {
                Ok(item) => {
                    if !lanes.send(item, Some(ack)).await {
                        break 'chunks;
                    }
                }
                Err(e) => {
                    // Left unacknowledged: redelivered after the next reconnect.
                    tracing::error!(error = %e, "device key lookup failed; message left for redelivery");
                }
            }
        }
    }
    lanes.close().await;
    let _ = done.send(());
}

/// Ingests from an external broker until `shutdown`, reconnecting with backoff.
///
/// MQTT v5, for two of its features: the session is persistent (clean start off, a
/// week's session expiry) and subscriptions are QoS 1, so messages published while the
/// server is down or not yet acknowledged are redelivered; and the Receive Maximum
/// makes the broker stop sending once that many messages await our ack. That bound
/// is what keeps the pipeline from jamming: rumqttc sends our acks only between
/// incoming packets, so a broker allowed to stream without limit (Mosquitto's
/// `max_inflight_messages 0`) would starve them while the queue fills.
pub async fn run_external(
    ingest: Arc<Ingest>,
    mqtt: ExternalMqtt,
    shutdown: Shutdown,
) -> Result<(), IngestError> {
    let mut opts = MqttOptions::new(mqtt.client_id.clone(), mqtt.url.host.clone(), mqtt.url.port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(7 * 86_400));
    opts.set_manual_acks(true);
    // Unacknowledged messages never exceed the queue, so the reader never waits on a
    // full queue while acks wait on the reader.
    let receive_max = u16::try_from(ingest.options.queue_capacity).unwrap_or(u16::MAX);
    opts.set_receive_maximum(Some(receive_max));
    // As with the embedded broker: oversized reports up to 8× the limit are read and
    // quarantined rather than breaking the connection.
    let max = ingest.options.limits.max_payload_bytes.saturating_mul(8) + 4096;
    opts.set_max_packet_size(Some(u32::try_from(max).unwrap_or(u32::MAX)));
    if let (Some(u), Some(p)) = (&mqtt.username, &mqtt.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    if mqtt.url.tls {
        let transport = match &mqtt.ca_file {
            Some(path) => {
                let ca = std::fs::read(path).map_err(|source| IngestError::CaFile {
                    path: path.clone(),
                    source,
                })?;
                Transport::tls(ca, None, None)
            }
            None => Transport::tls_with_default_config(),
        };
        opts.set_transport(transport);
    }
    // rumqttc sends queued requests (our acks) only when it has no buffered incoming
    // packet to hand out, so acks can lag far behind a fast stream — further than the
    // broker's in-flight window when a broker ignores our Receive Maximum (measured:
    // Mosquitto with `max_inflight_messages 0`). If the writer ever waited for room in
    // this channel while the reader waits for room in the queue, both would stop: keep
    // it far larger than any backlog. The channel allocates only what it holds.
    let cap = 1 << 20;
    opts.set_request_channel_capacity(cap);
    // A committed batch's acks leave together: written back to back, then one flush per
    // ACK_BATCH of them (the vendored rumqttc's patch) instead of a system call each,
    // which also spares the broker a wake-up per 4-byte packet.
    opts.set_max_request_batch(ACK_BATCH);
    let (client, mut eventloop) = AsyncClient::new(opts, cap);
    let generation = Arc::new(AtomicU64::new(0));
    let lanes = Lanes::start(
        &ingest,
        Some(Acker {
            client: client.clone(),
            generation: generation.clone(),
        }),
        &shutdown,
    );
    // The writers run until the reader drops the decode stage; then `done` fires.
    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    let mut decoders = Some(Decoders::start(ingest.clone(), lanes, done_tx));
    let filters = parc_protocol::server_filters(mqtt.shared_group.as_deref());
    let mut backoff = Duration::from_millis(500);
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        // What the broker already sent is read without waiting, into the decode stage's
        // chunk; once nothing more is there, the chunk is handed over before waiting.
        let ready = match &decoders {
            Some(d) if !d.chunk.is_empty() => eventloop.poll().now_or_never(),
            _ => None,
        };
        let event = match ready {
            Some(event) => event,
            None => {
                if let Some(d) = &mut decoders
                    && !d.flush().await
                {
                    stop_reading(&mut decoders).await;
                }
                tokio::select! {
                    () = &mut stop, if decoders.is_some() => {
                        // Stop taking new messages; keep polling so the writers' last
                        // acks go out.
                        stop_reading(&mut decoders).await;
                        continue;
                    }
                    _ = &mut done_rx => break,
                    e = eventloop.poll() => e,
                }
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                generation.fetch_add(1, Ordering::AcqRel);
                backoff = Duration::from_millis(500);
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                for f in &filters {
                    client
                        .subscribe(f.clone(), QoS::AtLeastOnce)
                        .await
                        .map_err(|e| IngestError::Mqtt(e.to_string()))?;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                ingest.connected.store(true, Ordering::Relaxed);
                ingest.metrics.mqtt_connected.set(1);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let Some(d) = &mut decoders else { continue };
                let ack = Ack {
                    pkid: publish.pkid,
                    qos: publish.qos,
                    generation: generation.load(Ordering::Acquire),
                };
                if !d
                    .push(Raw {
                        topic: publish.topic,
                        payload: publish.payload,
                        ack,
                    })
                    .await
                {
                    stop_reading(&mut decoders).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                ingest.connected.store(false, Ordering::Relaxed);
                ingest.metrics.mqtt_connected.set(0);
                if decoders.is_none() {
                    // Shutting down and the broker is gone: nothing more to send.
                    break;
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost");
                let jitter = Duration::from_millis(u64::from(rand_u16()) % 250);
                tokio::select! {
                    () = tokio::time::sleep(backoff + jitter) => {}
                    () = shutdown.clone().wait() => { stop_reading(&mut decoders).await; }
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    ingest.connected.store(false, Ordering::Relaxed);
    ingest.metrics.mqtt_connected.set(0);
    // Let the last acks reach the broker, then leave cleanly.
    let _ = client.disconnect().await;
    let flush = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    });
    let _ = flush.await;
    Ok(())
}

/// Hands the last chunk over and drops the decode stage: the writers commit and
/// acknowledge what they were given, then `done` fires (the reader keeps polling
/// meanwhile so those acks reach the broker).
async fn stop_reading(decoders: &mut Option<Decoders>) {
    if let Some(mut d) = decoders.take() {
        d.flush().await;
    }
}

fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    u16::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_message_is_five_words() {
        // A full queue holds 20,000 of these besides their boxed messages: an ack keeps
        // a packet id, not the publish (216 bytes; with the quarantine record inline, each
        // was about 350).
        assert!(std::mem::size_of::<Pending>() <= 40);
    }

    #[test]
    fn acks_of_a_later_batch_wait_for_the_earlier_one() {
        let mut order = InOrder::default();
        // Writer 2 commits messages 1 and 3 before writer 1 commits 0 and 2.
        assert!(order.push(vec![(1, Some("b")), (3, Some("d"))]).is_empty());
        assert_eq!(
            order.push(vec![(0, Some("a")), (2, Some("c"))]),
            ["a", "b", "c", "d"]
        );
        // A message with nothing to acknowledge still counts for the order.
        assert!(order.push(vec![(5, Some("f"))]).is_empty());
        assert_eq!(order.push(vec![(4, None)]), ["f"]);
    }

    #[test]
    fn a_device_always_goes_to_the_same_writer_and_devices_spread() {
        let lanes: Vec<usize> = (0..1000)
            .map(|i| lane_of(&format!("d-{i:04}"), 2))
            .collect();
        let first = lanes.iter().filter(|&&l| l == 0).count();
        assert!((350..=650).contains(&first), "{first} of 1000 in lane 0");
        assert_eq!(lane_of("d-0042", 2), lane_of("d-0042", 2));
        assert_eq!(lane_of("anything", 1), 0);
    }

    #[test]
    fn writers_default_to_one_on_sqlite_and_two_on_postgres() {
        use crate::store::Engine;
        assert_eq!(writers_for(0, Engine::Sqlite), 1);
        assert_eq!(writers_for(0, Engine::Postgres), 2);
        assert_eq!(writers_for(3, Engine::Sqlite), 3);
    }

    #[test]
    fn broker_urls_parse_with_default_ports() {
        assert_eq!(
            BrokerUrl::parse("mqtt://127.0.0.1:1884").unwrap(),
            BrokerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1884
            }
        );
        assert_eq!(
            BrokerUrl::parse("mqtts://broker.example").unwrap().port,
            8883
        );
        assert!(
            BrokerUrl::parse("http://x")
                .unwrap_err()
                .contains("mqtt://")
        );
        assert!(
            BrokerUrl::parse("mqtt://h:99999")
                .unwrap_err()
                .contains("port")
        );
    }
}
