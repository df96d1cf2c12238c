//! The fleet runner: N simulated devices on one tokio runtime, each a real MQTT client
//! built from the agent's own code — enrolment over HTTP with a token
//! ([`parc_agent::enroll`]), the agent's spool and outbox (messages stored before they
//! are published, seq and epoch from the spool), and the agent's uplink (its own
//! connection, credentials, signed last will, backoff, PUBACK bookkeeping).
//!
//! A device is switched on and off by its [`Profile`] on the simulated clock: switching
//! on starts an uplink session (and sends the day's inventory), switching off drops the
//! connection without DISCONNECT so the broker publishes the device's `offline` will.
//! Spools live in memory (the agent's spool on redb's in-memory backend): ten thousand
//! spool files would exhaust the process's file descriptors next to ten thousand
//! sockets. Enrolment files are kept in `state_dir`, one folder per serial, so a second
//! run reuses the credentials instead of enrolling again.
//!
//! It must never forge another device's messages, nor publish anything that did not go
//! through the spool, nor re-implement what the agent already does.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use parc_agent::config::MqttProtocol;
use parc_agent::outbox::Outbox;
use parc_agent::spool::Spool;
use parc_agent::state::{StateDir, random_epoch};
use parc_agent::uplink::{Uplink, UplinkEvent, UplinkSettings, parse_mqtt_url};
use parc_protocol::{Body, Hello};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::clock::SimClock;
use crate::device::{DeviceSpec, Fault, SimDevice};
use crate::profile::{Profile, unit};

pub const AGENT_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-sim");

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("mqtt url: {0}")]
    MqttUrl(String),
    #[error("fault schedule entry {entry:?}: {problem}")]
    Schedule { entry: String, problem: String },
    #[error("device {index} in the schedule, but the fleet has {count} devices")]
    ScheduleDevice { index: usize, count: usize },
}

/// A fault at a fixed simulated time: `DEVICE:FAULT@+HOURS` (hours after the start of
/// the simulated time), e.g. `17:touch_lost@+26.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledFault {
    pub device: usize,
    pub fault: Fault,
    pub after: TimeDelta,
}

impl std::str::FromStr for ScheduledFault {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        let bad = |problem: &str| SimError::Schedule {
            entry: s.to_string(),
            problem: problem.to_string(),
        };
        let (dev, rest) = s
            .split_once(':')
            .ok_or_else(|| bad("expected DEVICE:FAULT@+HOURS"))?;
        let (fault, after) = rest
            .split_once("@+")
            .ok_or_else(|| bad("expected @+HOURS after the fault"))?;
        let device = dev
            .trim()
            .parse()
            .map_err(|_| bad("DEVICE is not an index"))?;
        let fault = <Fault as clap::ValueEnum>::from_str(fault.trim(), true).map_err(|_| {
            bad("unknown fault (battery_wear, touch_lost, display_lost, disk_failing, overheating)")
        })?;
        let hours: f64 = after
            .trim()
            .parse()
            .map_err(|_| bad("HOURS is not a number"))?;
        if !(0.0..=24.0 * 366.0).contains(&hours) {
            return Err(bad("HOURS must be between 0 and a year"));
        }
        Ok(Self {
            device,
            fault,
            after: TimeDelta::milliseconds((hours * 3_600_000.0) as i64),
        })
    }
}

#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Base URL of the server for enrolment (`http://127.0.0.1:8080`).
    pub server_url: String,
    pub mqtt_url: String,
    pub protocol: MqttProtocol,
    pub token: String,
    /// One folder per serial with the device's `enrollment.json`.
    pub state_dir: PathBuf,
    pub sim_start: DateTime<Utc>,
    pub accel: f64,
    /// Simulated time between two health samples.
    pub health_interval: TimeDelta,
    /// Ignore the profiles' schedules: every device stays on (connection storms,
    /// steady-state load).
    pub always_on: bool,
    /// First connections are spread evenly over this real time.
    pub ramp: Duration,
    pub enrol_concurrency: usize,
    /// Share of devices developing a random fault during `fault_window` of simulated time.
    pub fault_share: f64,
    pub fault_window: TimeDelta,
    pub schedule: Vec<ScheduledFault>,
    pub seed: u64,
    pub keep_alive: Duration,
    /// Adds one more enrolled device that, each health interval, signs a health report
    /// claiming to be the fleet's first device with its own key and publishes it on the
    /// victim's topic: the server must refuse every one of them (bad signature).
    pub impostor: bool,
    /// Enrol every device (or check its saved credentials) and stop: prepares a
    /// connection storm whose timing then excludes enrolment.
    pub enrol_only: bool,
}

