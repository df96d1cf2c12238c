//! Throughput of the server's per-message protocol work: parse a sealed health frame,
//! verify its HMAC, decode and validate the message. Prints the median of 7 runs.
//!
//! `cargo run --release -p parc-protocol --example decode_bench`

use std::time::Instant;

use chrono::{TimeZone, Utc};
use parc_protocol::health::{BatteryHealth, Filesystem, Temperature};
use parc_protocol::{
    Body, DeviceId, DeviceKey, Epoch, Frame, Header, Health, Limits, Message, seal,
};

fn main() {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 8, 30, 0).unwrap();
    let key = DeviceKey::from_bytes([7; 32]);
    let msg = Message::new(
        Header {
            device_id: DeviceId::parse("d-0123456789abcdef").unwrap(),
            epoch: Epoch::from_random([1; 16]),
            seq: 42,
            collected_at: now,
            sent_at: now,
        },
        Body::Health(Box::new(Health {
            uptime_seconds: Some(3600),
            cpu_usage_percent: Some(12.0),
            memory_used_bytes: Some(2_000_000_000),
            filesystems: vec![Filesystem {
                mount: "/".into(),
                total_bytes: Some(250_000_000_000),
                available_bytes: Some(1),
            }],
            batteries: vec![BatteryHealth {
                name: "BAT0".into(),
                health_percent: Some(81.5),
                cycle_count: Some(300),
                ..Default::default()
            }],
            temperatures: (0..4)
                .map(|i| Temperature {
                    sensor: format!("hwmon1/temp{i}"),
                    label: None,
                    celsius: 45.0,
                    critical_celsius: Some(100.0),
                })
                .collect(),
            ..Default::default()
        })),
    );
    let (topic, payload) = seal(&msg, &key);
    let limits = Limits::default();
    const N: u32 = 100_000;
    let mut rates = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        for _ in 0..N {
            let frame = Frame::parse(&topic, &payload, &limits).unwrap();
            let m = frame.open(&key, now, &limits).unwrap();
            std::hint::black_box(m);
        }
        rates.push(f64::from(N) / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "payload {} bytes; parse + verify + decode: median {:.0} frames/s on one core (7 runs of {N})",
        payload.len(),
        rates[3]
    );
}
