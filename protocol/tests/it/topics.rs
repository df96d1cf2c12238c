//! The topic scheme, subscription filters and ACL patterns.

use parc_protocol::{
    DeviceId, Kind, device_may_publish, mosquitto_device_acl, parse_topic, server_filters, topic,
};

#[test]
fn topics_round_trip() {
    let d = DeviceId::parse("d-42").unwrap();
    for k in Kind::ALL {
        let t = topic(&d, k);
        assert_eq!(t, format!("parc/v1/d-42/{k}"));
        assert_eq!(parse_topic(&t).unwrap(), (d.clone(), k));
    }
}

#[test]
fn topics_outside_the_scheme_are_rejected() {
    for bad in [
        "parc/v2/d-42/health",
        "parc/v1/d-42",
        "parc/v1/d-42/health/x",
        "parc/v1/+/health",
        "parc/v1/d-42/telemetry",
        "x",
    ] {
        let err = parse_topic(bad).unwrap_err();
        assert_eq!(err.reason(), "bad_topic", "{bad}");
    }
}

#[test]
fn server_filters_cover_device_kinds_plain_and_shared() {
    assert_eq!(
        server_filters(None),
        [
            "parc/v1/+/hello",
            "parc/v1/+/inventory",
            "parc/v1/+/health",
            "parc/v1/+/event",
            "parc/v1/+/status"
        ]
    );
    assert_eq!(
        server_filters(Some("parc"))[2],
        "$share/parc/parc/v1/+/health"
    );
}

#[test]
fn a_device_may_publish_only_its_own_data_topics() {
    let d = DeviceId::parse("d-1").unwrap();
    assert!(device_may_publish(&d, "parc/v1/d-1/health"));
    assert!(!device_may_publish(&d, "parc/v1/d-2/health"));
    assert!(!device_may_publish(&d, "parc/v1/d-1/cmd"));
    assert!(mosquitto_device_acl().contains(&"pattern write parc/v1/%u/health".to_string()));
    assert!(mosquitto_device_acl().contains(&"pattern read parc/v1/%u/cmd".to_string()));
}