impl FleetOptions {
    pub fn new(server_url: &str, mqtt_url: &str, token: &str, state_dir: PathBuf) -> Self {
        Self {
            server_url: server_url.trim_end_matches('/').to_string(),
            mqtt_url: mqtt_url.to_string(),
            protocol: MqttProtocol::V4,
            token: token.to_string(),
            state_dir,
            sim_start: Utc::now(),
            accel: 1.0,
            health_interval: TimeDelta::minutes(5),
            always_on: false,
            ramp: Duration::from_secs(5),
            enrol_concurrency: 8,
            fault_share: 0.05,
            fault_window: TimeDelta::days(5),
            schedule: Vec::new(),
            seed: 1,
            keep_alive: Duration::from_secs(60),
            impostor: false,
            enrol_only: false,
        }
    }
}

/// Counters shared by the devices while the fleet runs.
#[derive(Debug, Default)]
pub struct Stats {
    pub enrolled: AtomicU64,
    pub enrol_failed: AtomicU64,
    pub connected_devices: AtomicU64,
    pub connections: AtomicU64,
    pub disconnects: AtomicU64,
    pub health_spooled: AtomicU64,
    pub inventories_spooled: AtomicU64,
    pub spool_errors: AtomicU64,
    /// Forged reports the impostor spooled.
    pub forged_spooled: AtomicU64,
    /// Real milliseconds from an uplink's start to its first CONNACK, per session.
    connect_ms: Mutex<Vec<u64>>,
    /// Real milliseconds from the start of the run to each device's first CONNACK.
    first_connected_ms: Mutex<Vec<u64>>,
}

/// What the fleet did, for the CLI's JSON output and the benchmarks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetReport {
    pub devices: usize,
    pub by_profile: HashMap<&'static str, usize>,
    pub enrolled: u64,
    pub enrol_failed: u64,
    pub connected_devices: u64,
    pub connections: u64,
    pub disconnects: u64,
    pub connect_ms_p50: Option<u64>,
    pub connect_ms_p99: Option<u64>,
    pub connect_ms_max: Option<u64>,
    /// Real seconds from the start until the last device first connected.
    pub all_connected_after_s: Option<f64>,
    pub health_spooled: u64,
    pub inventories_spooled: u64,
    /// Messages still in the devices' spools when the fleet stopped (not acknowledged).
    pub unacknowledged_at_stop: u64,
    pub spool_errors: u64,
    pub forged_spooled: u64,
    pub faults: Vec<InjectedFault>,
    pub sim_start: DateTime<Utc>,
    pub sim_end: DateTime<Utc>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct InjectedFault {
    pub serial: String,
    pub fault: Fault,
    pub at: DateTime<Utc>,
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// The devices of a fleet with their faults drawn: the scheduled ones, then a random
/// `fault_share` of devices each with one fault its profile can develop.
pub fn plan(specs: Vec<DeviceSpec>, opts: &FleetOptions) -> Result<Vec<SimDevice>, SimError> {
    let count = specs.len();
    let mut devices: Vec<SimDevice> = specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| SimDevice::new(s, opts.seed.wrapping_mul(1_000_003).wrapping_add(i as u64)))
        .collect();
    for f in &opts.schedule {
        let d = devices.get_mut(f.device).ok_or(SimError::ScheduleDevice {
            index: f.device,
            count,
        })?;
        d.add_fault(opts.sim_start + f.after, f.fault);
    }
    let window_ms = opts.fault_window.num_milliseconds().max(0) as f64;
    for (i, d) in devices.iter_mut().enumerate() {
        let i = i as u64;
        if unit(opts.seed, 7, i) < opts.fault_share {
            let choices = Fault::possible(d.spec.profile);
            let pick =
                choices[(unit(opts.seed, 8, i) * choices.len() as f64) as usize % choices.len()];
            let at = opts.sim_start
                + TimeDelta::milliseconds((unit(opts.seed, 9, i) * window_ms) as i64);
            d.add_fault(at, pick);
        }
    }
    Ok(devices)
}

