//! The agent's life cycle: `run` (the daemon), `once` (one inventory and one health
//! sample, delivered, then exit) and `status` (what an operator asks a device).
//!
//! The daemon collects health every `collect.health_interval_seconds`, an inventory at
//! start, every `collect.inventory_interval_seconds` and whenever its content changes
//! (SMART rides along with inventory cycles), spools everything and lets the uplink
//! deliver it; it obeys `collect_now` and `set_interval` commands and stops within 5 s
//! of its shutdown future completing. Collectors run on the blocking pool.
//!
//! It must never publish anything that did not go through the spool, never bind a
//! socket or install signal handlers itself (the caller passes the shutdown future),
//! and never put a person's name, files or activity in a message.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parc_protocol::body::event_type;
use parc_protocol::{Body, Command, Event, Hello, Inventory};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, mpsc, watch};

use crate::collect::Collector;
use crate::config::AgentConfig;
use crate::outbox::Outbox;
use crate::spool::{Spool, SpoolError, SpoolStats};
use crate::state::{Enrollment, StateDir, StateError, random_epoch, write_atomic};
use crate::update::{UpdateRefused, Updater};
use crate::uplink::{Uplink, UplinkError, UplinkEvent, UplinkSettings};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long the uplink gets to stop after shutdown before it is abandoned.
const STOP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Spool(#[from] SpoolError),
    #[error("{0}")]
    Uplink(#[from] UplinkError),
    #[error("enrolment file: device key: {0}")]
    BadKey(String),
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Why the daemon returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The shutdown future completed.
    Stopped,
    /// A new version was installed: the service manager must start it (exit code 75).
    RestartForUpdate { version: String },
    /// The version on probation did not prove healthy in time and the previous binary
    /// was restored: the service manager must start it (exit code 75).
    RolledBack { version: String },
}

/// What `once` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceReport {
    /// Records still in the spool (0 = everything was acknowledged).
    pub pending: u64,
    /// Whether a broker connection was ever made.
    pub connected: bool,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

/// Snapshot the daemon keeps in `status.json` (the spool is locked while it runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonSnapshot {
    pub pid: u32,
    pub updated_at: DateTime<Utc>,
    pub connected: bool,
    pub last_error: Option<String>,
    pub spool: SpoolStats,
}

/// Everything a running agent needs, opened from the configuration.
struct Agent {
    cfg: AgentConfig,
    /// The version this agent reports (the build's, unless a test impersonates another).
    version: String,
    state: StateDir,
    enrollment: Enrollment,
    spool: Arc<Spool>,
    outbox: Outbox,
}

impl Agent {
    async fn open(cfg: AgentConfig, version: &str) -> Result<Self, RuntimeError> {
        let state = StateDir::new(&cfg.state.dir);
        let enrollment = state.enrollment()?;
        let key = enrollment.key().map_err(RuntimeError::BadKey)?;
        let path = state.spool_path();
        let max = cfg.spool.max_bytes;
        let spool = tokio::task::spawn_blocking(move || Spool::open(&path, max, random_epoch))
            .await
            .map_err(|e| RuntimeError::Task(e.to_string()))??;
        let outbox = Outbox::new(enrollment.device_id.clone(), key, spool.epoch().clone());
        Ok(Self {
            cfg,
            version: version.to_string(),
            state,
            enrollment,
            spool: Arc::new(spool),
            outbox,
        })
    }

    fn hello(&self, health_s: u32, inventory_s: u32) -> Hello {
        let mut capabilities = vec!["battery", "edid", "touch", "self_update"];
        if !self.cfg.collect.smartctl.trim().is_empty() {
            capabilities.push("smart");
        }
        Hello {
            agent_version: self.version.clone(),
            capabilities: capabilities.into_iter().map(String::from).collect(),
            health_interval_seconds: Some(health_s),
            inventory_interval_seconds: Some(inventory_s),
            platform: Some(format!(
                "{}-{}",
                std::env::consts::OS,
                std::env::consts::ARCH
            )),
        }
    }

