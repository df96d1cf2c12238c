//! Turns bodies into spooled messages, and spooled messages into signed frames.
//!
//! A message is stored unsigned, with the seq the spool allocated in the same
//! transaction; each time a copy is sent it gets a fresh `sent_at` and is signed with
//! the device key, so that the server can tell how long a sample waited in the spool.
//!
//! This module must never hand a body to the uplink without going through the spool
//! (the durable-before-publish rule) — except the MQTT last will, which the broker
//! holds — and never knows about MQTT connections.

use chrono::{DateTime, SecondsFormat, Utc};
use parc_protocol::{Body, DeviceId, DeviceKey, Epoch, Header, Message, seal_raw};

use crate::spool::{Pushed, Record, Spool, SpoolError};

/// The device's signing identity: who it is, its key and its spool's epoch.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub device_id: DeviceId,
    pub key: DeviceKey,
    pub epoch: Epoch,
}

const SENT_AT: &str = "\"sent_at\":\"";

impl Outbox {
    pub fn new(device_id: DeviceId, key: DeviceKey, epoch: Epoch) -> Self {
        Self {
            device_id,
            key,
            epoch,
        }
    }

    /// The message JSON for `body` with `seq`.
    pub fn compose(&self, body: Body, seq: u64, collected_at: DateTime<Utc>) -> Message {
        Message::new(
            Header {
                device_id: self.device_id.clone(),
                epoch: self.epoch.clone(),
                seq,
                collected_at,
                sent_at: collected_at,
            },
            body,
        )
    }

    /// Stores `body` in the spool under a new seq (one durable transaction).
    pub fn push(
        &self,
        spool: &Spool,
        body: Body,
        collected_at: DateTime<Utc>,
    ) -> Result<Pushed, SpoolError> {
        let kind = body.kind();
        spool.push_new(kind, |seq| {
            let m = self.compose(body, seq, collected_at);
            (m.topic(), m.to_json())
        })
    }

    /// Signs a spooled record for sending now: `sent_at` is set to `now`.
    pub fn frame(&self, record: &Record, now: DateTime<Utc>) -> Vec<u8> {
        let msg = with_sent_at(&record.message, now);
        match seal_raw(&record.topic, &msg, &self.key) {
            Ok(p) => p,
            // Only reachable if the stored JSON is invalid, which the checksum rules
            // out for anything we wrote; send it as stored so the server quarantines
            // it visibly rather than the agent retrying it forever.
            Err(_) => record.message.clone().into_bytes(),
        }
    }

    /// Signs a message that is not spooled (the last will).
    pub fn seal_now(&self, body: Body, seq: u64, now: DateTime<Utc>) -> (String, Vec<u8>) {
        parc_protocol::seal(&self.compose(body, seq, now), &self.key)
    }
}

/// Replaces the envelope's `sent_at` value. The envelope is serialised before the body
/// and a JSON string cannot contain an unescaped `"`, so the first `"sent_at":"` is the
/// envelope's.
pub fn with_sent_at(message: &str, now: DateTime<Utc>) -> String {
    let Some(start) = message.find(SENT_AT).map(|i| i + SENT_AT.len()) else {
        return message.to_string();
    };
    let Some(len) = message[start..].find('"') else {
        return message.to_string();
    };
    let mut out = String::with_capacity(message.len() + 8);
    out.push_str(&message[..start]);
    out.push_str(&now.to_rfc3339_opts(SecondsFormat::Millis, true));
    out.push_str(&message[start + len..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use parc_protocol::{Frame, Limits, Presence, Status};

    #[test]
    fn a_spooled_message_is_signed_with_a_fresh_sent_at() {
        let ob = Outbox::new(
            DeviceId::parse("d-1").unwrap(),
            DeviceKey::from_bytes([7; 32]),
            Epoch::from_random([1; 16]),
        );
        let collected: DateTime<Utc> = "2026-11-22T08:30:00Z".parse().unwrap();
        let m = ob.compose(
            Body::Status(Status {
                state: Presence::Online,
            }),
            5,
            collected,
        );
        let rec = Record {
            id: 1,
            kind: m.kind(),
            seq: 5,
            topic: m.topic(),
            message: m.to_json(),
        };
        let now: DateTime<Utc> = "2026-11-22T09:00:00.250Z".parse().unwrap();
        let payload = ob.frame(&rec, now);
        let opened = Frame::parse(&rec.topic, &payload, &Limits::default())
            .unwrap()
            .open(&ob.key, now, &Limits::default())
            .unwrap();
        assert_eq!(opened.header.seq, 5);
        assert_eq!(opened.header.collected_at, collected);
        assert_eq!(opened.header.sent_at, now);
    }
}