/// Runs the fleet until `shutdown` completes; returns what it did.
pub async fn run(
    devices: Vec<SimDevice>,
    opts: FleetOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<FleetReport, SimError> {
    run_with_progress(devices, opts, shutdown, 0.0, |_| {}).await
}

/// Where the fleet stands, for progress lines.
pub struct Progress<'a> {
    pub elapsed_s: f64,
    pub sim_now: DateTime<Utc>,
    pub stats: &'a Stats,
}

/// [`run`], calling `progress` every `every_s` real seconds (never if 0).
pub async fn run_with_progress(
    devices: Vec<SimDevice>,
    opts: FleetOptions,
    shutdown: impl Future<Output = ()>,
    every_s: f64,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<FleetReport, SimError> {
    let (_, host, port) =
        parse_mqtt_url(&opts.mqtt_url).map_err(|e| SimError::MqttUrl(e.to_string()))?;
    let clock = SimClock::new(opts.sim_start, opts.accel);
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let enrol = Arc::new(Semaphore::new(opts.enrol_concurrency.max(1)));
    let count = devices.len();
    let mut by_profile: HashMap<&'static str, usize> = HashMap::new();
    let mut faults = Vec::new();
    for d in &devices {
        *by_profile.entry(d.spec.profile.label()).or_default() += 1;
        for (at, f) in d.faults() {
            faults.push(InjectedFault {
                serial: d.spec.serial.clone(),
                fault: *f,
                at: *at,
            });
        }
    }
    let opts = Arc::new(opts);
    let started = Instant::now();
    let victim = Arc::new(OnceLock::new());
    let mut tasks = tokio::task::JoinSet::new();
    let mut devices = devices;
    if opts.impostor {
        let mut spec = spec(count, "PARCIMPOSTOR".into(), Profile::OfficePc);
        spec.hostname = "impostor".into();
        devices.push(SimDevice::new(spec, opts.seed ^ 0xBAD));
    }
    for (i, d) in devices.into_iter().enumerate() {
        let delay = opts.ramp.mul_f64(i as f64 / count.max(1) as f64);
        let ctx = DeviceCtx {
            opts: opts.clone(),
            clock: clock.clone(),
            stats: stats.clone(),
            enrol: enrol.clone(),
            stop: stop_rx.clone(),
            host: host.clone(),
            port,
            started,
            victim: victim.clone(),
            role: if i == 0 {
                Role::Victim
            } else if i == count {
                Role::Impostor
            } else {
                Role::Plain
            },
        };
        tasks.spawn(device_task(d, ctx, delay));
    }
    tokio::pin!(shutdown);
    let period = Duration::from_secs_f64(if every_s > 0.0 {
        every_s
    } else {
        3600.0 * 24.0
    });
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    let mut unacked = 0;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => if every_s > 0.0 {
                progress(Progress {
                    elapsed_s: started.elapsed().as_secs_f64(),
                    sim_now: clock.now(),
                    stats: &stats,
                });
            },
            // Devices only finish by themselves with `enrol_only`, or on a fatal error.
            r = tasks.join_next() => match r {
                Some(Ok(n)) => unacked += n,
                Some(Err(e)) => tracing::warn!(error = %e, "device task failed"),
                None => break,
            },
        }
    }
    let _ = stop_tx.send(true);
    while let Some(r) = tasks.join_next().await {
        if let Ok(n) = r {
            unacked += n;
        }
    }
    let mut connect = stats
        .connect_ms
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    connect.sort_unstable();
    let first = stats
        .first_connected_ms
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let connected_devices = stats.connected_devices.load(Ordering::Relaxed);
    Ok(FleetReport {
        devices: count,
        by_profile,
        enrolled: stats.enrolled.load(Ordering::Relaxed),
        enrol_failed: stats.enrol_failed.load(Ordering::Relaxed),
        connected_devices,
        connections: stats.connections.load(Ordering::Relaxed),
        disconnects: stats.disconnects.load(Ordering::Relaxed),
        connect_ms_p50: percentile(&connect, 0.50),
        connect_ms_p99: percentile(&connect, 0.99),
        connect_ms_max: connect.last().copied(),
        all_connected_after_s: (connected_devices as usize == count)
            .then(|| first.iter().max().map(|m| *m as f64 / 1000.0))
            .flatten(),
        health_spooled: stats.health_spooled.load(Ordering::Relaxed),
        inventories_spooled: stats.inventories_spooled.load(Ordering::Relaxed),
        unacknowledged_at_stop: unacked,
        spool_errors: stats.spool_errors.load(Ordering::Relaxed),
        forged_spooled: stats.forged_spooled.load(Ordering::Relaxed),
        faults,
        sim_start: clock.sim_start(),
        sim_end: clock.now(),
    })
}

