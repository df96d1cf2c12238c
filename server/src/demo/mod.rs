//! `parc-server demo`: the whole loop on one machine with embedded defaults — the
//! embedded broker, the authenticating ingest, the HTTP API, and a simulated fleet of
//! devices speaking the real protocol with their own keys, plus one device that tries to
//! write as another and is refused.
//!
//! It grows with the product (storage, procurement data, tickets, the real agent); it
//! must never show anything the server did not actually receive and check.

mod fleet;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::app::Prepared;
use crate::config::ServerConfig;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    /// Where the demo keeps its SQLite database.
    pub data_dir: PathBuf,
    pub devices: usize,
    /// Seconds between two health samples of a simulated device.
    pub interval: Duration,
    /// Stop by itself after this long (for tests); `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
}

/// Binds `preferred`, or any free port on the same address when it is taken.
pub fn bind_or_any(preferred: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(preferred)
        .or_else(|_| std::net::TcpListener::bind(SocketAddr::new(preferred.ip(), 0)))
}

pub async fn run(
    opts: DemoOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let http = bind_or_any(opts.http).context("binding the HTTP listener")?;
    let mqtt_addr = {
        // Pick a free MQTT port now; the broker binds it itself.
        let l = bind_or_any(opts.mqtt).context("finding a free MQTT port")?;
        l.local_addr()?
    };
    let http_addr = http.local_addr()?;
    http.set_nonblocking(true)?;
    let http = tokio::net::TcpListener::from_std(http)?;

    let mut config = ServerConfig::defaults();
    config.mqtt.listen = mqtt_addr;
    config.storage.data_dir = opts.data_dir.clone();
    config.database.url = None;
    config.mqtt.url = None;
    let prepared = Prepared::new(config).await.context("starting the server")?;
    let broker = prepared
        .embedded_broker()
        .expect("the demo always uses the embedded broker");
    let fleet = fleet::Fleet::new(broker, opts.devices)?;
    let store = prepared.ingest.store.clone();
    for d in fleet.enrolments() {
        store
            .upsert_device(&d, chrono::Utc::now())
            .await
            .context("registering the simulated devices")?;
    }
    crate::store::load_demo_dataset(&store)
        .await
        .context("loading the demo's contracts, schools and deliveries")?;
    let (password, admin_token) = demo_accounts(&store)
        .await
        .context("creating the demo's dashboard accounts")?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ingest = prepared.ingest.clone();
    let server = tokio::spawn(prepared.run(http, stopped(stop_rx.clone())));
    // The simulated devices publish at QoS 0 through in-process links: start them only
    // once the server's subscription is in, or their first reports would go nowhere.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ingest.connected.load(std::sync::atomic::Ordering::Relaxed) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the server did not subscribe to its embedded broker within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fleet_task = tokio::spawn(fleet.run(opts.interval, stopped(stop_rx.clone())));

    println!("Parc demo is running.");
    println!("  MQTT broker (embedded): mqtt://{mqtt_addr}");
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
    println!(
        "  {} simulated devices report every {:?}; one impostor tries to write as device 0.",
        opts.devices, opts.interval
    );
    println!("Press Ctrl-C to stop.");

    match opts.duration {
        Some(d) => {
            tokio::select! { () = shutdown => {}, () = tokio::time::sleep(d) => {} }
        }
        None => shutdown.await,
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), fleet_task).await;
    server.await.context("server task")??;
    let c = store.counts().await?;
    println!(
        "Stopped. Stored {} messages ({} health samples, {} inventories) from {} devices; quarantined {:?}.",
        c.messages, c.health_samples, c.inventories, c.devices, c.quarantined
    );
    Ok(())
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
