//! The message envelope shared by every kind, its JSON encoding and its validating
//! decoder.
//!
//! ```json
//! {"schema_version":"1.0","kind":"health","device_id":"d-1","epoch":"9f…","seq":42,
//!  "collected_at":"2026-11-22T08:30:00Z","sent_at":"2026-11-22T08:30:01Z","body":{…}}
//! ```
//!
//! The decoder checks, in this order, so that the most useful error wins: size, JSON
//! syntax, schema major version, device id and kind against the topic, field types,
//! then value ranges. It must never panic on any input, and never accept a payload
//! whose device id differs from the topic's.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::body::{Command, Event, Hello, Status};
use crate::error::DecodeError;
use crate::health::Health;
use crate::inventory::Inventory;
use crate::topic::{DeviceId, Kind};
use crate::validate;

/// Major version of the schema this build reads and writes. Within a major version,
/// changes are additive only: new optional fields, new kinds of events.
pub const SCHEMA_MAJOR: u32 = 1;
/// Version written into every message.
pub const SCHEMA_VERSION: &str = "1.0";
/// Default payload size limit, checked before any parsing.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// How far in the future a timestamp may be (device clocks drift).
pub const DEFAULT_MAX_FUTURE_HOURS: i64 = 24;

/// Decoder limits; `Default` gives the documented ones.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_future: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_future: Duration::hours(DEFAULT_MAX_FUTURE_HOURS),
        }
    }
}

/// Random identifier of an agent's state, created with it: a reinstalled agent gets a
/// new epoch, so its `seq` restarting at 1 is never taken for a replay.
/// 16 to 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Epoch(String);