struct DeviceCtx {
    opts: Arc<FleetOptions>,
    clock: SimClock,
    stats: Arc<Stats>,
    enrol: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    host: String,
    port: u16,
    started: Instant,
    /// The first device's id, once it has enrolled (the impostor's target).
    victim: Arc<OnceLock<parc_protocol::DeviceId>>,
    role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Victim,
    Impostor,
}

/// A running uplink session of one device.
struct Session {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    events: mpsc::Receiver<UplinkEvent>,
    began: Instant,
    connected: bool,
    on_since: DateTime<Utc>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// One device's life; returns how many of its messages were never acknowledged.
async fn device_task(mut dev: SimDevice, ctx: DeviceCtx, ramp_delay: Duration) -> u64 {
    let mut stop = ctx.stop.clone();
    tokio::select! {
        _ = stop.wait_for(|s| *s) => return 0,
        () = tokio::time::sleep(ramp_delay) => {}
    }
    let Some(enrollment) = enrol(&dev, &ctx).await else {
        return 0;
    };
    if ctx.role == Role::Victim {
        let _ = ctx.victim.set(enrollment.device_id.clone());
    }
    if ctx.opts.enrol_only {
        return 0;
    }
    let key = match enrollment.key() {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(serial = %dev.spec.serial, error = %e, "unusable key");
            return 0;
        }
    };
    let spool = match Spool::in_memory(2 * 1024 * 1024, random_epoch) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!(error = %e, "spool");
            ctx.stats.spool_errors.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
    };
    let outbox = Outbox::new(enrollment.device_id.clone(), key, spool.epoch().clone());
    let settings = UplinkSettings {
        host: ctx.host.clone(),
        port: ctx.port,
        tls_roots: None,
        protocol: ctx.opts.protocol,
        client_id: enrollment.device_id.to_string(),
        username: enrollment.mqtt_username.clone(),
        password: enrollment.mqtt_password.clone(),
        keep_alive: ctx.opts.keep_alive,
        inflight: 16,
        drain_rate_per_second: 1000,
        // The ramp already spreads the fleet's first connections.
        initial_delay_max: Duration::ZERO,
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(30),
    };
    let interval_s = ctx.opts.health_interval.num_seconds().max(1) as u32;
    let hello = Arc::new(Mutex::new(Hello {
        agent_version: AGENT_VERSION.into(),
        capabilities: vec![
            "battery".into(),
            "thermal".into(),
            "smart".into(),
            "touch".into(),
        ],
        health_interval_seconds: Some(interval_s),
        inventory_interval_seconds: Some(86_400),
        platform: Some("linux-x86_64".into()),
    }));
    let wake = Arc::new(Notify::new());
    let seed = dev.spec.usage_seed;
    // Devices sample at their own phase within the interval, as real ones do.
    let phase = TimeDelta::milliseconds(
        (unit(seed ^ 0x5EED, 1, serial_hash(&dev.spec.serial))
            * ctx.opts.health_interval.num_milliseconds() as f64) as i64,
    );
    // The first sample is taken when the device starts; the next ones at its own phase.
    let mut t = ctx.clock.now();
    let mut next_step = phase;
    let mut session: Option<Session> = None;
    let mut last_inventory_day: Option<chrono::NaiveDate> = None;
    let mut ever_connected = false;
    loop {
        let on = ctx.opts.always_on || dev.spec.profile.powered(t, seed);
        if on && session.is_none() {
            let (stop_tx, stop_rx) = watch::channel(false);
            let (ev_tx, ev_rx) = mpsc::channel(16);
            let uplink = Uplink {
                settings: settings.clone(),
                outbox: outbox.clone(),
                spool: spool.clone(),
                hello: hello.clone(),
                wake: wake.clone(),
                events: ev_tx,
            };
            session = Some(Session {
                stop: stop_tx,
                task: tokio::spawn(uplink.run(stopped(stop_rx))),
                events: ev_rx,
                began: Instant::now(),
                connected: false,
                on_since: t,
            });
        }
        if !on && let Some(s) = session.take() {
            let hours = (t - s.on_since).as_seconds_f64() / 3600.0;
            dev.session_ended(t, hours);
            end_session(s).await;
        }
        if let Some(s) = &session {
            let day = t.with_timezone(&crate::clock::local_offset()).date_naive();
            if last_inventory_day != Some(day) {
                last_inventory_day = Some(day);
                let inv = dev.inventory(AGENT_VERSION);
                push(
                    &outbox,
                    &spool,
                    Body::Inventory(Box::new(inv)),
                    t,
                    &ctx.stats.inventories_spooled,
                    &ctx.stats,
                );
            }
            let uptime = (t - s.on_since).num_seconds().max(0) as u64 + 45;
            let h = dev.health(t, uptime);
            if ctx.role == Role::Impostor {
                if let Some(victim) = ctx.victim.get() {
                    forge(&outbox, &spool, victim, h, t, &ctx.stats);
                }
            } else {
                push(
                    &outbox,
                    &spool,
                    Body::Health(Box::new(h)),
                    t,
                    &ctx.stats.health_spooled,
                    &ctx.stats,
                );
            }
            wake.notify_one();
        }
        t += next_step;
        next_step = ctx.opts.health_interval;
        // Wait for the next sample, noting connections meanwhile.
        let sleep = ctx.clock.sleep_until(t);
        tokio::pin!(sleep);
        loop {
            let events = async {
                match session.as_mut() {
                    Some(s) => s.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            let step = tokio::select! {
                _ = stop.wait_for(|s| *s) => Step::Stop,
                () = &mut sleep => Step::Sample,
                ev = events => Step::Event(ev),
            };
            match step {
                Step::Stop => {
                    if let Some(s) = session.take() {
                        end_session(s).await;
                    }
                    return spool.len().unwrap_or(0);
                }
                Step::Sample => break,
                Step::Event(Some(UplinkEvent::Connected)) => {
                    if let Some(s) = session.as_mut() {
                        ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
                        if !s.connected {
                            s.connected = true;
                            if let Ok(mut v) = ctx.stats.connect_ms.lock() {
                                v.push(s.began.elapsed().as_millis() as u64);
                            }
                        }
                        if !std::mem::replace(&mut ever_connected, true) {
                            ctx.stats.connected_devices.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut v) = ctx.stats.first_connected_ms.lock() {
                                v.push(ctx.started.elapsed().as_millis() as u64);
                            }
                        }
                    }
                }
                Step::Event(Some(UplinkEvent::Disconnected(reason))) => {
                    ctx.stats.disconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(serial = %dev.spec.serial, %reason, "disconnected");
                }
                Step::Event(Some(UplinkEvent::Command(c))) => {
                    tracing::info!(serial = %dev.spec.serial, command = ?c, "command received");
                }
                Step::Event(None) => {}
            }
        }
    }
}

