//! Authenticated framing: what actually travels in an MQTT payload.
//!
//! ```json
//! {"hmac_sha256":"<base64>","msg":{…message…}}
//! ```
//!
//! The MAC is HMAC-SHA256, keyed with the device's secret issued at enrolment, over
//! the topic, a newline, and the exact bytes of `msg` as sent (kept verbatim with
//! `RawValue`, so no canonical JSON is needed). Binding the topic means a frame cannot
//! be replayed onto another device's or another kind's topic. The embedded broker has
//! no topic ACL, so this check is what stops a device writing as another one: a
//! frame must never hand out a message before `verify` has passed, except to tools
//! that print it. (A frame in `seal`'s own shape is decoded in the same pass that finds
//! its MAC, but the result stays inside the `Frame` until `open` has checked the MAC.)

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::error::DecodeError;
use crate::message::{Limits, Message, OnePass};
use crate::topic::{DeviceId, Kind, parse_topic};

type HmacSha256 = Hmac<Sha256>;

/// A device's 256-bit secret, shared by the device and the server.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey([u8; 32]);

impl DeviceKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn from_base64(s: &str) -> Result<Self, String> {
        let v = B64
            .decode(s.trim())
            .map_err(|e| format!("device key is not base64: {e}"))?;
        let bytes: [u8; 32] = v
            .try_into()
            .map_err(|v: Vec<u8>| format!("device key must be 32 bytes, got {}", v.len()))?;
        Ok(Self(bytes))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    fn mac(&self, topic: &str, msg: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(topic.as_bytes());
        mac.update(b"\n");
        mac.update(msg.as_bytes());
        mac
    }
}

// Never print the secret.
impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey(…)")
    }
}

#[derive(Serialize)]
struct FrameOut<'a> {
    hmac_sha256: String,
    msg: &'a RawValue,
}

#[derive(Deserialize)]
struct FrameIn<'a> {
    hmac_sha256: &'a str,
    #[serde(borrow)]
    msg: &'a RawValue,
}

/// Encodes `message` for its topic, signed with `key`. Returns `(topic, payload)`.
pub fn seal(message: &Message, key: &DeviceKey) -> (String, Vec<u8>) {
    let topic = message.topic();
    let payload =
        seal_raw(&topic, &message.to_json(), key).expect("a message serializes to valid JSON");
    (topic, payload)
}

/// Signs arbitrary message text for `topic`: for tests and tools that must produce
/// well-signed but otherwise wrong messages. `msg` must be valid JSON (any value).
pub fn seal_raw(topic: &str, msg: &str, key: &DeviceKey) -> Result<Vec<u8>, DecodeError> {
    let mac = key.mac(topic, msg).finalize().into_bytes();
    let raw =
        RawValue::from_string(msg.to_string()).map_err(|e| DecodeError::Syntax(e.to_string()))?;
    Ok(serde_json::to_vec(&FrameOut {
        hmac_sha256: B64.encode(mac),
        msg: &raw,
    })
    .expect("frames always serialize"))
}

/// A payload parsed far enough to know who claims to have sent it, not yet trusted.
#[derive(Debug)]
pub struct Frame<'a> {
    topic: &'a str,
    device_id: DeviceId,
    kind: Kind,
    mac: &'a str,
    /// The message's JSON exactly as sent: what the MAC covers.
    msg: &'a str,
    /// What the one-pass reader made of the message. A message it decoded is handed
    /// out only by `open`, after the MAC has been checked.
    one_pass: Result<OnePass, NotRead>,
}

/// Why the one-pass reader has no message for `open`.
#[derive(Debug, Clone, Copy)]
enum NotRead {
    /// It refused the message; the field-by-field reader names why.
    Refused,
    /// Not `seal`'s layout: the message has not been tried yet.
    OtherLayout,
}

/// The frame exactly as `seal` writes it, `{"hmac_sha256":"…","msg":{…}}` without
/// spaces, read in one pass: the MAC, the message's text and the message decoded.
/// `Err` for anything else, which `Frame::parse` then reads field by field (that path
/// captures the same text for the MAC: `RawValue` starts at the value's first byte),
/// saying whether the message was tried.
fn one_pass(text: &str) -> Result<(&str, &str, OnePass), NotRead> {
    let not_tried = Err(NotRead::OtherLayout);
    let Some((mac, rest)) = text
        .strip_prefix(r#"{"hmac_sha256":""#)
        .and_then(|rest| rest.split_once('"'))
    else {
        return not_tried;
    };
    let Some(rest) = rest.strip_prefix(r#","msg":"#) else {
        return not_tried;
    };
    if mac.contains('\\') || !rest.starts_with('{') {
        return not_tried;
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<OnePass>();
    let Some(Ok(decoded)) = stream.next() else {
        return Err(NotRead::Refused);
    };
    let (msg, tail) = rest.split_at(stream.byte_offset());
    if tail != "}" {
        // Valid, but with more after it: `parse` reads the frame again, and the
        // message, decoded once already, need not be tried again.
        return Err(NotRead::Refused);
    }
    Ok((mac, msg, decoded))
}

impl<'a> Frame<'a> {
    /// Checks the size (before any parsing), the topic and the frame's shape.
    pub fn parse(topic: &'a str, payload: &'a [u8], limits: &Limits) -> Result<Self, DecodeError> {
        if payload.len() > limits.max_payload_bytes {
            return Err(DecodeError::TooLarge {
                size: payload.len(),
                limit: limits.max_payload_bytes,
            });
        }
        let (device_id, kind) = parse_topic(topic)?;
        let text = std::str::from_utf8(payload)
            .map_err(|e| DecodeError::Syntax(format!("not UTF-8: {e}")))?;
        let one_pass = match one_pass(text) {
            Ok((mac, msg, decoded)) => {
                return Ok(Self {
                    topic,
                    device_id,
                    kind,
                    mac,
                    msg,
                    one_pass: Ok(decoded),
                });
            }
            Err(not_read) => not_read,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let frame: FrameIn<'a> =
            serde_path_to_error::deserialize(&mut de).map_err(|e| DecodeError::from_json(e, ""))?;
        de.end().map_err(|e| DecodeError::Syntax(e.to_string()))?;
        Ok(Self {
            topic,
            device_id,
            kind,
            mac: frame.hmac_sha256,
            msg: frame.msg.get(),
            one_pass: Err(one_pass),
        })
    }

    /// The device the topic names (not yet authenticated).
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The message's JSON exactly as sent.
    pub fn raw_message(&self) -> &'a str {
        self.msg
    }

    /// Checks the MAC with the key of the device the topic names, in constant time.
    pub fn verify(&self, key: &DeviceKey) -> Result<(), DecodeError> {
        let given = B64
            .decode(self.mac)
            .map_err(|_| DecodeError::BadSignature("hmac_sha256 is not base64"))?;
        key.mac(self.topic, self.msg)
            .verify_slice(&given)
            .map_err(|_| DecodeError::BadSignature("hmac_sha256 does not match this device's key"))
    }

    /// Verifies, then decodes and validates the message against the topic.
    pub fn open(
        self,
        key: &DeviceKey,
        now: DateTime<Utc>,
        limits: &Limits,
    ) -> Result<Message, DecodeError> {
        self.verify(key)?;
        let expect = Some((&self.device_id, self.kind));
        match self.one_pass {
            Ok(decoded) => decoded.finish(expect, now, limits),
            Err(NotRead::Refused) => Message::decode_fields(self.msg, expect, now, limits),
            Err(NotRead::OtherLayout) => Message::decode_str(self.msg, expect, now, limits),
        }
    }
}
