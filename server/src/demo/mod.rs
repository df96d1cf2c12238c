//! `parc-server demo`: the whole loop on one machine with embedded defaults — the
//! embedded broker, the authenticating ingest, the HTTP API, the demo's procurement
//! data, the real agent collecting this machine, and `parc-sim`'s fleet (about 300
//! laptops, displays and office PCs across the demo schools, enrolled with a token and
//! connected like real agents, replaying a school week in a few minutes), plus one
//! enrolled impostor that tries to write as another device and is refused. A local
//! webhook receiver stands in for the contract holders' ticketing systems.
//!
//! It must never show anything the server did not actually receive and check: every
//! device goes through enrolment, the broker's login check and the ingest.

pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{TimeDelta, Utc};

use crate::app::Prepared;
use crate::config::ServerConfig;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub webhook: SocketAddr,
    /// Where the demo keeps its SQLite database and its devices' enrolment files.
    pub data_dir: PathBuf,
    pub devices: usize,
    /// How much faster than real time the simulated week runs.
    pub accel: f64,
    /// Simulated minutes between two health samples of a device.
    pub health_interval_minutes: f64,
    /// Run the real agent on this machine too.
    pub real_agent: bool,
    /// Stop by itself after this long (for tests); `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
}

/// Binds `preferred`, or any free port on the same address when it is taken.
pub fn bind_or_any(preferred: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(preferred)
        .or_else(|_| std::net::TcpListener::bind(SocketAddr::new(preferred.ip(), 0)))
}

fn tokio_listener(l: std::net::TcpListener) -> std::io::Result<tokio::net::TcpListener> {
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
}