/// FNV-1a of the serial: spreads devices' phases.
fn serial_hash(serial: &str) -> u64 {
    serial.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

enum Step {
    Stop,
    Sample,
    Event(Option<UplinkEvent>),
}

async fn end_session(s: Session) {
    let _ = s.stop.send(true);
    // The uplink returns at once on shutdown; the bound only guards against a bug.
    let _ = tokio::time::timeout(Duration::from_secs(5), s.task).await;
}

fn push(
    outbox: &Outbox,
    spool: &Spool,
    body: Body,
    t: DateTime<Utc>,
    counter: &AtomicU64,
    stats: &Stats,
) {
    // In memory: no fsync, so no need for the blocking pool.
    match outbox.push(spool, body, t) {
        Ok(_) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats.spool_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "spool push failed");
        }
    }
}

/// Spools a health report that claims to come from `victim`, on the victim's topic;
/// the uplink signs it with the impostor's own key, as it signs everything.
fn forge(
    outbox: &Outbox,
    spool: &Spool,
    victim: &parc_protocol::DeviceId,
    h: parc_protocol::Health,
    t: DateTime<Utc>,
    stats: &Stats,
) {
    let r = spool.next_seq().and_then(|seq| {
        let mut m = outbox.compose(Body::Health(Box::new(h)), seq, t);
        m.header.device_id = victim.clone();
        spool.push(m.kind(), seq, &m.topic(), &m.to_json())
    });
    match r {
        Ok(_) => {
            stats.forged_spooled.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats.spool_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "spool push failed");
        }
    }
}