    fn start_uplink(
        &self,
        hello: Arc<Mutex<Hello>>,
        initial_delay: Option<Duration>,
    ) -> Result<UplinkHandle, RuntimeError> {
        let mut settings = UplinkSettings::from_config(&self.cfg.mqtt, &self.enrollment)?;
        if let Some(d) = initial_delay {
            settings.initial_delay_max = d;
        }
        let (tx, rx) = mpsc::channel(32);
        let wake = Arc::new(Notify::new());
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let uplink = Uplink {
            settings,
            outbox: self.outbox.clone(),
            spool: self.spool.clone(),
            hello,
            wake: wake.clone(),
            events: tx,
        };
        let task = tokio::spawn(uplink.run(async move {
            let _ = stop_rx.wait_for(|v| *v).await;
        }));
        Ok(UplinkHandle {
            wake,
            events: rx,
            stop: stop_tx,
            task,
        })
    }

    /// Spools a body and wakes the uplink; reports drops the bound made.
    async fn push_event(&self, up: &UplinkHandle, event: Event) {
        let at = event.occurred_at;
        self.push(up, Body::Event(event), at).await;
    }

    async fn push(&self, up: &UplinkHandle, body: Body, collected_at: DateTime<Utc>) {
        let ob = self.outbox.clone();
        let kind = body.kind();
        let r = tokio::task::spawn_blocking({
            let spool = self.spool.clone();
            move || -> Result<u64, SpoolError> {
                ob.push(&spool, body, collected_at)?;
                let dropped = spool.take_dropped_count()?;
                if dropped > 0 {
                    let mut data = serde_json::Map::new();
                    data.insert("dropped".into(), dropped.into());
                    ob.push(
                        &spool,
                        Body::Event(Event {
                            event_type: event_type::SPOOL_DROPPED.into(),
                            occurred_at: Utc::now(),
                            detail: Some(format!(
                                "the spool was full: {dropped} older message(s) dropped"
                            )),
                            data,
                        }),
                        Utc::now(),
                    )?;
                }
                Ok(dropped)
            }
        })
        .await;
        match r {
            Ok(Ok(_)) => up.wake.notify_one(),
            Ok(Err(e)) => tracing::error!(%kind, error = %e, "could not spool a message"),
            Err(e) => tracing::error!(%kind, error = %e, "spool task failed"),
        }
    }

    fn snapshot(&self, connected: bool, last_error: Option<String>) {
        let Ok(stats) = self.spool.stats() else {
            return;
        };
        let snap = DaemonSnapshot {
            pid: std::process::id(),
            updated_at: Utc::now(),
            connected,
            last_error,
            spool: stats,
        };
        if let Ok(json) = serde_json::to_vec_pretty(&snap)
            && let Err(e) = write_atomic(&self.state.status_path(), &json, 0o644)
        {
            tracing::warn!(error = %e, "could not write the status snapshot");
        }
    }
}

struct UplinkHandle {
    wake: Arc<Notify>,
    events: mpsc::Receiver<UplinkEvent>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl UplinkHandle {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            tracing::warn!("uplink did not stop in time; abandoning it");
            task.abort();
        }
    }
}

/// Hash of what an inventory says, without the parts that change without the device
/// changing (IP addresses), to publish a new one only when the hardware or OS changed.
pub fn inventory_hash(inv: &Inventory) -> [u8; 32] {
    let mut inv = inv.clone();
    for n in &mut inv.network_interfaces {
        n.addresses.clear();
    }
    let json = serde_json::to_vec(&inv).unwrap_or_default();
    Sha256::digest(&json).into()
}

type SharedCollector = Arc<Mutex<Collector>>;

async fn collect_inventory(c: &SharedCollector) -> Option<Inventory> {
    let c = c.clone();
    tokio::task::spawn_blocking(move || c.lock().ok().map(|c| c.inventory()))
        .await
        .ok()
        .flatten()
}

/// One health sample, with the configured connectivity probes run beside it.
async fn collect_health(
    c: &SharedCollector,
    storage: bool,
    probes: &[crate::config::ProbeConfig],
) -> Option<parc_protocol::Health> {
    let c = c.clone();
    let (health, probes) = tokio::join!(
        collect_health_blocking(c, storage),
        crate::collect::probe_all(probes)
    );
    health.map(|mut h| {
        h.probes = probes;
        h
    })
}

