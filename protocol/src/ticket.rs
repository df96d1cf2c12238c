//! The maintenance-ticket notice Parc sends to whoever must act on a fault: the JSON
//! body of a webhook delivery (and the source of the e-mail text), documented in
//! `protocol/README.md` § Ticket notices and pinned by `tests/data/ticket-notice.json`.
//!
//! A notice carries everything a contract holder needs without calling anyone: the
//! devices with their serials, lot, order and delivery, warranty end, site, the fault
//! and its evidence, and the GTI/GTR deadlines. It must never carry anything about the
//! people using the devices. Like the rest of this crate it does no IO.

use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Version of the notice format; receivers reject other majors.
pub const TICKET_NOTICE_VERSION: &str = "1.0";

/// Header carrying `sha256=<hex HMAC-SHA256 of the body with the holder's secret>`.
pub const SIGNATURE_HEADER: &str = "X-Parc-Signature";
/// Header carrying the delivery's idempotency key: the same for every retry of one
/// delivery, so a receiver applies it once.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketNotice {
    pub version: String,
    /// `ticket.created` or `ticket.updated`.
    pub event: String,
    pub sent_at: DateTime<Utc>,
    pub ticket: TicketDocument,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketKind {
    /// One device, one fault.
    Device,
    /// Many devices of one lot and model failing the same way: one grouped claim.
    Batch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketDocument {
    /// Stable reference, e.g. `PARC-2026-000042`; quote it in every exchange.
    pub reference: String,
    pub kind: TicketKind,
    /// new, sent, acknowledged, in_progress, resolved, closed, rejected, reopened.
    pub status: String,
    pub opened_at: DateTime<Utc>,
    /// `holder` (the lot's contract holder acts) or `authority` (the owner's own team).
    pub queue: String,
    pub fault: Fault,
    pub devices: Vec<DeviceRef>,
    pub lot: Option<LotRef>,
    pub holder: Option<HolderRef>,
    pub authority: Option<AuthorityRef>,
    /// The authority's desk to call back, when configured.
    pub contact: Option<ContactRef>,
    pub deadlines: DeadlineRefs,
    /// How many times the fault was seen while this ticket was open.
    pub occurrences: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub rule_id: String,
    pub description: Option<String>,
    /// warranty_hardware, local_issue or connectivity.
    pub category: String,
    /// info, minor, major or critical.
    pub severity: String,
    /// The reading the rule watches, e.g. `battery_health_percent`.
    pub signal: String,
    /// The rule's comparison in words, e.g. `< 60`.
    pub threshold: String,
    /// The reading that completed the rule's hysteresis.
    pub value: f64,
    /// First sample of the run that raised the fault.
    pub since: DateTime<Utc>,
    /// Samples in that run.
    pub samples: u32,
    /// Recent history of the reading (oldest first), e.g. the battery-health curve.
    pub history: Vec<Reading>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub at: DateTime<Utc>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRef {
    pub device_id: String,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub hostname: Option<String>,
    pub order_reference: Option<String>,
    pub delivered_on: Option<NaiveDate>,
    pub accepted_on: Option<NaiveDate>,
    /// First day no longer covered.
    pub warranty_end: Option<NaiveDate>,
    pub battery_warranty_end: Option<NaiveDate>,
    pub site: Option<SiteRef>,
    pub cart: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteRef {
    pub uai: String,
    pub name: String,
    pub street: String,
    pub postcode: String,
    pub city: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LotRef {
    pub contract: String,
    pub number: u32,
    pub title: String,
    /// on_site or return_to_base.
    pub service_mode: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderRef {
    pub id: String,
    pub company: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorityRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactRef {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DeadlineRefs {
    /// Guaranteed intervention time, on the lot's business calendar.
    pub gti_due: Option<DateTime<Utc>>,
    /// Guaranteed restoration time.
    pub gtr_due: Option<DateTime<Utc>>,
}

/// The `X-Parc-Signature` value for `body`: `sha256=` and the lowercase hex
/// HMAC-SHA256 of the exact body bytes under the holder's webhook secret.
pub fn sign_notice(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks an `X-Parc-Signature` value in constant time.
pub fn verify_notice(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}
