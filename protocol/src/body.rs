//! The small bodies: `hello`, `status`, `event` (device → server) and `cmd`
//! (server → device).
//!
//! Open sets (event types, capabilities) are strings so that a newer agent's additions
//! stay readable by an older server within v1; closed sets are enums.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// Birth message, sent on every connection.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub agent_version: String,
    /// What this agent can do: "battery", "smart", "edid", "touch", "self_update"…
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub health_interval_seconds: Option<u32>,
    pub inventory_interval_seconds: Option<u32>,
    /// "linux-x86_64", "windows-x86_64".
    pub platform: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Online,
    Offline,
}

/// Retained presence; the `offline` one is also registered as the MQTT last will.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: Presence,
}

/// Well-known event types. The set is open: a server must store types it does not know.
pub mod event_type {
    pub const CRASH: &str = "crash";
    pub const UNEXPECTED_SHUTDOWN: &str = "unexpected_shutdown";
    pub const COMPONENT_REPLACED: &str = "component_replaced";
    pub const UPDATE_APPLIED: &str = "update_applied";
    pub const UPDATE_REFUSED: &str = "update_refused";
    pub const UPDATE_ROLLED_BACK: &str = "update_rolled_back";
    pub const SPOOL_DROPPED: &str = "spool_dropped";
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// snake_case identifier, see [`event_type`].
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    /// Human-readable one-liner.
    pub detail: Option<String>,
    /// Type-specific structured data.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// Server → device command.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Collect and publish health and inventory now.
    CollectNow,
    /// Change the collection intervals; absent fields keep their value.
    SetInterval {
        health_interval_seconds: Option<u32>,
        inventory_interval_seconds: Option<u32>,
    },
    /// A newer agent release is available on `channel`.
    UpdateAvailable {
        version: String,
        channel: String,
        manifest_url: String,
    },
}