async fn collect_health_blocking(
    c: SharedCollector,
    storage: bool,
) -> Option<parc_protocol::Health> {
    tokio::task::spawn_blocking(move || {
        c.lock().ok().map(|mut c| {
            if storage {
                c.health_with_storage()
            } else {
                c.health()
            }
        })
    })
    .await
    .ok()
    .flatten()
}

/// The daemon. Returns when `shutdown` completes (within about 5 s), or when an update
/// or a rollback needs the service manager to start the installed binary.
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunOutcome, RuntimeError> {
    run_with(cfg, shutdown, RunOptions::default()).await
}

/// What [`run_with`] may change from a production run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The version the agent reports and updates from.
    pub version: String,
    /// Release verifying keys (never empty: an empty list is refused as no key).
    pub release_keys: Vec<[u8; 32]>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            version: AGENT_VERSION.to_string(),
            release_keys: crate::update::RELEASE_KEYS.to_vec(),
        }
    }
}

/// [`run`] with other options: the update tests play a newly installed version and
/// sign releases with keys of their own, without replacing the test binary.
pub async fn run_with(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()>,
    options: RunOptions,
) -> Result<RunOutcome, RuntimeError> {
    let version = options.version.as_str();
    tokio::pin!(shutdown);
    let agent = Agent::open(cfg, version).await?;
    let updater = Updater::from_config(&agent.cfg, version).map(|mut u| {
        u.keys = options.release_keys.clone();
        u
    });
    if options.release_keys == crate::update::RELEASE_KEYS
        && crate::update::RELEASE_KEYS_ARE_TEST_ONLY
    {
        tracing::warn!(
            "built with the TEST-ONLY release key list: no update will be accepted \
             (build with PARC_RELEASE_KEYS for production)"
        );
    }
    // A version on probation: this is it (confirm once connected), or its time is up.
    let mut probation: Option<tokio::time::Instant> = None;
    if let Ok(u) = &updater
        && let Some(p) = u.pending()
    {
        if p.to_version != version {
            tracing::warn!(installed = %p.to_version, running = %version,
                "an update is on probation but another version runs; the start guard will decide");
        } else {
            let left = (p.deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if left.is_zero() {
                return rollback(u, version, "its probation had ended before it started");
            }
            tracing::info!(
                version,
                seconds_left = left.as_secs(),
                "new version on probation"
            );
            probation = Some(tokio::time::Instant::now() + left);
        }
    }
    let mut health_s = agent.cfg.collect.health_interval_seconds;
    let mut inventory_s = agent.cfg.collect.inventory_interval_seconds;
    let hello = Arc::new(Mutex::new(agent.hello(health_s, inventory_s)));
    let mut up = agent.start_uplink(hello.clone(), None)?;
    let collector: SharedCollector = Arc::new(Mutex::new(Collector::from_config(
        &agent.cfg.collect,
        &agent.version,
    )));
    let probes = agent.cfg.probes.clone();
    tracing::info!(device = %agent.enrollment.device_id, epoch = %agent.outbox.epoch, version, "agent started");
    if let Ok(u) = &updater
        && let Some(ev) = u.rollback_report()
    {
        agent.push_event(&up, ev).await;
        if let Err(e) = u.clear_rollback_report() {
            tracing::warn!(error = %e, "could not clear the reported rollback");
        }
    }
    let mut installing: Option<
        tokio::task::JoinHandle<Result<crate::update::Pending, UpdateRefused>>,
    > = None;
    let mut outcome = RunOutcome::Stopped;

    let mut last_inventory: Option<([u8; 32], tokio::time::Instant)> = None;
    let mut connected = false;
    let mut last_error: Option<String> = None;
    let mut health_tick = tokio::time::interval(Duration::from_secs(u64::from(health_s)));
    health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshot_tick = tokio::time::interval(Duration::from_secs(30));
    let mut force_inventory = true;

    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            ev = up.events.recv() => match ev {
                Some(UplinkEvent::Connected) => {
                    connected = true;
                    last_error = None;
                    agent.snapshot(connected, last_error.clone());
                    if probation.take().is_some()
                        && let Ok(u) = &updater
                    {
                        match u.confirm(Utc::now()) {
                            Ok(Some(ev)) => {
                                tracing::info!(version, "new version healthy: update confirmed");
                                agent.push_event(&up, ev).await;
                            }
                            Ok(None) => {}
                            Err(e) => tracing::error!(error = %e, "could not confirm the update"),
                        }
                    }
                }
                Some(UplinkEvent::Disconnected(e)) => {
                    connected = false;
                    last_error = Some(e);
                    agent.snapshot(connected, last_error.clone());
                }
                Some(UplinkEvent::Command(cmd)) => match cmd {
                    Command::CollectNow => {
                        force_inventory = true;
                        health_tick.reset_immediately();
                    }
                    Command::SetInterval { health_interval_seconds, inventory_interval_seconds } => {
                        if let Some(h) = health_interval_seconds.filter(|h| (10..=86_400).contains(h)) {
                            health_s = h;
                            health_tick = tokio::time::interval_at(
                                tokio::time::Instant::now() + Duration::from_secs(u64::from(h)),
                                Duration::from_secs(u64::from(h)),
                            );
                            health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        }
                        if let Some(i) = inventory_interval_seconds.filter(|i| (60..=7 * 86_400).contains(i)) {
                            inventory_s = i;
                        }
                        tracing::info!(health_s, inventory_s, "collection intervals changed");
                        if let Ok(mut h) = hello.lock() {
                            *h = agent.hello(health_s, inventory_s);
                        }
                    }
                    Command::UpdateAvailable { version: wanted, channel, manifest_url } => {
                        tracing::info!(%wanted, %channel, "an agent update is available");
                        // The server announces every channel's release; this device
                        // follows one.
                        let manifest_url = if manifest_url.starts_with('/') {
                            format!("{}{manifest_url}", agent.cfg.server.url.trim_end_matches('/'))
                        } else {
                            manifest_url
                        };
                        if channel != agent.cfg.update.channel {
                            tracing::info!(%channel, "not this device's release channel; ignored");
                        } else if installing.is_some() || probation.is_some() {
                            tracing::info!("an update is already in progress; ignored");
                        } else {
                            match &updater {
                                Ok(u) => {
                                    let u = u.clone();
                                    installing = Some(tokio::task::spawn_blocking(move || {
                                        u.apply(&manifest_url, &wanted, Utc::now())
                                    }));
                                }
                                Err(e) => {
                                    let refused = UpdateRefused {
                                        version: wanted,
                                        reason: crate::update::Refusal::Install,
                                        detail: e.clone(),
                                    };
                                    tracing::warn!(error = %refused, "update refused");
                                    agent.push_event(&up, refused.event(version, Utc::now())).await;
                                }
                            }
                        }
                    }
                },
                None => break,
            },
            res = async { installing.as_mut().expect("guarded").await }, if installing.is_some() => {
                installing = None;
                match res {
                    Ok(Ok(p)) => {
                        tracing::info!(from = %p.from_version, to = %p.to_version,
                            "update installed; restarting into it");
                        outcome = RunOutcome::RestartForUpdate { version: p.to_version };
                        break;
                    }
                    Ok(Err(refused)) => {
                        tracing::warn!(error = %refused, "update refused");
                        agent.push_event(&up, refused.event(version, Utc::now())).await;
                    }
                    Err(e) => tracing::error!(error = %e, "update task failed"),
                }
            }
            _ = sleep_until_opt(probation), if probation.is_some() => {
                probation = None;
                if let Ok(u) = &updater {
                    let secs = agent.cfg.update.health_timeout_seconds;
                    outcome = rollback(u, version, &format!(
                        "it did not reach the broker within {secs} s of its installation"
                    ))?;
                    break;
                }
            }
            _ = snapshot_tick.tick() => agent.snapshot(connected, last_error.clone()),
            _ = health_tick.tick() => {
                let inv = collect_inventory(&collector).await;
                let mut inventory_cycle = false;
                if let Some(inv) = inv {
                    let hash = inventory_hash(&inv);
                    let due = match &last_inventory {
                        None => true,
                        Some((h, at)) => *h != hash
                            || at.elapsed() >= Duration::from_secs(u64::from(inventory_s)),
                    };
                    if due || force_inventory {
                        inventory_cycle = true;
                        force_inventory = false;
                        last_inventory = Some((hash, tokio::time::Instant::now()));
                        agent.push(&up, Body::Inventory(Box::new(inv)), Utc::now()).await;
                    }
                }
                if let Some(h) = collect_health(&collector, inventory_cycle, &probes).await {
                    agent.push(&up, Body::Health(Box::new(h)), Utc::now()).await;
                }
            }
        }
    }
    tracing::info!("stopping");
    up.stop().await;
    let spool = agent.spool.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::task::spawn_blocking(move || spool.flush()),
    )
    .await;
    agent.snapshot(false, Some("agent stopped".into()));
    Ok(outcome)
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Restores the previous binary; the restored version reports the rollback.
fn rollback(u: &Updater, version: &str, why: &str) -> Result<RunOutcome, RuntimeError> {
    tracing::error!(
        version,
        why,
        "new version unhealthy: restoring the previous one"
    );
    u.rollback(&format!("{version}: {why}"), Utc::now())
        .map_err(|e| RuntimeError::Task(format!("rollback failed: {e}")))?;
    Ok(RunOutcome::RolledBack {
        version: version.to_string(),
    })
}

