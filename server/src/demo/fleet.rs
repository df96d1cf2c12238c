//! The demo's simulated fleet: laptops in mobile carts and interactive displays, each
//! with its own device id, key, epoch and sequence, publishing sealed frames through the
//! embedded broker's in-process links — the same bytes a real agent sends. One impostor
//! tries to write as device 0, with its own key, and must be refused by the ingest.
//!
//! It never registers the impostor's messages as device 0's: the point is to show the
//! server refusing them. The full simulator (real enrolment, time acceleration, fault
//! schedules) is `parc-sim`'s job.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use parc_protocol::health::{BatteryHealth, Filesystem, Temperature};
use parc_protocol::inventory::{BatteryInfo, Display, Identity, Os};
use parc_protocol::{
    Body, DeviceId, DeviceKey, Epoch, Header, Health, Hello, Inventory, Message, Presence, Status,
    seal,
};
use rumqttd::local::{LinkRx, LinkTx};

use crate::broker::{BrokerError, EmbeddedBroker};
use crate::store::NewDevice;

struct Device {
    id: DeviceId,
    key: DeviceKey,
    epoch: Epoch,
    seq: u64,
    laptop: bool,
    battery_health: f64,
    wear_per_sample: f64,
    rng: u64,
    tx: LinkTx,
    _rx: LinkRx,
}

impl Device {
    fn next(&mut self) -> f64 {
        // xorshift64*: plenty for jitter in a demo, and no extra dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn message(&mut self, body: Body) -> Message {
        self.seq += 1;
        let now = Utc::now();
        Message::new(
            Header {
                device_id: self.id.clone(),
                epoch: self.epoch.clone(),
                seq: self.seq,
                collected_at: now,
                sent_at: now,
            },
            body,
        )
    }

    fn publish(&mut self, body: Body) {
        let msg = self.message(body);
        let (topic, payload) = seal(&msg, &self.key);
        if let Err(e) = self.tx.publish(topic, payload) {
            tracing::warn!(device = %self.id, error = %e, "demo device could not publish");
        }
    }