impl Epoch {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !(16..=64).contains(&s.len()) {
            return Err(format!(
                "epoch must be 16 to 64 hex digits, got {} characters",
                s.len()
            ));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("epoch must be lowercase hex digits".into());
        }
        Ok(Self(s.to_owned()))
    }

    /// Builds an epoch from random bytes supplied by the caller (this crate does no IO).
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Epoch {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<Epoch> for String {
    fn from(e: Epoch) -> String {
        e.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fields every message carries. `(device_id, epoch, seq)` is the deduplication key.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub device_id: DeviceId,
    pub epoch: Epoch,
    /// Starts at 1 with each epoch and only grows.
    pub seq: u64,
    /// When the reading was made.
    pub collected_at: DateTime<Utc>,
    /// When this copy was sent (later than `collected_at` for spooled messages).
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Body {
    Hello(Hello),
    Inventory(Box<Inventory>),
    Health(Box<Health>),
    Event(Event),
    Status(Status),
    Cmd(Command),
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Hello(_) => Kind::Hello,
            Body::Inventory(_) => Kind::Inventory,
            Body::Health(_) => Kind::Health,
            Body::Event(_) => Kind::Event,
            Body::Status(_) => Kind::Status,
            Body::Cmd(_) => Kind::Cmd,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub header: Header,
    pub body: Body,
}

#[derive(Serialize)]
struct WireOut<'a> {
    schema_version: &'static str,
    kind: Kind,
    device_id: &'a DeviceId,
    epoch: &'a Epoch,
    seq: u64,
    collected_at: &'a DateTime<Utc>,
    sent_at: &'a DateTime<Utc>,
    body: &'a Body,
}

// Every field is taken raw first so that the version and the ids can be checked, with
// precise errors, before the body's shape is.
#[derive(Deserialize)]
struct WireIn<'a> {
    #[serde(borrow)]
    schema_version: Option<&'a RawValue>,
    #[serde(borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    device_id: Option<&'a RawValue>,
    #[serde(borrow)]
    epoch: Option<&'a RawValue>,
    #[serde(borrow)]
    seq: Option<&'a RawValue>,
    #[serde(borrow)]
    collected_at: Option<&'a RawValue>,
    #[serde(borrow)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

fn field<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>, name: &str) -> Result<T, DecodeError> {
    let raw = raw.ok_or_else(|| DecodeError::Schema {
        path: name.to_string(),
        message: "missing field".into(),
    })?;
    at_path(raw.get(), name)
}

/// Deserializes `text` (all of it: trailing bytes are a syntax error); on failure, the
/// error names the path inside `text` (prefixed by `name`). Tracking the path costs
/// about as much as the parse itself, so it is only done again for the rare input that
/// fails.
fn at_path<'a, T: Deserialize<'a>>(text: &'a str, name: &str) -> Result<T, DecodeError> {
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let v =
        serde_path_to_error::deserialize(&mut de).map_err(|e| DecodeError::from_json(e, name))?;
    de.end().map_err(|e| DecodeError::Syntax(e.to_string()))?;
    Ok(v)
}

impl Message {
    pub fn new(header: Header, body: Body) -> Self {
        Self { header, body }
    }

    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// The topic this message is published on.
    pub fn topic(&self) -> String {
        crate::topic::topic(&self.header.device_id, self.kind())
    }

    fn wire(&self) -> WireOut<'_> {
        WireOut {
            schema_version: SCHEMA_VERSION,
            kind: self.kind(),
            device_id: &self.header.device_id,
            epoch: &self.header.epoch,
            seq: self.header.seq,
            collected_at: &self.header.collected_at,
            sent_at: &self.header.sent_at,
            body: &self.body,
        }
    }

    /// Compact JSON, as sent on the wire.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.wire()).expect("message types always serialize")
    }

    /// Indented JSON, for people and golden files.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.wire()).expect("message types always serialize")
    }

    /// Decodes and validates a message. `expect` is what the topic says (device id and
    /// kind); `now` bounds timestamps.
    pub fn decode(
        payload: &[u8],
        expect: Option<(&DeviceId, Kind)>,
        now: DateTime<Utc>,
        limits: &Limits,
    ) -> Result<Message, DecodeError> {
        if payload.len() > limits.max_payload_bytes {
            return Err(DecodeError::TooLarge {
                size: payload.len(),
                limit: limits.max_payload_bytes,
            });
        }
        let text = std::str::from_utf8(payload)
            .map_err(|e| DecodeError::Syntax(format!("not UTF-8: {e}")))?;
        Self::decode_str(text, expect, now, limits)
    }

    pub(crate) fn decode_str(
        text: &str,
        expect: Option<(&DeviceId, Kind)>,
        now: DateTime<Utc>,
        limits: &Limits,
    ) -> Result<Message, DecodeError> {
        let wire: WireIn<'_> = at_path(text, "")?;

        let version: String = field(wire.schema_version, "schema_version")?;
        check_version(&version)?;

        if let Some((topic_id, topic_kind)) = expect {
            // The id is compared as a plain string first so a mismatch is reported as
            // such even when the payload's id is not a valid id at all.
            let payload_id: String = field(wire.device_id, "device_id")?;
            if payload_id != topic_id.as_str() {
                return Err(DecodeError::DeviceMismatch {
                    topic_id: topic_id.to_string(),
                    payload_id: payload_id.chars().take(100).collect(),
                });
            }
            let payload_kind: String = field(wire.kind, "kind")?;
            if payload_kind != topic_kind.as_str() {
                return Err(DecodeError::KindMismatch {
                    topic_kind: topic_kind.to_string(),
                    payload_kind: payload_kind.chars().take(100).collect(),
                });
            }
        }

        let kind: Kind = field(wire.kind, "kind")?;
        let header = Header {
            device_id: field(wire.device_id, "device_id")?,
            epoch: field(wire.epoch, "epoch")?,
            seq: field(wire.seq, "seq")?,
            collected_at: field(wire.collected_at, "collected_at")?,
            sent_at: field(wire.sent_at, "sent_at")?,
        };
        let raw_body = wire.body;
        let body = match kind {
            Kind::Hello => Body::Hello(field(raw_body, "body")?),
            Kind::Inventory => Body::Inventory(Box::new(field(raw_body, "body")?)),
            Kind::Health => Body::Health(Box::new(field(raw_body, "body")?)),
            Kind::Event => Body::Event(field(raw_body, "body")?),
            Kind::Status => Body::Status(field(raw_body, "body")?),
            Kind::Cmd => Body::Cmd(field(raw_body, "body")?),
        };
        let message = Message { header, body };
        validate::message(&message, now, limits)?;
        Ok(message)
    }
}

fn check_version(version: &str) -> Result<(), DecodeError> {
    let unsupported = || DecodeError::UnsupportedVersion {
        found: version.chars().take(40).collect(),
        supported: SCHEMA_MAJOR,
    };
    let (major, minor) = version.split_once('.').ok_or_else(unsupported)?;
    let major: u32 = major.parse().map_err(|_| unsupported())?;
    minor.parse::<u32>().map_err(|_| unsupported())?;
    if major != SCHEMA_MAJOR {
        return Err(unsupported());
    }
    Ok(())
}