/// Collects one inventory and one health sample, spools them and delivers the whole
/// spool. `pending == 0` in the report means every message was acknowledged.
pub async fn once(cfg: AgentConfig, timeout: Duration) -> Result<OnceReport, RuntimeError> {
    let agent = Agent::open(cfg, AGENT_VERSION).await?;
    let hello = Arc::new(Mutex::new(agent.hello(
        agent.cfg.collect.health_interval_seconds,
        agent.cfg.collect.inventory_interval_seconds,
    )));
    // An operator waiting at the console gets no anti-stampede delay.
    let mut up = agent.start_uplink(hello, Some(Duration::ZERO))?;
    let collector: SharedCollector = Arc::new(Mutex::new(Collector::from_config(
        &agent.cfg.collect,
        AGENT_VERSION,
    )));
    let probes = agent.cfg.probes.clone();
    if let Some(inv) = collect_inventory(&collector).await {
        agent
            .push(&up, Body::Inventory(Box::new(inv)), Utc::now())
            .await;
    }
    if let Some(h) = collect_health(&collector, true, &probes).await {
        agent.push(&up, Body::Health(Box::new(h)), Utc::now()).await;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut connected = false;
    let mut last_error = None;
    let mut check = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            ev = up.events.recv() => match ev {
                Some(UplinkEvent::Connected) => connected = true,
                Some(UplinkEvent::Disconnected(e)) => last_error = Some(e),
                Some(UplinkEvent::Command(c)) => tracing::info!(command = ?c, "command ignored by `once`"),
                None => break,
            },
            _ = check.tick() => {
                // Only the records present before the connection could be empty before
                // it; hello and status are spooled on connecting, so wait for one.
                if connected && agent.spool.is_empty().unwrap_or(false) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    up.stop().await;
    let pending = agent.spool.len()?;
    agent.spool.flush()?;
    Ok(OnceReport {
        pending,
        connected,
        last_error,
    })
}

/// What `parc-agent status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub enrolled: bool,
    pub device_id: Option<String>,
    pub state_dir: String,
    pub broker_url: String,
    pub broker_reachable: Option<bool>,
    pub broker_detail: Option<String>,
    /// Whether a daemon holds the spool (its figures then come from its snapshot).
    pub daemon_running: bool,
    pub daemon_connected: Option<bool>,
    pub last_publish_at: Option<DateTime<Utc>>,
    pub spool: Option<SpoolStats>,
    pub spool_error: Option<String>,
}

/// Gathers the status. Never fails: each unknown part says why.
pub async fn status(cfg: &AgentConfig, probe_broker: bool) -> StatusReport {
    let state = StateDir::new(&cfg.state.dir);
    let enrollment = state.enrollment().ok();
    let mut report = StatusReport {
        enrolled: enrollment.is_some(),
        device_id: enrollment.as_ref().map(|e| e.device_id.to_string()),
        state_dir: cfg.state.dir.display().to_string(),
        broker_url: cfg.mqtt.url.clone(),
        broker_reachable: None,
        broker_detail: None,
        daemon_running: false,
        daemon_connected: None,
        last_publish_at: None,
        spool: None,
        spool_error: None,
    };
    let path = state.spool_path();
    if path.exists() {
        let max = cfg.spool.max_bytes;
        let opened = tokio::task::spawn_blocking(move || {
            Spool::open(&path, max, random_epoch).and_then(|s| s.stats())
        })
        .await;
        match opened {
            Ok(Ok(stats)) => report.spool = Some(stats),
            Ok(Err(SpoolError::Locked)) => {
                report.daemon_running = true;
                match std::fs::read(state.status_path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<DaemonSnapshot>(&b).ok())
                {
                    Some(snap) => {
                        report.daemon_connected = Some(snap.connected);
                        report.spool = Some(snap.spool);
                    }
                    None => {
                        report.spool_error = Some("in use by the daemon, no snapshot yet".into())
                    }
                }
            }
            Ok(Err(e)) => report.spool_error = Some(e.to_string()),
            Err(e) => report.spool_error = Some(e.to_string()),
        }
    }
    report.last_publish_at = report
        .spool
        .as_ref()
        .and_then(|s| s.last_ack_ms)
        .and_then(|ms| DateTime::from_timestamp_millis(i64::try_from(ms).ok()?));
    if probe_broker && let Some(e) = &enrollment {
        match UplinkSettings::from_config(&cfg.mqtt, e) {
            Ok(mut s) => {
                s.connect_timeout = Duration::from_secs(5);
                match crate::uplink::probe(&s).await {
                    Ok(d) => {
                        report.broker_reachable = Some(true);
                        report.broker_detail =
                            Some(format!("MQTT connection accepted in {} ms", d.as_millis()));
                    }
                    Err(err) => {
                        report.broker_reachable = Some(false);
                        report.broker_detail = Some(err);
                    }
                }
            }
            Err(err) => {
                report.broker_reachable = Some(false);
                report.broker_detail = Some(err.to_string());
            }
        }
    }
    report
}

impl StatusReport {
    /// Human-readable text, one fact per line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        out.push_str(&format!("enrolled:        {}\n", yes_no(self.enrolled)));
        if let Some(d) = &self.device_id {
            out.push_str(&format!("device id:       {d}\n"));
        }
        out.push_str(&format!("state dir:       {}\n", self.state_dir));
        let reach = match (self.broker_reachable, &self.broker_detail) {
            (Some(true), Some(d)) => format!("reachable ({d})"),
            (Some(false), Some(d)) => format!("NOT reachable: {d}"),
            _ if self.enrolled => "not checked".into(),
            _ => "not checked (not enrolled)".into(),
        };
        out.push_str(&format!("broker:          {} — {reach}\n", self.broker_url));
        out.push_str(&format!(
            "daemon:          {}\n",
            match (self.daemon_running, self.daemon_connected) {
                (true, Some(true)) => "running, connected",
                (true, Some(false)) => "running, not connected",
                (true, None) => "running",
                (false, _) => "not running",
            }
        ));
        out.push_str(&format!(
            "last publish:    {}\n",
            self.last_publish_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into())
        ));
        match (&self.spool, &self.spool_error) {
            (Some(s), _) => out.push_str(&format!(
                "spool:           {} message(s), {} of {} bytes; dropped {} (not yet reported {}), corrupted {}\n",
                s.records, s.bytes, s.max_bytes, s.dropped_total, s.dropped_unreported, s.corrupt_total
            )),
            (None, Some(e)) => out.push_str(&format!("spool:           unavailable: {e}\n")),
            (None, None) => out.push_str("spool:           none yet\n"),
        }
        out
    }
}
