//! Latency from the health sample that completes a rule's hysteresis to the ticket's
//! webhook delivery, through the whole server: embedded broker, ingest batch, rule
//! inbox, maintenance worker, outbox, dispatcher, a real HTTP receiver.
//!
//! Each of N devices of one lot (storm control disabled, so every device gets its
//! own ticket) first reports two worn-battery samples, then — one device at a time,
//! `--spacing-ms` apart — the third: the time from publishing it to the receiver
//! getting that device's `ticket.created` is one latency. Prints p50/p95/max.
//!
//! ```sh
//! cargo run --release -p parc-server --example ticket_latency -- --devices 200
//! cargo run --release -p parc-server --example ticket_latency -- --database-url postgres://postgres@127.0.0.1:5432/ticketbench
//! ```
//! (with PostgreSQL, the database must exist and be empty.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use clap::Parser;
use parc_protocol::ticket::{TicketNotice, verify_notice};
use parc_protocol::{Body, DeviceId, DeviceKey, Epoch, Header, Health, Message, seal};
use parc_server::app::Prepared;
use parc_server::config::ServerConfig;
use parc_server::store::{NewDevice, load_demo_dataset};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Time between two devices crossing the threshold.
    #[arg(long, default_value_t = 25)]
    spacing_ms: u64,
    /// Default: SQLite in a temporary directory.
    #[arg(long)]
    database_url: Option<String>,
}

const SECRET: &str = "bench-secret";

fn health(battery: f64) -> Health {
    serde_json::from_value(serde_json::json!({
        "batteries": [{"name": "BAT0", "health_percent": battery, "charge_percent": 80.0}],
        "cpu_usage_percent": 10.0
    }))
    .expect("a health sample")
}

struct Dev {
    id: DeviceId,
    key: DeviceKey,
    epoch: Epoch,
    seq: u64,
}

impl Dev {
    fn frame(&mut self, battery: f64) -> (String, Vec<u8>) {
        self.seq += 1;
        let now = chrono::Utc::now();
        let m = Message::new(
            Header {
                device_id: self.id.clone(),
                epoch: self.epoch.clone(),
                seq: self.seq,
                collected_at: now,
                sent_at: now,
            },
            Body::Health(Box::new(health(battery))),
        );
        seal(&m, &self.key)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let dir = tempfile::tempdir()?;
    let mut cfg = ServerConfig::defaults();
    let mqtt = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    cfg.mqtt.listen = mqtt;
    cfg.mqtt.allow_anonymous = true;
    cfg.storage.data_dir = dir.path().to_path_buf();
    cfg.database.url = args.database_url.clone();
    cfg.tickets.storm_threshold = u32::MAX;
    let prepared = Prepared::new(cfg).await.context("starting the server")?;
    let store = prepared.ingest.store.clone();

    // Procurement: N laptops of lot 2, battery under warranty.
    load_demo_dataset(&store).await?;
    let mut csv = String::from(
        "serial,model,order_reference,lot,site_uai,delivery_date,acceptance_date,cart\n",
    );
    for n in 0..args.devices {
        csv.push_str(&format!(
            "PFLAT{n:05},ThinkPad X13 Gen 2i,BC-2026-006,Lot 2,0420102H,2026-10-05,2026-10-12,\n"
        ));
    }
    let parsed = parc_server::procurement::parse_manifest(&csv)?;
    let report = store
        .import_deliveries(&parsed, false, chrono::Utc::now(), &|_, _| {})
        .await?;
    ensure!(report.errors.is_empty(), "manifest: {:?}", report.errors);

    // The receiver: arrival time per device.
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let a = arrivals.clone();
    let app = axum::Router::new().route(
        "/t",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let a = a.clone();
            async move {
                let now = Instant::now();
                let sig = headers
                    .get("x-parc-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !verify_notice(SECRET.as_bytes(), &body, sig) {
                    return StatusCode::UNAUTHORIZED;
                }
                if let Ok(n) = serde_json::from_slice::<TicketNotice>(&body)
                    && n.event == "ticket.created"
                {
                    a.lock()
                        .unwrap()
                        .insert(n.ticket.devices[0].device_id.clone(), now);
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_addr = hook.local_addr()?;
    tokio::spawn(async move { axum::serve(hook, app).await });
    ensure!(
        store
            .set_holder_webhook("mobil-edu", &format!("http://{hook_addr}/t"), SECRET)
            .await?
    );

    let mut devs = Vec::new();
    for n in 0..args.devices {
        let id = DeviceId::parse(&format!("d-lat-{n:05}")).expect("device id");
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(n as u64 + 1).to_le_bytes());
        let key = DeviceKey::from_bytes(seed);
        store
            .upsert_device(
                &NewDevice {
                    device_id: id.clone(),
                    key: key.clone(),
                    serial: Some(format!("PFLAT{n:05}")),
                    manufacturer: None,
                    product_name: None,
                    hostname: None,
                    agent_version: None,
                    mqtt_password_sha256: None,
                    mosquitto_password_line: None,
                },
                chrono::Utc::now(),
            )
            .await?;
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&(n as u64 + 1).to_le_bytes());
        devs.push(Dev {
            id,
            key,
            epoch: Epoch::from_random(e),
            seq: 0,
        });
    }

    let ingest = prepared.ingest.clone();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(prepared.run(http, async {
        let _ = stop_rx.await;
    }));
    // Publishes before the server subscribed would reach nobody.
    while !ingest.connected.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut opts = MqttOptions::new("latency-bench", "127.0.0.1", mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    let acks = Arc::new(tokio::sync::Notify::new());
    let acks2 = acks.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acks2.notify_one(),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("publisher: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    // Two bad samples each: below the rule's three.
    for d in &mut devs {
        for _ in 0..2 {
            let (topic, payload) = d.frame(52.0);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        arrivals.lock().unwrap().is_empty(),
        "a ticket opened too early"
    );

    let mut sent: HashMap<String, Instant> = HashMap::new();
    for d in &mut devs {
        let (topic, payload) = d.frame(51.0);
        sent.insert(d.id.to_string(), Instant::now());
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        tokio::time::sleep(Duration::from_millis(args.spacing_ms)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().unwrap().len() < devs.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    if arrivals.len() < devs.len() {
        eprintln!("stored: {:?}", store.counts().await?);
        eprintln!(
            "tickets: {}",
            store
                .tickets(&parc_server::store::TicketScope::All, false, 100_000)
                .await?
                .len()
        );
    }
    ensure!(
        arrivals.len() == devs.len(),
        "{} of {} tickets delivered within 60 s",
        arrivals.len(),
        devs.len()
    );
    let mut lat: Vec<f64> = sent
        .iter()
        .map(|(id, t)| (arrivals[id] - *t).as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "engine: {}",
        if args.database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    println!(
        "tickets: {}  latency ms: p50 {:.0}  p95 {:.0}  max {:.0}",
        lat.len(),
        q(0.5),
        q(0.95),
        q(1.0)
    );
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    Ok(())
}
