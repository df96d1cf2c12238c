//! MQTT topic scheme `parc/v1/{device_id}/{kind}`: building, parsing, the server's
//! subscription filters and the per-device broker ACL patterns.
//!
//! This is the only place in Parc that spells a topic string; every other crate calls
//! these functions. It must never accept a device id that could widen a filter
//! (`+`, `#`, `/`) or address a broker system topic (`$`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;

/// First two levels of every Parc topic; the second level is the protocol major version.
pub const TOPIC_ROOT: &str = "parc/v1";

/// Identifier the server assigns to a device at enrolment.
///
/// 1 to 64 characters from `[A-Za-z0-9_-]`: safe as one MQTT topic level and as a broker
/// user name, so it can appear in ACL patterns unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("device id is empty".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "device id is {} characters long, the maximum is {}",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "device id {s:?} contains {c:?}; only letters, digits, '-' and '_' are allowed"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<DeviceId> for String {
    fn from(d: DeviceId) -> String {
        d.0
    }
}

impl FromStr for DeviceId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Message kinds; the last topic level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Birth message sent on every connection: agent version and capabilities.
    Hello,
    /// Full hardware and OS identity, at start and whenever it changes.
    Inventory,
    /// Periodic health sample.
    Health,
    /// Discrete occurrence: crash, unexpected shutdown, component replaced, update applied…
    Event,
    /// Retained online/offline state; also the MQTT last will.
    Status,
    /// Server → device command.
    Cmd,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Hello,
        Kind::Inventory,
        Kind::Health,
        Kind::Event,
        Kind::Status,
        Kind::Cmd,
    ];
    /// Kinds a device publishes and the server subscribes to.
    pub const FROM_DEVICE: [Kind; 5] = [
        Kind::Hello,
        Kind::Inventory,
        Kind::Health,
        Kind::Event,
        Kind::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Inventory => "inventory",
            Kind::Health => "health",
            Kind::Event => "event",
            Kind::Status => "status",
            Kind::Cmd => "cmd",
        }
    }

    pub fn from_device(self) -> bool {
        self != Kind::Cmd
    }

    /// Whether the message is published with the retain flag (only `status`).
    pub fn retained(self) -> bool {
        self == Kind::Status
    }

    /// MQTT QoS for this kind: every kind is QoS 1 (at least once; the server
    /// deduplicates on `(device_id, epoch, seq)`).
    pub fn qos(self) -> u8 {
        1
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown message kind {s:?}"))
    }
}

/// The topic a message of `kind` about `device` is published on.
pub fn topic(device: &DeviceId, kind: Kind) -> String {
    format!("{TOPIC_ROOT}/{device}/{kind}")
}

/// Splits a topic into its device id and kind, rejecting anything outside the v1 scheme.
pub fn parse_topic(topic: &str) -> Result<(DeviceId, Kind), DecodeError> {
    let bad = |problem: String| DecodeError::Topic {
        topic: topic.chars().take(200).collect(),
        problem,
    };
    let rest = topic
        .strip_prefix(TOPIC_ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| bad(format!("does not start with {TOPIC_ROOT}/")))?;
    let mut parts = rest.split('/');
    let (Some(id), Some(kind), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad(format!("expected {TOPIC_ROOT}/{{device_id}}/{{kind}}")));
    };
    let id = DeviceId::parse(id).map_err(bad)?;
    let kind = kind.parse::<Kind>().map_err(bad)?;
    Ok((id, kind))
}

/// Filters the server subscribes to: one per device→server kind. With a shared
/// subscription group (`$share/{group}/…`) the broker splits messages between the
/// server replicas of that group.
pub fn server_filters(shared_group: Option<&str>) -> Vec<String> {
    Kind::FROM_DEVICE
        .into_iter()
        .map(|k| match shared_group {
            Some(g) => format!("$share/{g}/{TOPIC_ROOT}/+/{k}"),
            None => format!("{TOPIC_ROOT}/+/{k}"),
        })
        .collect()
}

/// The filter a device subscribes to for its commands.
pub fn device_command_filter(device: &DeviceId) -> String {
    topic(device, Kind::Cmd)
}

/// Mosquitto ACL pattern lines for devices whose broker user name (or certificate
/// CN with `use_identity_as_username`) is their device id: a device may publish only
/// on its own data topics and read only its own command topic.
pub fn mosquitto_device_acl() -> Vec<String> {
    let mut lines: Vec<String> = Kind::FROM_DEVICE
        .into_iter()
        .map(|k| format!("pattern write {TOPIC_ROOT}/%u/{k}"))
        .collect();
    lines.push(format!("pattern read {TOPIC_ROOT}/%u/cmd"));
    lines
}

/// Mosquitto ACL lines for the server's own account.
pub fn mosquitto_server_acl(user: &str) -> Vec<String> {
    let mut lines = vec![format!("user {user}")];
    lines.extend(
        Kind::FROM_DEVICE
            .into_iter()
            .map(|k| format!("topic read {TOPIC_ROOT}/+/{k}")),
    );
    lines.push(format!("topic write {TOPIC_ROOT}/+/cmd"));
    lines
}

/// Whether `device` may publish on `topic`: its own topics, device→server kinds only.
/// Brokers without ACLs (the embedded one) rely on the server checking this per message.
pub fn device_may_publish(device: &DeviceId, topic: &str) -> bool {
    matches!(parse_topic(topic), Ok((id, kind)) if &id == device && kind.from_device())
}
