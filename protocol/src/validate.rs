//! Range checks applied after a message has the right shape: percentages 0–100,
//! temperatures −40…150 °C, timestamps at most `max_future` ahead of `now`, `seq` ≥ 1.
//!
//! Pure: `now` is passed in, never read from a clock here. Errors name the field path.

use chrono::{DateTime, Utc};

use crate::error::DecodeError;
use crate::message::{Body, Limits, Message};

const PERCENT: (f64, f64, &str) = (0.0, 100.0, "0..=100 %");
const CELSIUS: (f64, f64, &str) = (-40.0, 150.0, "-40..=150 °C");
const LOAD: (f64, f64, &str) = (0.0, 1.0e6, "0..=1000000");
const LATENCY_MS: (f64, f64, &str) = (0.0, 3.6e6, "0..=3600000 ms");
const DBM: (f64, f64, &str) = (-150.0, 30.0, "-150..=30 dBm");

struct Check<'a> {
    now: DateTime<Utc>,
    limits: &'a Limits,
}

impl Check<'_> {
    fn range(
        &self,
        path: impl FnOnce() -> String,
        v: Option<f64>,
        r: (f64, f64, &'static str),
    ) -> Result<(), DecodeError> {
        match v {
            Some(x) if !(x >= r.0 && x <= r.1) => Err(DecodeError::OutOfRange {
                path: path(),
                value: x.to_string(),
                range: r.2,
            }),
            _ => Ok(()),
        }
    }

    fn time(
        &self,
        path: impl FnOnce() -> String,
        t: Option<&DateTime<Utc>>,
    ) -> Result<(), DecodeError> {
        match t {
            Some(t) if *t > self.now + self.limits.max_future => {
                Err(DecodeError::FutureTimestamp {
                    path: path(),
                    value: t.to_rfc3339(),
                    max_hours: self.limits.max_future.num_hours(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Largest `seq`: 2^53 − 1.
pub const MAX_SEQ: u64 = 9_007_199_254_740_991;

pub(crate) fn message(m: &Message, now: DateTime<Utc>, limits: &Limits) -> Result<(), DecodeError> {
    let c = Check { now, limits };
    // The upper bound keeps seq exact in JavaScript clients and in signed 64-bit
    // database columns.
    if m.header.seq == 0 || m.header.seq > MAX_SEQ {
        return Err(DecodeError::OutOfRange {
            path: "seq".into(),
            value: m.header.seq.to_string(),
            range: "1..=9007199254740991",
        });
    }
    c.time(|| "collected_at".into(), Some(&m.header.collected_at))?;
    c.time(|| "sent_at".into(), Some(&m.header.sent_at))?;
    match &m.body {
        Body::Health(h) => health(&c, h),
        Body::Inventory(i) => c.time(|| "body.os.boot_time".into(), i.os.boot_time.as_ref()),
        Body::Event(e) => {
            if e.event_type.is_empty()
                || e.event_type.len() > 64
                || !e
                    .event_type
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(DecodeError::Schema {
                    path: "body.event_type".into(),
                    message: "must be 1 to 64 characters of a-z, 0-9 and '_'".into(),
                });
            }
            c.time(|| "body.occurred_at".into(), Some(&e.occurred_at))
        }
        Body::Hello(_) | Body::Status(_) | Body::Cmd(_) => Ok(()),
    }
}

fn health(c: &Check<'_>, h: &crate::health::Health) -> Result<(), DecodeError> {
    c.time(|| "body.boot_time".into(), h.boot_time.as_ref())?;
    c.range(
        || "body.cpu_usage_percent".into(),
        h.cpu_usage_percent,
        PERCENT,
    )?;
    for (name, v) in [
        ("load_1", h.load_1),
        ("load_5", h.load_5),
        ("load_15", h.load_15),
    ] {
        c.range(|| format!("body.{name}"), v, LOAD)?;
    }
    for (i, b) in h.batteries.iter().enumerate() {
        c.range(
            || format!("body.batteries[{i}].charge_percent"),
            b.charge_percent,
            PERCENT,
        )?;
        c.range(
            || format!("body.batteries[{i}].health_percent"),
            b.health_percent,
            PERCENT,
        )?;
    }
    for (i, t) in h.temperatures.iter().enumerate() {
        c.range(
            || format!("body.temperatures[{i}].celsius"),
            Some(t.celsius),
            CELSIUS,
        )?;
        c.range(
            || format!("body.temperatures[{i}].critical_celsius"),
            t.critical_celsius,
            CELSIUS,
        )?;
    }
    for (i, s) in h.storage.iter().enumerate() {
        // NVMe "percentage used" may exceed 100 by specification (endurance overrun).
        c.range(
            || format!("body.storage[{i}].nvme_percentage_used_percent"),
            s.nvme_percentage_used_percent,
            (0.0, 255.0, "0..=255 %"),
        )?;
        c.range(
            || format!("body.storage[{i}].temperature_celsius"),
            s.temperature_celsius,
            CELSIUS,
        )?;
    }
    for (i, p) in h.probes.iter().enumerate() {
        c.range(
            || format!("body.probes[{i}].latency_ms"),
            p.latency_ms,
            LATENCY_MS,
        )?;
    }
    for (i, w) in h.wifi.iter().enumerate() {
        c.range(|| format!("body.wifi[{i}].signal_dbm"), w.signal_dbm, DBM)?;
        c.range(
            || format!("body.wifi[{i}].quality_percent"),
            w.quality_percent,
            PERCENT,
        )?;
    }
    Ok(())
}
