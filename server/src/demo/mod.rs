//! `parc-server demo`: the whole loop on one machine with embedded defaults — the
//! embedded broker, the authenticating ingest, the HTTP API, and a simulated fleet of
//! devices speaking the real protocol with their own keys, plus one device that tries to
//! write as another and is refused.
//!
//! It grows with the product (storage, procurement data, tickets, the real agent); it
//! must never show anything the server did not actually receive and check.

mod fleet;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use parc_protocol::Limits;
use tokio::sync::watch;

use crate::broker::EmbeddedBroker;
use crate::ingest::{self, Registry, Stats};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
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

    let limits = Limits::default();
    let broker = EmbeddedBroker::new(mqtt_addr, limits.max_payload_bytes)?;
    let registry = Arc::new(Registry::default());
    let stats = Arc::new(Mutex::new(Stats::default()));
    let (ingest_tx, ingest_rx) = broker.link("parc-server")?;
    let fleet = fleet::Fleet::new(&broker, &registry, opts.devices)?;
    let _broker_thread = broker.start();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ingest_task = tokio::spawn(ingest::run_link(
        ingest_tx,
        ingest_rx,
        registry,
        stats.clone(),
        limits,
        stopped(stop_rx.clone()),
    ));
    let http_task = tokio::spawn(crate::http::serve(
        http,
        crate::http::router(stats.clone()),
        stopped(stop_rx.clone()),
    ));
    let fleet_task = tokio::spawn(fleet.run(opts.interval, stopped(stop_rx.clone())));

    println!("Parc demo is running.");
    println!("  MQTT broker (embedded): mqtt://{mqtt_addr}");
    println!("  What the server received: http://{http_addr}/api/v1/summary");
    println!("  Liveness:                 http://{http_addr}/healthz");
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
    let join = async {
        let _ = fleet_task.await;
        let _ = ingest_task.await;
        let _ = http_task.await;
    };
    if tokio::time::timeout(Duration::from_secs(5), join)
        .await
        .is_err()
    {
        tracing::warn!("some demo tasks did not stop within 5 s");
    }
    let s = stats.lock().expect("stats lock");
    println!(
        "Stopped. Received {} messages: accepted {:?}, rejected {:?}, from {} devices.",
        s.received,
        s.accepted,
        s.rejected,
        s.devices.len()
    );
    Ok(())
}
