//! Fills a database with a large fleet's history through the store's own ingest path
//! (`Store::write_batch`, the same transaction the ingest commits), for benchmarks of
//! the read side: DEVICES devices with one inventory each, and SAMPLES health samples
//! spread over the last DAYS days (inside raw retention), round-robin over the devices.
//! Deterministic readings; prints rows per second and the database size.
//!
//! ```sh
//! cargo build --release -p parc-server --examples
//! target/release/examples/populate --data-dir /tmp/big --devices 100000 --samples 10000000
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use chrono::{TimeDelta, Utc};
use clap::Parser;
use parc_protocol::health::{BatteryHealth, Filesystem, Temperature};
use parc_protocol::inventory::{Identity, Os};
use parc_protocol::{Body, DeviceId, DeviceKey, Epoch, Header, Health, Inventory, Message};
use parc_server::store::{Item, NewDevice, Store};

#[derive(Debug, Parser)]
struct Args {
    /// SQLite data directory (ignored with --url).
    #[arg(long, default_value = "populate-data")]
    data_dir: PathBuf,
    /// Database URL (e.g. postgres://…); default SQLite in --data-dir.
    #[arg(long)]
    url: Option<String>,
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    #[arg(long, default_value_t = 10_000_000)]
    samples: usize,
    #[arg(long, default_value_t = 25)]
    days: i64,
    #[arg(long, default_value_t = 1000)]
    batch: usize,
}

fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn device_id(i: usize) -> DeviceId {
    DeviceId::parse(&format!("d-pop-{i:06}")).expect("valid id")
}

fn health(k: u64) -> Health {
    Health {
        uptime_seconds: Some(600 + k % 20_000),
        cpu_usage_percent: Some((40.0 * unit(k)).round()),
        memory_total_bytes: Some(8 << 30),
        memory_used_bytes: Some((3.0 * unit(k + 1) * (1u64 << 30) as f64) as u64 + (1 << 30)),
        filesystems: vec![Filesystem {
            mount: "/".into(),
            total_bytes: Some(250_000_000_000),
            available_bytes: Some(180_000_000_000),
        }],
        batteries: vec![BatteryHealth {
            name: "BAT0".into(),
            charge_percent: Some((100.0 * unit(k + 2)).round()),
            cycle_count: Some(300),
            energy_full_design_mwh: Some(54_700),
            energy_full_mwh: Some(47_000),
            health_percent: Some(85.9),
            ..Default::default()
        }],
        temperatures: vec![Temperature {
            sensor: "thermal_zone0".into(),
            label: Some("x86_pkg_temp".into()),
            celsius: (380.0 + 200.0 * unit(k + 3)).round() / 10.0,
            critical_celsius: Some(100.0),
        }],
        displays_connected: Some(1),
        touch_devices: Some(0),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    std::fs::create_dir_all(&a.data_dir)?;
    let url = a
        .url
        .clone()
        .unwrap_or_else(|| Store::sqlite_url(&a.data_dir));
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("opening {url}"))?;
    let now = Utc::now();
    let epoch = Epoch::from_random([7; 16]);
    let t0 = Instant::now();
    for i in 0..a.devices {
        store
            .upsert_device(
                &NewDevice {
                    device_id: device_id(i),
                    key: DeviceKey::from_bytes([1; 32]),
                    serial: Some(format!("POP{i:07}")),
                    manufacturer: Some("LENOVO".into()),
                    product_name: Some("ThinkPad X13 Gen 2i".into()),
                    hostname: Some(format!("chariot-{i:06}")),
                    agent_version: Some("0.1.0".into()),
                    mqtt_password_sha256: None,
                    mosquitto_password_line: None,
                },
                now,
            )
            .await?;
    }
    eprintln!(
        "{} devices in {:.1} s",
        a.devices,
        t0.elapsed().as_secs_f64()
    );
    let header = |i: usize, seq: u64, at| Header {
        device_id: device_id(i),
        epoch: epoch.clone(),
        seq,
        collected_at: at,
        sent_at: at,
    };
    let t1 = Instant::now();
    let stale_before = now - TimeDelta::days(30);
    for chunk in (0..a.devices).collect::<Vec<_>>().chunks(a.batch / 4) {
        let items: Vec<Item> = chunk
            .iter()
            .map(|&i| {
                let inv = Inventory {
                    identity: Identity {
                        system_serial: Some(format!("POP{i:07}")),
                        system_manufacturer: Some("LENOVO".into()),
                        product_name: Some("ThinkPad X13 Gen 2i".into()),
                        ..Default::default()
                    },
                    os: Os {
                        hostname: Some(format!("chariot-{i:06}")),
                        ..Default::default()
                    },
                    agent_version: "0.1.0".into(),
                    ..Default::default()
                };
                Item::accepted(Message::new(
                    header(i, 1, now - TimeDelta::days(a.days)),
                    Body::Inventory(Box::new(inv)),
                ))
            })
            .collect();
        store.write_batch(&items, now, stale_before).await?;
    }
    eprintln!(
        "{} inventories in {:.1} s",
        a.devices,
        t1.elapsed().as_secs_f64()
    );
    let per_device = a.samples.div_ceil(a.devices.max(1)).max(1) as i64;
    let step_ms = (a.days * 86_400_000 / per_device).max(1);
    let start = now - TimeDelta::days(a.days);
    let t2 = Instant::now();
    let mut items = Vec::with_capacity(a.batch);
    let mut last_report = Instant::now();
    for k in 0..a.samples {
        let i = k % a.devices;
        let n = (k / a.devices) as i64;
        let at = start + TimeDelta::milliseconds(n * step_ms + (i as i64 * 7919) % step_ms);
        items.push(Item::accepted(Message::new(
            header(i, n as u64 + 2, at),
            Body::Health(Box::new(health(k as u64))),
        )));
        if items.len() == a.batch || k + 1 == a.samples {
            store.write_batch(&items, Utc::now(), stale_before).await?;
            items.clear();
            if last_report.elapsed().as_secs() >= 30 {
                last_report = Instant::now();
                eprintln!(
                    "{} samples, {:.0}/s",
                    k + 1,
                    (k + 1) as f64 / t2.elapsed().as_secs_f64()
                );
            }
        }
    }
    let secs = t2.elapsed().as_secs_f64();
    eprintln!(
        "{} health samples in {secs:.1} s ({:.0}/s)",
        a.samples,
        a.samples as f64 / secs
    );
    let c = store.counts().await?;
    println!(
        "devices {}, health samples {}, hourly rows {}, inventories {}",
        c.devices, c.health_samples, c.health_hours, c.inventories
    );
    if a.url.is_none() {
        let size: u64 = std::fs::read_dir(&a.data_dir)?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!("database files: {:.1} MiB", size as f64 / 1_048_576.0);
    }
    store.close().await;
    Ok(())
}
