//! The decoder refuses bad payloads with an error that names the problem and the field.

use parc_protocol::{DecodeError, DeviceId, Kind, Limits, Message};
use serde_json::{Value, json};

use crate::samples;

fn health_json() -> Value {
    serde_json::from_str(&samples::health().to_json()).unwrap()
}

fn decode_value(v: &Value) -> Result<Message, DecodeError> {
    let bytes = serde_json::to_vec(v).unwrap();
    Message::decode(
        &bytes,
        Some((&samples::device(), Kind::Health)),
        samples::now(),
        &Limits::default(),
    )
}

#[test]
fn topic_and_body_device_ids_that_differ_are_rejected_naming_both() {
    let mut v = health_json();
    v["device_id"] = json!("d-intruder");
    let err = decode_value(&v).unwrap_err();
    assert_eq!(err.reason(), "device_mismatch");
    let text = err.to_string();
    assert!(
        text.contains("d-0123456789abcdef") && text.contains("d-intruder"),
        "{text}"
    );
}

#[test]
fn a_mismatched_id_is_reported_even_when_it_is_not_a_valid_id() {
    let mut v = health_json();
    v["device_id"] = json!("../../etc");
    let err = decode_value(&v).unwrap_err();
    assert_eq!(err.reason(), "device_mismatch", "{err}");
}

#[test]
fn an_oversized_payload_is_rejected_before_parsing() {
    // Not JSON at all: if it were parsed, the error would be a syntax error.
    let payload = vec![b'{'; Limits::default().max_payload_bytes + 1];
    let err = Message::decode(&payload, None, samples::now(), &Limits::default()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooLarge {
            size: 256 * 1024 + 1,
            limit: 256 * 1024
        }
    );
}

#[test]
fn an_unknown_major_version_is_rejected() {
    let mut v = health_json();
    v["schema_version"] = json!("2.0");
    let err = decode_value(&v).unwrap_err();
    assert_eq!(err.reason(), "unsupported_version");
    assert!(err.to_string().contains("\"2.0\""), "{err}");
}

#[test]
fn a_newer_minor_version_is_accepted() {
    let mut v = health_json();
    v["schema_version"] = json!("1.42");
    decode_value(&v).unwrap();
}

#[test]
fn a_timestamp_more_than_a_day_ahead_is_rejected_with_its_path() {
    let mut v = health_json();
    v["collected_at"] = json!("2099-01-01T00:00:00Z");
    let err = decode_value(&v).unwrap_err();
    assert_eq!(err.reason(), "future_timestamp");
    assert!(err.to_string().contains("collected_at"), "{err}");

    let mut v = health_json();
    v["collected_at"] = json!("2026-11-23T08:00:00Z"); // 23.5 h ahead: clock drift is tolerated
    decode_value(&v).unwrap();
}

#[test]
fn out_of_range_readings_name_their_field_path() {
    let cases = [
        (
            "/body/batteries/0/health_percent",
            json!(101.0),
            "body.batteries[0].health_percent",
        ),
        (
            "/body/batteries/0/charge_percent",
            json!(-1),
            "body.batteries[0].charge_percent",
        ),
        (
            "/body/temperatures/0/celsius",
            json!(151.0),
            "body.temperatures[0].celsius",
        ),
        (
            "/body/temperatures/0/celsius",
            json!(-41.0),
            "body.temperatures[0].celsius",
        ),
        (
            "/body/cpu_usage_percent",
            json!(100.5),
            "body.cpu_usage_percent",
        ),
        ("/seq", json!(0), "seq"),
    ];
    for (pointer, value, path) in cases {
        let mut v = health_json();
        *v.pointer_mut(pointer).unwrap() = value.clone();
        let err = decode_value(&v).unwrap_err();
        assert_eq!(err.reason(), "out_of_range", "{pointer}={value}: {err}");
        assert!(err.to_string().contains(path), "{pointer}: {err}");
    }
}

#[test]
fn readings_at_the_bounds_are_accepted() {
    let mut v = health_json();
    *v.pointer_mut("/body/batteries/0/health_percent").unwrap() = json!(100.0);
    *v.pointer_mut("/body/temperatures/0/celsius").unwrap() = json!(-40.0);
    decode_value(&v).unwrap();
}

#[test]
fn wrong_types_and_missing_fields_name_their_path() {
    let mut v = health_json();
    *v.pointer_mut("/body/batteries/0/cycle_count").unwrap() = json!("many");
    let err = decode_value(&v).unwrap_err();
    assert_eq!(err.reason(), "schema");
    assert!(
        err.to_string().contains("body.batteries[0].cycle_count"),
        "{err}"
    );

    let mut v = health_json();
    v.as_object_mut().unwrap().remove("epoch");
    let err = decode_value(&v).unwrap_err();
    assert_eq!(err.to_string(), "field `epoch`: missing field");

    let mut v = health_json();
    v["seq"] = json!(-3);
    assert_eq!(decode_value(&v).unwrap_err().reason(), "schema");
}

#[test]
fn invalid_json_is_a_syntax_error() {
    for bad in [
        &b"{\"schema_version\": "[..],
        b"not json",
        b"\xff\xfe",
        b"{} trailing",
    ] {
        let err = Message::decode(bad, None, samples::now(), &Limits::default()).unwrap_err();
        assert_eq!(
            err.reason(),
            "invalid_json",
            "{:?}: {err}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn a_body_of_another_kind_than_the_topic_says_is_rejected() {
    let v: Value = serde_json::from_str(&samples::event().to_json()).unwrap();
    let err = decode_value(&v).unwrap_err();
    assert_eq!(err.reason(), "kind_mismatch", "{err}");
}

#[test]
fn event_types_must_be_snake_case_identifiers() {
    let mut v: Value = serde_json::from_str(&samples::event().to_json()).unwrap();
    v["body"]["event_type"] = json!("Robert'); DROP TABLE");
    let bytes = serde_json::to_vec(&v).unwrap();
    let err = Message::decode(&bytes, None, samples::now(), &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("body.event_type"), "{err}");
}

#[test]
fn an_unknown_event_type_is_kept() {
    let mut v: Value = serde_json::from_str(&samples::event().to_json()).unwrap();
    v["body"]["event_type"] = json!("lid_sensor_stuck");
    let bytes = serde_json::to_vec(&v).unwrap();
    let msg = Message::decode(&bytes, None, samples::now(), &Limits::default()).unwrap();
    let parc_protocol::Body::Event(e) = msg.body else {
        panic!()
    };
    assert_eq!(e.event_type, "lid_sensor_stuck");
}

#[test]
fn duplicate_keys_are_refused_rather_than_picking_one() {
    let text = samples::health().to_json().replacen("{", "{\"seq\":9,", 1);
    let err =
        Message::decode(text.as_bytes(), None, samples::now(), &Limits::default()).unwrap_err();
    assert_eq!(err.reason(), "schema", "{err}");
}

#[test]
fn device_ids_that_could_widen_a_topic_filter_are_invalid() {
    for bad in ["+", "#", "a/b", "$SYS", "", "é", &"x".repeat(65)] {
        assert!(DeviceId::parse(bad).is_err(), "{bad:?}");
    }
    DeviceId::parse("d-0123456789abcdef").unwrap();
}