pub async fn run(
    opts: DemoOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let http = bind_or_any(opts.http).context("binding the HTTP listener")?;
    let hook = bind_or_any(opts.webhook).context("binding the webhook receiver")?;
    let mqtt_addr = {
        // Pick a free MQTT port now; the broker binds it itself.
        let l = bind_or_any(opts.mqtt).context("finding a free MQTT port")?;
        l.local_addr()?
    };
    let http_addr = http.local_addr()?;
    let hook_addr = hook.local_addr()?;
    let http = tokio_listener(http)?;
    let hook = tokio_listener(hook)?;

    let mut config = ServerConfig::defaults();
    config.mqtt.listen = mqtt_addr;
    config.storage.data_dir = opts.data_dir.clone();
    config.database.url = None;
    config.mqtt.url = None;
    // Devices log in to the embedded broker with the credentials enrolment gave them.
    config.mqtt.allow_anonymous = false;
    let prepared = Prepared::new(config).await.context("starting the server")?;
    let store = prepared.ingest.store.clone();
    crate::store::load_demo_dataset(&store)
        .await
        .context("loading the demo's contracts, schools and deliveries")?;
    let now = Utc::now();
    let token = crate::enroll::new_token();
    store
        .create_token(
            &crate::store::NewTokenRecord {
                id: &token.id,
                secret_sha256: &token.secret_sha256,
                label: "Démo : flotte simulée et agent local",
                scope: None,
                expires_at: now + TimeDelta::days(2),
                max_uses: None,
            },
            now,
        )
        .await
        .context("creating the demo's enrolment token")?;
    let (password, admin_token) = demo_accounts(&store)
        .await
        .context("creating the demo's dashboard accounts")?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ingest = prepared.ingest.clone();
    let server = tokio::spawn(prepared.run(http, stopped(stop_rx.clone())));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ingest.connected.load(std::sync::atomic::Ordering::Relaxed) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the server did not subscribe to its embedded broker within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deliveries = webhook::Deliveries::default();
    let receiver = tokio::spawn(webhook::serve(
        hook,
        deliveries.clone(),
        stopped(stop_rx.clone()),
    ));
    let webhook_url = format!("http://{hook_addr}/parc");
    // Every demo contract holder's tickets are POSTed to this receiver (signed with a
    // fresh secret each run) and listed at `/deliveries`.
    let mut holders: Vec<String> = store
        .lots()
        .await
        .context("reading the demo's lots")?
        .into_iter()
        .map(|l| l.holder_id)
        .collect();
    holders.sort();
    holders.dedup();
    for holder in &holders {
        store
            .set_holder_webhook(holder, &webhook_url, &crate::enroll::random_secret())
            .await
            .context("pointing the demo's contract holders at the webhook receiver")?;
    }

    let server_url = format!("http://{http_addr}");
    let mqtt_url = format!("mqtt://{mqtt_addr}");
    let delivered = parc_sim::cli::read_delivered(crate::procurement::DEMO_DELIVERIES)?;
    let mut sim = parc_sim::FleetOptions::new(
        &server_url,
        &mqtt_url,
        &token.token,
        opts.data_dir.join("sim-devices"),
    );
    // Monday 07:00 a week ago: the night before the first lessons is not worth replaying.
    sim.sim_start = parc_sim::SimClock::monday_before(now, 7) + TimeDelta::hours(7);
    sim.accel = opts.accel.max(1.0);
    sim.health_interval = TimeDelta::milliseconds((opts.health_interval_minutes * 60_000.0) as i64);
    sim.ramp = Duration::from_secs(2).min(Duration::from_millis(20 * opts.devices as u64));
    sim.impostor = true;
    sim.fault_share = 0.08;
    // Faults everyone sees early in the week, on delivered devices.
    sim.schedule = ["0:touch_lost@+9", "1:battery_wear@+9", "4:display_lost@+33"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .filter(|f: &parc_sim::ScheduledFault| f.device < opts.devices)
        .collect();
    let mix = [
        (parc_sim::Profile::CartLaptop, 6),
        (parc_sim::Profile::Display, 2),
        (parc_sim::Profile::OfficePc, 1),
    ];
    let fleet = parc_sim::plan(parc_sim::specs(&delivered, opts.devices, &mix), &sim)?;
    let week = sim.sim_start;
    let accel = sim.accel;
    let fleet_task = tokio::spawn(parc_sim::run(fleet, sim, stopped(stop_rx.clone())));

    let agent_task = opts.real_agent.then(|| {
        tokio::spawn(run_real_agent(
            server_url.clone(),
            mqtt_url.clone(),
            token.token.clone(),
            opts.data_dir.join("agent"),
            stopped(stop_rx.clone()),
        ))
    });

    println!("Parc demo is running.");
    println!("  MQTT broker (embedded): {mqtt_url}");
    println!(
        "  Database (SQLite):      {}",
        opts.data_dir.join("parc.db").display()
    );
    println!("  Dashboard:              http://{http_addr}/");
    println!("    logins (one password for all, new each run: {password}):");
    for (login, role, what) in DEMO_ACCOUNTS {
        println!("      {login:<22} {role:<11} {what}");
    }
    println!("  API token (admin):      {admin_token}");
    println!("  What the server stored: http://{http_addr}/api/v1/summary");
    println!("  Devices:                http://{http_addr}/api/v1/devices");
    println!("  Reconciliation:         http://{http_addr}/api/v1/reconciliation");
    println!("  Warranties:             http://{http_addr}/api/v1/warranties");
    println!("  Metrics:                http://{http_addr}/metrics");
    println!("  Webhook receiver:       {webhook_url} (POST; stands in for the contract holders)");
    println!("  Webhook deliveries:     http://{hook_addr}/deliveries");
    println!(
        "  {} simulated devices replay the week from {} at {accel}× (a week in {:.0} s); one impostor tries to write as the first.",
        opts.devices,
        week.format("%Y-%m-%d"),
        7.0 * 86_400.0 / accel
    );
    if opts.real_agent {
        println!("  The real agent reports this machine every minute.");
    }
    println!("Press Ctrl-C to stop.");

    match opts.duration {
        Some(d) => {
            tokio::select! { () = shutdown => {}, () = tokio::time::sleep(d) => {} }
        }
        None => shutdown.await,
    }
    let _ = stop_tx.send(true);
    let report = tokio::time::timeout(Duration::from_secs(15), fleet_task).await;
    if let Some(a) = agent_task {
        match tokio::time::timeout(Duration::from_secs(10), a).await {
            Ok(Ok(Err(e))) => println!("The real agent stopped with an error: {e:#}"),
            Err(_) => println!("The real agent did not stop within 10 s."),
            _ => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), receiver).await;
    server.await.context("server task")??;
    if let Ok(Ok(Ok(r))) = report {
        println!(
            "Fleet: {} devices, {} connected, {} health reports and {} inventories sent, {} forged reports from the impostor; {} faults injected.",
            r.devices,
            r.connected_devices,
            r.health_spooled,
            r.inventories_spooled,
            r.forged_spooled,
            r.faults.len()
        );
    }
    let c = store.counts().await?;
    let tickets = store
        .tickets(&crate::store::TicketScope::All, false, i64::MAX)
        .await?
        .len();
    println!(
        "Stopped. Stored {} messages ({} health samples, {} inventories) from {} devices; quarantined {:?}; {} tickets opened; {} webhook deliveries received.",
        c.messages,
        c.health_samples,
        c.inventories,
        c.devices,
        c.quarantined,
        tickets,
        deliveries.total()
    );
    Ok(())
}

/// The real agent, in-process: enrols this machine with the demo's token (once; the
/// credentials stay in `state_dir`), then runs the daemon on the machine's own `/sys`
/// and `/proc` against the embedded broker.
async fn run_real_agent(
    server_url: String,
    mqtt_url: String,
    token: String,
    state_dir: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut cfg = parc_agent::config::AgentConfig::defaults();
    cfg.server.url = server_url.clone();
    cfg.mqtt.url = mqtt_url;
    cfg.mqtt.protocol = parc_agent::config::MqttProtocol::V4;
    cfg.mqtt.initial_delay_max_seconds = 0;
    cfg.collect.root = PathBuf::from("/");
    cfg.collect.health_interval_seconds = 60;
    cfg.state.dir = state_dir.clone();
    let state = parc_agent::state::StateDir::new(&state_dir);
    let enrolled = state.enrollment().is_ok_and(|e| e.server_url == server_url);
    if !enrolled {
        let collect = cfg.collect.clone();
        let inv = tokio::task::spawn_blocking(move || {
            parc_agent::collect::Collector::from_config(&collect, env!("CARGO_PKG_VERSION"))
                .inventory()
        })
        .await
        .context("collecting this machine's inventory")?;
        let req =
            parc_agent::enroll::request_from_inventory(&inv, &token, env!("CARGO_PKG_VERSION"));
        parc_agent::enroll::enroll(&server_url, &req, None, &state)
            .await
            .context("enrolling this machine's agent")?;
    }
    // The demo publishes no releases, so the in-process agent only ever stops.
    parc_agent::runtime::run(cfg, shutdown)
        .await
        .context("the real agent")
        .map(|_| ())
}

/// The demo's dashboard accounts: login, role, and what it sees.
pub const DEMO_ACCOUNTS: [(&str, &str, &str); 5] = [
    ("admin", "admin", "everything"),
    (
        "tech-departement",
        "technician",
        "the Département and its members",
    ),
    ("tech-valbois", "technician", "Commune de Valbois only"),
    ("titulaire-mobil-edu", "holder", "lot 2 (Mobil'Édu) only"),
    ("lecture", "viewer", "everything, read-only"),
];

/// Creates (or, on a reused data directory, re-passwords) the demo accounts with one
/// fresh random password, and issues an admin API token. Returns both, to print.
async fn demo_accounts(store: &crate::store::Store) -> anyhow::Result<(String, String)> {
    let password = crate::auth::new_secret()[..16].to_string();
    for (login, role, _) in DEMO_ACCOUNTS {
        let (org, holder) = match login {
            "tech-departement" => (Some("dep-haute-vallee"), None),
            "tech-valbois" => (Some("commune-valbois"), None),
            "titulaire-mobil-edu" => (None, Some("mobil-edu")),
            _ => (None, None),
        };
        if store.account(login).await?.is_some() {
            let pw = password.clone();
            let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&pw)).await?;
            store.set_password(login, &hash).await?;
        } else {
            crate::accounts_cli::add_account(store, login, None, role, org, holder, &password)
                .await?;
        }
    }
    let token = crate::accounts_cli::issue_token(store, "admin", "demo", Some(1)).await?;
    Ok((password, token))
}
