//! Authenticated frames: only the holder of a device's key can get a message accepted
//! for that device, and only on the topic it was signed for.

use parc_protocol::{DeviceKey, Frame, Limits, seal, seal_raw};

use crate::samples;

#[test]
fn a_sealed_frame_opens_with_the_same_key() {
    let (topic, payload) = seal(&samples::inventory(), &samples::key());
    let frame = Frame::parse(&topic, &payload, &Limits::default()).unwrap();
    assert_eq!(frame.device_id(), &samples::device());
    assert_eq!(
        frame
            .open(&samples::key(), samples::now(), &Limits::default())
            .unwrap(),
        samples::inventory()
    );
}

/// Why a well-formed frame does not open with the sample device's key.
fn refusal(topic: &str, payload: &[u8]) -> &'static str {
    let frame = Frame::parse(topic, payload, &Limits::default()).unwrap();
    frame
        .open(&samples::key(), samples::now(), &Limits::default())
        .unwrap_err()
        .reason()
}

#[test]
fn another_devices_key_is_refused() {
    let (topic, payload) = seal(&samples::health(), &DeviceKey::from_bytes([9; 32]));
    assert_eq!(refusal(&topic, &payload), "bad_signature");
}

#[test]
fn a_frame_replayed_on_another_devices_topic_is_refused() {
    let (_, payload) = seal(&samples::health(), &samples::key());
    let other = "parc/v1/d-victim/health";
    let frame = Frame::parse(other, &payload, &Limits::default()).unwrap();
    // Whatever key the server holds for the victim, the MAC binds the original topic.
    assert_eq!(
        frame.verify(&samples::key()).unwrap_err().reason(),
        "bad_signature"
    );
}

#[test]
fn a_frame_moved_to_another_kind_is_refused() {
    let (_, payload) = seal(&samples::health(), &samples::key());
    let frame = Frame::parse(
        "parc/v1/d-0123456789abcdef/event",
        &payload,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        frame.verify(&samples::key()).unwrap_err().reason(),
        "bad_signature"
    );
}

#[test]
fn a_tampered_message_is_refused_and_never_opened() {
    let (topic, payload) = seal(&samples::health(), &samples::key());
    let tampered = String::from_utf8(payload)
        .unwrap()
        .replace("\"health_percent\":52.0", "\"health_percent\":99.0");
    // Still in `seal`'s own shape, which is decoded in the same pass as its MAC is
    // found: the message must not come out of `open` unverified all the same.
    assert!(tampered.starts_with(r#"{"hmac_sha256":""#));
    let frame = Frame::parse(&topic, tampered.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(
        frame.verify(&samples::key()).unwrap_err().reason(),
        "bad_signature"
    );
    assert_eq!(refusal(&topic, tampered.as_bytes()), "bad_signature");
}

#[test]
fn a_well_signed_message_of_the_wrong_shape_is_refused_with_the_field_named() {
    let mut msg: serde_json::Value = serde_json::from_str(&samples::health().to_json()).unwrap();
    msg["seq"] = "forty-two".into();
    let topic = samples::health().topic();
    let payload = seal_raw(&topic, &msg.to_string(), &samples::key()).unwrap();
    let frame = Frame::parse(&topic, &payload, &Limits::default()).unwrap();
    let err = frame
        .open(&samples::key(), samples::now(), &Limits::default())
        .unwrap_err();
    assert_eq!(err.reason(), "schema");
    assert!(err.to_string().contains("seq"), "{err}");
}

#[test]
fn a_frame_in_any_json_layout_opens_to_the_same_message() {
    let (topic, payload) = seal(&samples::health(), &samples::key());
    let sealed = String::from_utf8(payload).unwrap();
    let frame: serde_json::Value = serde_json::from_str(&sealed).unwrap();
    let mac = frame["hmac_sha256"].as_str().unwrap();
    // The message's own text is kept byte for byte: it is what the MAC covers.
    let msg = &sealed[sealed.find(r#""msg":"#).unwrap() + 6..sealed.len() - 1];
    let layouts = [
        sealed.clone(),
        format!("{{ \"hmac_sha256\" : \"{mac}\" ,\n \"msg\" :\t{msg} }}\n"),
        format!("{{\"msg\":{msg},\"hmac_sha256\":\"{mac}\"}}"),
        format!("{{\"hmac_sha256\":\"{mac}\",\"agent\":\"x\",\"msg\":{msg}}}"),
        format!("{{\"hmac_sha256\":\"{mac}\",\"msg\":{msg} }}"),
    ];
    for layout in layouts {
        let frame = Frame::parse(&topic, layout.as_bytes(), &Limits::default()).unwrap();
        let opened = frame
            .open(&samples::key(), samples::now(), &Limits::default())
            .unwrap();
        assert_eq!(opened, samples::health(), "for {layout}");
    }
}

#[test]
fn an_oversized_frame_is_refused_before_the_topic_is_even_read() {
    let payload = vec![0u8; 300 * 1024];
    let err = Frame::parse("not/a/parc/topic", &payload, &Limits::default()).unwrap_err();
    assert_eq!(err.reason(), "too_large");
}

#[test]
fn device_keys_round_trip_through_base64_and_never_print() {
    let k = samples::key();
    assert_eq!(DeviceKey::from_base64(&k.to_base64()).unwrap(), k);
    assert!(
        DeviceKey::from_base64("c2hvcnQ=")
            .unwrap_err()
            .contains("32 bytes")
    );
    assert_eq!(format!("{k:?}"), "DeviceKey(…)");
}
