//! A synthetic fleet for benchmarks: devices delivered under the demo dataset's orders,
//! and their health samples, written with multi-row statements in large transactions.
//! Orders of magnitude faster than the ingest path, which is measured on its own.
//!
//! Benchmarks only: never called by the server. The values are deterministic functions
//! of the device number so every run builds the same database.

use chrono::{DateTime, Utc};

use super::fleet::Sql;
use super::{Store, StoreError, ms};

/// Where the synthetic devices were delivered: (order, contract, lot, site, model).
const PLACES: [(&str, &str, i64, &str, &str); 4] = [
    (
        "BC-2024-001",
        "HV-2024-017",
        2,
        "0420101G",
        "ThinkPad X13 Gen 2i",
    ),
    ("BC-2024-002", "HV-2024-017", 1, "0420201R", "SPE-86-ENI"),
    (
        "BC-2025-004",
        "HV-2024-017",
        2,
        "0570301T",
        "ThinkPad X13 Gen 2i",
    ),
    ("BC-2026-005", "HV-2024-017", 1, "0420103J", "SPE-86-ENI"),
];

/// The serial of synthetic device `i`.
pub fn synthetic_serial(i: usize) -> String {
    format!("SYN{i:08}")
}

/// The id of synthetic device `i`.
pub fn synthetic_device_id(i: usize) -> String {
    format!("d-syn-{i:08}")
}

/// The host name of synthetic device `i`.
pub fn synthetic_hostname(i: usize) -> String {
    format!("pc-{:04}-{i:08}", i % 997)
}

impl Store {
    /// Writes devices `0..devices` (delivered under the demo dataset, which must be
    /// loaded) with `samples_per_device` hourly health samples each, ending at `now`.
    /// `progress` gets the samples written so far.
    pub async fn fill_synthetic_fleet(
        &self,
        devices: usize,
        samples_per_device: usize,
        now: DateTime<Utc>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), StoreError> {
        let rows = 400;
        let mut tx = self.begin_write().await?;
        for start in (0..devices).step_by(rows) {
            let end = (start + rows).min(devices);
            let mut d = Sql::new(
                "INSERT INTO deliveries (serial, model, order_ref, contract_ref, lot_number, \
                 site_uai, delivered_on, imported_at_ms) VALUES ",
            );
            let mut v = Sql::new(
                "INSERT INTO devices (device_id, key_b64, serial, manufacturer, product_name, \
                 hostname, agent_version, enrolled_at_ms, first_seen_ms, last_seen_ms) VALUES ",
            );
            for i in start..end {
                let (order, contract, lot, site, model) = PLACES[i % PLACES.len()];
                if i > start {
                    d.push(", ");
                    v.push(", ");
                }
                d.push("(")
                    .text(&synthetic_serial(i))
                    .push(", ")
                    .text(model)
                    .push(", ")
                    .text(order)
                    .push(", ")
                    .text(contract)
                    .push(", ")
                    .int(lot)
                    .push(", ")
                    .text(site)
                    .push(", '2024-09-02', ")
                    .int(ms(now))
                    .push(")");
                // One device in 50 has been silent for a week.
                let last_seen = if i % 50 == 0 {
                    now - chrono::Duration::days(7)
                } else {
                    now - chrono::Duration::minutes((i % 600) as i64)
                };
                v.push("(")
                    .text(&synthetic_device_id(i))
                    .push(", 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', ")
                    .text(&synthetic_serial(i))
                    .push(", 'LENOVO', ")
                    .text(model)
                    .push(", ")
                    .text(&synthetic_hostname(i))
                    .push(", '0.1.0', ")
                    .int(ms(now - chrono::Duration::days(400)))
                    .push(", ")
                    .int(ms(now - chrono::Duration::days(400)))
                    .push(", ")
                    .int(ms(last_seen))
                    .push(")");
            }
            d.execute(&mut tx).await?;
            v.execute(&mut tx).await?;
        }
        tx.commit().await?;

        let mut written = 0u64;
        let per_statement = 500;
        let total = devices * samples_per_device;
        let mut n = 0;
        while n < total {
            let mut tx = self.begin_write().await?;
            for _ in 0..40 {
                if n >= total {
                    break;
                }
                let end = (n + per_statement).min(total);
                let mut h = Sql::new(
                    "INSERT INTO health_samples (device_id, epoch, seq, collected_at_ms, \
                     received_at_ms, battery_health_percent, temperature_max_celsius, \
                     cpu_usage_percent, body) VALUES ",
                );
                for k in n..end {
                    // Sample-major order: every device gets its k-th sample before any
                    // gets its (k+1)-th, as a live fleet would write them.
                    let (s, i) = (k / devices, k % devices);
                    let at = now - chrono::Duration::hours((samples_per_device - s) as i64);
                    let wear = (i % 40) as f64 + s as f64 * 0.01;
                    if k > n {
                        h.push(", ");
                    }
                    h.push("(")
                        .text(&synthetic_device_id(i))
                        .push(", 'e1', ")
                        .int(s as i64)
                        .push(", ")
                        .int(ms(at))
                        .push(", ")
                        .int(ms(at))
                        .push(", ")
                        .real(100.0 - wear)
                        .push(", ")
                        .real(40.0 + (i % 60) as f64)
                        .push(", ")
                        .real((k % 100) as f64)
                        .push(", '{}')");
                }
                h.execute(&mut tx).await?;
                written += (end - n) as u64;
                n = end;
            }
            tx.commit().await?;
            progress(written);
        }
        Ok(())
    }
}