/// The device's credentials: from its state folder if it enrolled with this server
/// before, else by enrolling now.
async fn enrol(dev: &SimDevice, ctx: &DeviceCtx) -> Option<parc_agent::state::Enrollment> {
    let state = StateDir::new(ctx.opts.state_dir.join(&dev.spec.serial));
    if let Ok(e) = state.enrollment()
        && e.server_url == ctx.opts.server_url
    {
        ctx.stats.enrolled.fetch_add(1, Ordering::Relaxed);
        return Some(e);
    }
    let _permit = ctx.enrol.acquire().await.ok()?;
    let inv = dev.inventory(AGENT_VERSION);
    let req = parc_agent::enroll::request_from_inventory(&inv, &ctx.opts.token, AGENT_VERSION);
    let mut backoff = Duration::from_millis(200);
    for attempt in 0..5 {
        match parc_agent::enroll::enroll(&ctx.opts.server_url, &req, None, &state).await {
            Ok(e) => {
                ctx.stats.enrolled.fetch_add(1, Ordering::Relaxed);
                return Some(e);
            }
            Err(e) => {
                // Refusals are final (bad token, revoked device); transport errors and
                // a busy server (5xx, 429) are retried with backoff.
                let refused = matches!(
                    e,
                    parc_agent::enroll::EnrollError::Refused { status, .. } if status < 500 && status != 429
                );
                if refused || attempt == 4 {
                    tracing::warn!(serial = %dev.spec.serial, error = %e, "enrolment failed");
                    break;
                }
                tracing::debug!(serial = %dev.spec.serial, error = %e, "enrolment retry");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    ctx.stats.enrol_failed.fetch_add(1, Ordering::Relaxed);
    None
}

/// Serials, profiles and host names for `count` devices: `delivered` first (serial and
/// model from a delivery manifest, so they link to their lots), then generated ones
/// (`PARCSIM#####`) in the given mix of profiles.
pub fn specs(
    delivered: &[(String, String)],
    count: usize,
    mix: &[(Profile, u32)],
) -> Vec<DeviceSpec> {
    let mut out = Vec::with_capacity(count);
    for (i, (serial, model)) in delivered.iter().take(count).enumerate() {
        out.push(spec(i, serial.clone(), Profile::from_model(model)));
    }
    let total: u32 = mix.iter().map(|(_, w)| *w).sum::<u32>().max(1);
    let mut i = out.len();
    while out.len() < count {
        let mut pick = (i as u32 * 7919) % total;
        let profile = mix
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= *w;
                    false
                }
            })
            .map(|(p, _)| *p)
            .unwrap_or(Profile::CartLaptop);
        out.push(spec(i, format!("PARCSIM{i:05}"), profile));
        i += 1;
    }
    out
}