    fn inventory(&self, n: usize) -> Inventory {
        let (manufacturer, product, chassis) = if self.laptop {
            ("LENOVO", "ThinkPad X13 Gen 2i", "notebook")
        } else {
            ("Speechi", "SPE-86-ENI", "all-in-one")
        };
        Inventory {
            identity: Identity {
                system_serial: Some(format!("PARCDEMO{n:04}")),
                system_manufacturer: Some(manufacturer.into()),
                product_name: Some(product.into()),
                chassis_type: Some(chassis.into()),
                ..Default::default()
            },
            os: Os {
                name: Some("Debian GNU/Linux".into()),
                version: Some("12 (bookworm)".into()),
                hostname: Some(format!(
                    "{}-{n:03}",
                    if self.laptop {
                        "cm2-chariot"
                    } else {
                        "eni-salle"
                    }
                )),
                ..Default::default()
            },
            agent_version: env!("CARGO_PKG_VERSION").into(),
            batteries: if self.laptop {
                vec![BatteryInfo {
                    name: "BAT0".into(),
                    energy_full_design_mwh: Some(54_700),
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            displays: vec![Display {
                connector: "card0-HDMI-A-1".into(),
                connected: true,
                edid: None,
            }],
            ..Default::default()
        }
    }

    fn health(&mut self) -> Health {
        self.battery_health =
            (self.battery_health - self.wear_per_sample * (0.5 + self.next())).max(20.0);
        let temp = 38.0 + 20.0 * self.next();
        Health {
            uptime_seconds: Some(3600),
            cpu_usage_percent: Some((100.0 * self.next() * 0.3).round()),
            filesystems: vec![Filesystem {
                mount: "/".into(),
                total_bytes: Some(250_000_000_000),
                available_bytes: Some(180_000_000_000),
            }],
            batteries: if self.laptop {
                let full = (54_700.0 * self.battery_health / 100.0) as u64;
                vec![BatteryHealth {
                    name: "BAT0".into(),
                    energy_full_design_mwh: Some(54_700),
                    energy_full_mwh: Some(full),
                    health_percent: Some((self.battery_health * 10.0).round() / 10.0),
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            temperatures: vec![Temperature {
                sensor: "thermal_zone0".into(),
                label: Some("x86_pkg_temp".into()),
                celsius: (temp * 10.0).round() / 10.0,
                critical_celsius: Some(100.0),
            }],
            displays_connected: Some(1),
            touch_devices: Some(if self.laptop { 0 } else { 1 }),
            ..Default::default()
        }
    }
}

pub struct Fleet {
    devices: Vec<Device>,
    impostor: Device,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b
}

impl Fleet {
    /// Creates the devices' links (before the broker starts) and enrols their keys.
    pub fn new(broker: &EmbeddedBroker, count: usize) -> Result<Self, BrokerError> {
        let make = |name: String, n: usize| -> Result<Device, BrokerError> {
            let (tx, rx) = broker.link(&name)?;
            let seed = u64::from_le_bytes(random::<8>()) | 1;
            Ok(Device {
                id: DeviceId::parse(&name).expect("demo ids are valid"),
                key: DeviceKey::from_bytes(random::<32>()),
                epoch: Epoch::from_random(random::<16>()),
                seq: 0,
                laptop: !n.is_multiple_of(4),
                battery_health: 75.0 + (seed % 23) as f64,
                // A few devices wear fast, so that faults emerge during the demo.
                wear_per_sample: if n % 7 == 3 { 1.5 } else { 0.02 },
                rng: seed,
                tx,
                _rx: rx,
            })
        };
        let mut devices = Vec::with_capacity(count);
        for n in 0..count {
            devices.push(make(format!("d-demo-{n:04}"), n)?);
        }
        let impostor = make("d-demo-impostor".into(), 1)?;
        Ok(Self { devices, impostor })
    }

    /// What enrolment would have recorded for each simulated device (the impostor is
    /// a genuine device too: it just tries to write as another one).
    pub fn enrolments(&self) -> Vec<NewDevice> {
        self.devices
            .iter()
            .chain(std::iter::once(&self.impostor))
            .map(|d| NewDevice {
                device_id: d.id.clone(),
                key: d.key.clone(),
                serial: None,
                manufacturer: None,
                product_name: None,
                hostname: None,
                agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
                // Simulated devices publish through in-process links, not the network.
                mqtt_password_sha256: None,
                mosquitto_password_line: None,
            })
            .collect()
    }

    pub async fn run(mut self, interval: Duration, shutdown: impl Future<Output = ()>) {
        for (n, d) in self.devices.iter_mut().enumerate() {
            d.publish(Body::Hello(Hello {
                agent_version: env!("CARGO_PKG_VERSION").into(),
                capabilities: vec!["battery".into(), "thermal".into()],
                health_interval_seconds: Some(interval.as_secs() as u32),
                inventory_interval_seconds: None,
                platform: Some("linux-x86_64".into()),
            }));
            d.publish(Body::Status(Status {
                state: Presence::Online,
            }));
            let inv = d.inventory(n);
            d.publish(Body::Inventory(Box::new(inv)));
        }
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            for d in &mut self.devices {
                let h = d.health();
                d.publish(Body::Health(Box::new(h)));
            }
            self.impersonate();
        }
        for d in &mut self.devices {
            d.publish(Body::Status(Status {
                state: Presence::Offline,
            }));
        }
    }

    /// The impostor signs a message claiming to be device 0 with its own key and
    /// publishes it on device 0's topic: the ingest must refuse it (bad signature).
    fn impersonate(&mut self) {
        let Some(victim) = self.devices.first() else {
            return;
        };
        let victim_id = victim.id.clone();
        let health = self.impostor.health();
        let mut forged = self.impostor.message(Body::Health(Box::new(health)));
        forged.header.device_id = victim_id;
        let (topic, payload) = seal(&forged, &self.impostor.key);
        if let Err(e) = self.impostor.tx.publish(topic, payload) {
            tracing::warn!(error = %e, "impostor could not publish");
        }
    }
}
