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
        // Almost every payload is well formed: it is decoded in one typed pass. Anything
        // that pass refuses goes through the field-by-field path below, which alone
        // reports errors; both make the same checks in the same order, so a payload gets
        // the same outcome either way.
        if let Ok(one) = serde_json::from_str::<OnePass>(text) {
            return one.finish(expect, now, limits);
        }
        Self::decode_fields(text, expect, now, limits)
    }

    /// The decoder that reports errors: every field taken raw, then checked in the
    /// documented order.
    pub(crate) fn decode_fields(
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
            same_device(topic_id, &payload_id)?;
            let payload_kind: String = field(wire.kind, "kind")?;
            same_kind(topic_kind, &payload_kind)?;
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

/// A whole message decoded in one pass over its JSON, with nothing checked yet but the
/// fields' types. It refuses, rather than reorders, a body that comes before its kind (a
/// body's type depends on it); the field-by-field path takes those.
#[derive(Debug)]
pub(crate) struct OnePass {
    schema_version: String,
    kind: Kind,
    header: Header,
    body: Body,
}

impl OnePass {
    /// The checks of the field-by-field path, in its order, on fields already typed.
    pub(crate) fn finish(
        self,
        expect: Option<(&DeviceId, Kind)>,
        now: DateTime<Utc>,
        limits: &Limits,
    ) -> Result<Message, DecodeError> {
        check_version(&self.schema_version)?;
        if let Some((topic_id, topic_kind)) = expect {
            same_device(topic_id, self.header.device_id.as_str())?;
            same_kind(topic_kind, self.kind.as_str())?;
        }
        let message = Message {
            header: self.header,
            body: self.body,
        };
        validate::message(&message, now, limits)?;
        Ok(message)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum WireField {
    SchemaVersion,
    Kind,
    DeviceId,
    Epoch,
    Seq,
    CollectedAt,
    SentAt,
    Body,
    #[serde(other)]
    Unknown,
}

impl<'de> Deserialize<'de> for OnePass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OnePassVisitor)
    }
}

struct OnePassVisitor;

