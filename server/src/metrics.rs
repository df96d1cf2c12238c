//! Server metrics, rendered at `/metrics` in the Prometheus/OpenMetrics text format.
//!
//! One registry per server instance (not a process-global recorder) so that tests can
//! run several servers in one process and read each one's figures. Metrics carry no
//! device identifiers as labels: cardinality must stay bounded whatever the fleet size.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub received: Counter,
    pub stored: Family<Labels, Counter>,
    pub rejected: Family<Labels, Counter>,
    pub duplicates: Counter,
    pub stale: Counter,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub commit_failures: Counter,
    pub queue_depth: Gauge<i64, AtomicI64>,
    /// Messages read and not yet committed: queued, or in the batch being written.
    pub uncommitted: Gauge<i64, AtomicI64>,
    pub devices_online: Gauge<i64, AtomicI64>,
    pub mqtt_connected: Gauge<i64, AtomicI64>,
    pub rules_samples: Counter,
    pub findings: Family<Labels, Counter>,
    pub tickets_opened: Family<Labels, Counter>,
    pub deliveries: Family<Labels, Counter>,
    pub delivery_failures: Family<Labels, Counter>,
    pub maintenance_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("parc");
        let m = Self {
            received: Counter::default(),
            stored: Family::default(),
            rejected: Family::default(),
            duplicates: Counter::default(),
            stale: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            commit_failures: Counter::default(),
            queue_depth: Gauge::default(),
            uncommitted: Gauge::default(),
            devices_online: Gauge::default(),
            mqtt_connected: Gauge::default(),
            rules_samples: Counter::default(),
            findings: Family::default(),
            tickets_opened: Family::default(),
            deliveries: Family::default(),
            delivery_failures: Family::default(),
            maintenance_failures: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ingest_received",
            "MQTT publishes received on device topics",
            m.received.clone(),
        );
        registry.register(
            "ingest_stored",
            "Messages stored, by kind",
            m.stored.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Publishes refused and quarantined, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "ingest_duplicates",
            "Messages already stored (redelivery or replay), acknowledged and not stored again",
            m.duplicates.clone(),
        );
        registry.register(
            "ingest_stale",
            "Messages older than raw retention, acknowledged and not stored",
            m.stale.clone(),
        );
        registry.register(
            "ingest_batch_size",
            "Messages per committed batch",
            m.batch_size.clone(),
        );
        registry.register(
            "ingest_commit_seconds",
            "Time to commit one batch",
            m.commit_seconds.clone(),
        );
        registry.register(
            "ingest_commit_failures",
            "Batch commits that failed and were retried",
            m.commit_failures.clone(),
        );
        registry.register(
            "ingest_queue_depth",
            "Messages waiting for the writer",
            m.queue_depth.clone(),
        );
        registry.register(
            "ingest_uncommitted",
            "Messages read and not yet committed (queued, or in the batch being written)",
            m.uncommitted.clone(),
        );
        registry.register(
            "devices_online",
            "Devices whose last status was online",
            m.devices_online.clone(),
        );
        registry.register(
            "mqtt_connected",
            "1 when the ingest is subscribed to the broker",
            m.mqtt_connected.clone(),
        );
        registry.register(
            "rules_samples",
            "Health samples evaluated by the fault rules",
            m.rules_samples.clone(),
        );
        registry.register(
            "findings_raised",
            "Faults raised by the rules, by rule",
            m.findings.clone(),
        );
        registry.register(
            "tickets_opened",
            "Tickets opened, by kind and queue",
            m.tickets_opened.clone(),
        );
        registry.register(
            "deliveries",
            "Ticket deliveries, by channel and outcome (delivered, coalesced, failed)",
            m.deliveries.clone(),
        );
        registry.register(
            "delivery_attempt_failures",
            "Delivery attempts that failed and will be retried or given up, by channel",
            m.delivery_failures.clone(),
        );
        registry.register(
            "maintenance_failures",
            "Rule or dispatch rounds that failed on the database and were retried",
            m.maintenance_failures.clone(),
        );
        Self { registry, ..m }
    }

    pub fn label(key: &'static str, value: &str) -> Labels {
        vec![(key, value.to_string())]
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