fn spec(i: usize, serial: String, profile: Profile) -> DeviceSpec {
    let (prefix, group) = match profile {
        // 16 laptops per cart share their usage.
        Profile::CartLaptop => ("chariot", i / 16),
        Profile::Display => ("eni", i),
        Profile::OfficePc => ("poste", i),
    };
    DeviceSpec {
        serial,
        profile,
        hostname: format!("{prefix}-{i:05}"),
        usage_seed: 0xC0FFEE ^ (group as u64).wrapping_mul(0x9E37_79B9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_entries_parse_and_bad_ones_say_why() {
        let f: ScheduledFault = "17:touch_lost@+26.5".parse().unwrap();
        assert_eq!(f.device, 17);
        assert_eq!(f.fault, Fault::TouchLost);
        assert_eq!(f.after, TimeDelta::minutes(26 * 60 + 30));
        let e = "17:melted@+2"
            .parse::<ScheduledFault>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown fault"), "{e}");
        assert!("x:touch_lost@+1".parse::<ScheduledFault>().is_err());
    }

    #[test]
    fn a_share_of_the_fleet_develops_faults_its_profile_allows() {
        let specs = specs(
            &[],
            1000,
            &[(Profile::CartLaptop, 3), (Profile::Display, 1)],
        );
        let mut opts =
            FleetOptions::new("http://x", "mqtt://x", "t", PathBuf::from("/nonexistent"));
        opts.fault_share = 0.1;
        opts.schedule = vec!["3:disk_failing@+1".parse().unwrap()];
        let devices = plan(specs, &opts).unwrap();
        let faulty = devices.iter().filter(|d| !d.faults().is_empty()).count();
        assert!((60..=140).contains(&faulty), "{faulty}");
        for d in &devices {
            for (at, f) in d.faults() {
                assert!(
                    *at >= opts.sim_start
                        && *at <= opts.sim_start + opts.fault_window + TimeDelta::hours(1)
                );
                if d.spec.serial != "PARCSIM00003" {
                    assert!(
                        Fault::possible(d.spec.profile).contains(f),
                        "{f:?} on {:?}",
                        d.spec.profile
                    );
                }
            }
        }
        assert!(
            devices[3]
                .faults()
                .iter()
                .any(|(_, f)| *f == Fault::DiskFailing)
        );
        opts.schedule = vec!["5000:disk_failing@+1".parse().unwrap()];
        assert!(plan(vec![], &opts).is_err());
    }

    #[test]
    fn delivered_serials_come_first_then_the_generated_mix() {
        let delivered = vec![
            ("PARCDEMO0000".to_string(), "SPE-86-ENI".to_string()),
            (
                "PARCDEMO0001".to_string(),
                "ThinkPad X13 Gen 2i".to_string(),
            ),
        ];
        let s = specs(&delivered, 10, &[(Profile::OfficePc, 1)]);
        assert_eq!(s.len(), 10);
        assert_eq!(s[0].profile, Profile::Display);
        assert_eq!(s[1].serial, "PARCDEMO0001");
        assert_eq!(s[1].profile, Profile::CartLaptop);
        assert_eq!(s[2].serial, "PARCSIM00002");
        assert!(s[2..].iter().all(|d| d.profile == Profile::OfficePc));
    }
}