impl<'de> serde::de::Visitor<'de> for OnePassVisitor {
    type Value = OnePass;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<OnePass, A::Error> {
        use serde::de::Error as _;
        // A repeated field is an error, as for the derived decoder of the other path.
        fn once<T, E: serde::de::Error>(
            slot: &mut Option<T>,
            v: T,
            name: &'static str,
        ) -> Result<(), E> {
            if slot.replace(v).is_some() {
                return Err(E::duplicate_field(name));
            }
            Ok(())
        }
        let (mut version, mut kind, mut device_id, mut epoch, mut seq) =
            (None, None, None, None, None);
        let (mut collected_at, mut sent_at, mut body) = (None, None, None);
        while let Some(field) = map.next_key::<WireField>()? {
            match field {
                WireField::SchemaVersion => {
                    once(&mut version, map.next_value()?, "schema_version")?
                }
                WireField::Kind => once(&mut kind, map.next_value()?, "kind")?,
                WireField::DeviceId => once(&mut device_id, map.next_value()?, "device_id")?,
                WireField::Epoch => once(&mut epoch, map.next_value()?, "epoch")?,
                WireField::Seq => once(&mut seq, map.next_value()?, "seq")?,
                WireField::CollectedAt => {
                    once(&mut collected_at, map.next_value()?, "collected_at")?
                }
                WireField::SentAt => once(&mut sent_at, map.next_value()?, "sent_at")?,
                WireField::Body => {
                    let b = match kind.ok_or_else(|| A::Error::custom("body before kind"))? {
                        Kind::Hello => Body::Hello(map.next_value()?),
                        Kind::Inventory => Body::Inventory(Box::new(map.next_value()?)),
                        Kind::Health => Body::Health(Box::new(map.next_value()?)),
                        Kind::Event => Body::Event(map.next_value()?),
                        Kind::Status => Body::Status(map.next_value()?),
                        Kind::Cmd => Body::Cmd(map.next_value()?),
                    };
                    once(&mut body, b, "body")?;
                }
                WireField::Unknown => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let missing = A::Error::missing_field;
        Ok(OnePass {
            schema_version: version.ok_or_else(|| missing("schema_version"))?,
            kind: kind.ok_or_else(|| missing("kind"))?,
            header: Header {
                device_id: device_id.ok_or_else(|| missing("device_id"))?,
                epoch: epoch.ok_or_else(|| missing("epoch"))?,
                seq: seq.ok_or_else(|| missing("seq"))?,
                collected_at: collected_at.ok_or_else(|| missing("collected_at"))?,
                sent_at: sent_at.ok_or_else(|| missing("sent_at"))?,
            },
            body: body.ok_or_else(|| missing("body"))?,
        })
    }
}

/// The payload's device id against the topic's, as text (for both decoders).
fn same_device(topic_id: &DeviceId, payload_id: &str) -> Result<(), DecodeError> {
    if payload_id != topic_id.as_str() {
        return Err(DecodeError::DeviceMismatch {
            topic_id: topic_id.to_string(),
            payload_id: payload_id.chars().take(100).collect(),
        });
    }
    Ok(())
}

/// The payload's kind against the topic's, as text (for both decoders).
fn same_kind(topic_kind: Kind, payload_kind: &str) -> Result<(), DecodeError> {
    if payload_kind != topic_kind.as_str() {
        return Err(DecodeError::KindMismatch {
            topic_kind: topic_kind.to_string(),
            payload_kind: payload_kind.chars().take(100).collect(),
        });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{Presence, Status};
    use crate::health::{BatteryHealth, Health};

    fn now() -> DateTime<Utc> {
        "2026-11-22T08:30:00Z".parse().unwrap()
    }

    fn header() -> Header {
        Header {
            device_id: DeviceId::parse("d-0123456789abcdef").unwrap(),
            epoch: Epoch::from_random([1; 16]),
            seq: 42,
            collected_at: now(),
            sent_at: now(),
        }
    }

    fn health_json() -> serde_json::Value {
        let m = Message::new(
            header(),
            Body::Health(Box::new(Health {
                uptime_seconds: Some(3600),
                batteries: vec![BatteryHealth {
                    name: "BAT0".into(),
                    health_percent: Some(81.5),
                    ..Default::default()
                }],
                ..Default::default()
            })),
        );
        serde_json::from_str(&m.to_json()).unwrap()
    }

    /// Writes an object with its keys in the given order (serde_json's map sorts them).
    fn ordered(v: &serde_json::Value, keys: &[&str]) -> String {
        let fields: Vec<String> = keys
            .iter()
            .map(|k| format!("{}:{}", serde_json::json!(k), v[*k]))
            .collect();
        format!("{{{}}}", fields.join(","))
    }

    const ORDER: [&str; 8] = [
        "schema_version",
        "kind",
        "device_id",
        "epoch",
        "seq",
        "collected_at",
        "sent_at",
        "body",
    ];

    /// Payloads the one-pass decoder takes, refuses or must judge exactly as the
    /// field-by-field one does.
    fn corpus() -> Vec<String> {
        let h = health_json();
        let with = |key: &str, value: serde_json::Value| {
            let mut v = h.clone();
            v[key] = value;
            ordered(&v, &ORDER)
        };
        let status = serde_json::to_string(
            &Message::new(
                header(),
                Body::Status(Status {
                    state: Presence::Online,
                }),
            )
            .wire(),
        )
        .unwrap();
        let mut body_first = ORDER.to_vec();
        body_first.rotate_right(1);
        vec![
            ordered(&h, &ORDER),
            status,
            ordered(&h, &body_first),
            ordered(&h, &ORDER[1..]),
            ordered(&h, &ORDER[..7]),
            ordered(
                &h,
                &[
                    "schema_version",
                    "kind",
                    "device_id",
                    "epoch",
                    "seq",
                    "seq",
                    "collected_at",
                    "sent_at",
                    "body",
                ],
            ),
            ordered(&h, &ORDER).replacen('{', r#"{"extra":[1,{"a":null}],"#, 1),
            ordered(&h, &ORDER).replacen("schema_version", r"schema\u005fversion", 1),
            with("schema_version", "2.0".into()),
            with("schema_version", "1.7".into()),
            with("schema_version", serde_json::json!(1)),
            with("device_id", "d-someone-else".into()),
            with("device_id", "not an id!".into()),
            with("kind", "status".into()),
            with("kind", "weather".into()),
            with("seq", serde_json::Value::Null),
            with("seq", serde_json::json!(-1)),
            with("seq", "42".into()),
            with("collected_at", "2099-01-01T00:00:00Z".into()),
            with("collected_at", "yesterday".into()),
            with("epoch", "ABCDEF0123456789".into()),
            with("body", serde_json::json!({"batteries": "none"})),
            with("body", serde_json::json!({"cpu_usage_percent": 250.0})),
            with("body", serde_json::Value::Null),
            serde_json::to_string(&ORDER.map(|k| h[k].clone())).unwrap(),
            format!("{} ", ordered(&h, &ORDER)),
            format!("{} x", ordered(&h, &ORDER)),
            "{}".into(),
            "[]".into(),
            "null".into(),
        ]
    }

    #[test]
    fn one_pass_decoding_gives_the_field_by_field_outcome() {
        let limits = Limits::default();
        let device = header().device_id;
        for text in corpus() {
            for expect in [None, Some((&device, Kind::Health))] {
                let fast = Message::decode_str(&text, expect, now(), &limits);
                let slow = Message::decode_fields(&text, expect, now(), &limits);
                assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "for {text}");
            }
        }
    }

    #[test]
    fn the_corpus_holds_both_accepted_and_refused_payloads() {
        let limits = Limits::default();
        let outcomes: Vec<bool> = corpus()
            .iter()
            .map(|t| Message::decode_str(t, None, now(), &limits).is_ok())
            .collect();
        assert!(
            outcomes.iter().filter(|ok| **ok).count() >= 4,
            "{outcomes:?}"
        );
        assert!(
            outcomes.iter().filter(|ok| !**ok).count() >= 15,
            "{outcomes:?}"
        );
    }
}
