//! Golden files pin the wire format: any change to how a message encodes shows up as
//! a diff here. Regenerate deliberately with `PARC_BLESS=1 cargo test -p parc-protocol`
//! and review the diff: within v1, changes must be additive.

use std::path::PathBuf;

use parc_protocol::{Frame, Limits, Message, seal};

use crate::samples;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn check_golden(name: &str, actual: &str) {
    let path = data_dir().join(name);
    if std::env::var_os("PARC_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

#[test]
fn every_kind_encodes_exactly_as_its_golden_file() {
    for (name, msg) in samples::all() {
        check_golden(name, &(msg.to_json_pretty() + "\n"));
    }
}

#[test]
fn every_golden_file_decodes_to_the_sample_it_was_made_from() {
    for (name, msg) in samples::all() {
        let text = std::fs::read(data_dir().join(name)).unwrap();
        let decoded = Message::decode(
            &text,
            Some((&msg.header.device_id, msg.kind())),
            samples::now(),
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, msg, "{name}");
    }
}

#[test]
fn signed_frame_is_pinned_and_opens_with_the_device_key() {
    let (topic, payload) = seal(&samples::health(), &samples::key());
    assert_eq!(topic, "parc/v1/d-0123456789abcdef/health");
    check_golden(
        "frame-health.json",
        &(String::from_utf8(payload).unwrap() + "\n"),
    );
    let golden = std::fs::read(data_dir().join("frame-health.json")).unwrap();
    let golden = golden.strip_suffix(b"\n").unwrap();
    let frame = Frame::parse(&topic, golden, &Limits::default()).unwrap();
    let msg = frame
        .open(&samples::key(), samples::now(), &Limits::default())
        .unwrap();
    assert_eq!(msg, samples::health());
}

#[test]
fn unknown_fields_are_tolerated_for_forward_compatibility() {
    let text = std::fs::read_to_string(data_dir().join("health-v1.7-extra-fields.json")).unwrap();
    let msg = Message::decode(text.as_bytes(), None, samples::now(), &Limits::default()).unwrap();
    let parc_protocol::Body::Health(h) = msg.body else {
        panic!("not health")
    };
    assert_eq!(h.batteries[0].health_percent, Some(52.0));
    assert_eq!(h.uptime_seconds, None, "absent stays absent, never 0");
}

fn sample_notice() -> parc_protocol::ticket::TicketNotice {
    use chrono::{NaiveDate, TimeZone, Utc};
    use parc_protocol::ticket::*;
    let at = |h| Utc.with_ymd_and_hms(2026, 11, 23, h, 0, 0).unwrap();
    TicketNotice {
        version: TICKET_NOTICE_VERSION.to_string(),
        event: "ticket.created".to_string(),
        sent_at: at(10),
        ticket: TicketDocument {
            reference: "PARC-2026-000042".to_string(),
            kind: TicketKind::Device,
            status: "new".to_string(),
            opened_at: at(9),
            queue: "holder".to_string(),
            fault: Fault {
                rule_id: "battery_worn".to_string(),
                description: Some("Battery holds less than 60 % of its design capacity.".into()),
                category: "warranty_hardware".to_string(),
                severity: "major".to_string(),
                signal: "battery_health_percent".to_string(),
                threshold: "< 60".to_string(),
                value: 52.0,
                since: at(7),
                samples: 3,
                history: vec![
                    Reading {
                        at: at(7),
                        value: 53.5,
                    },
                    Reading {
                        at: at(8),
                        value: 52.0,
                    },
                ],
            },
            devices: vec![DeviceRef {
                device_id: "d-0123456789abcdef".to_string(),
                serial: Some("NXA1B2C3D4".to_string()),
                model: Some("TravelMate B3".to_string()),
                hostname: Some("cm-ecole-07".to_string()),
                order_reference: Some("BC-2025-0117".to_string()),
                delivered_on: NaiveDate::from_ymd_opt(2025, 9, 1),
                accepted_on: NaiveDate::from_ymd_opt(2025, 9, 8),
                warranty_end: NaiveDate::from_ymd_opt(2029, 9, 8),
                battery_warranty_end: NaiveDate::from_ymd_opt(2027, 9, 8),
                site: Some(SiteRef {
                    uai: "0570001A".to_string(),
                    name: "École Jean Moulin".to_string(),
                    street: "3 rue des Écoles".to_string(),
                    postcode: "57000".to_string(),
                    city: "Metz".to_string(),
                }),
                cart: Some("cart-jm-1".to_string()),
            }],
            lot: Some(LotRef {
                contract: "M2025-ENI".to_string(),
                number: 2,
                title: "Classes mobiles".to_string(),
                service_mode: "on_site".to_string(),
            }),
            holder: Some(HolderRef {
                id: "acme".to_string(),
                company: "ACME Informatique".to_string(),
            }),
            authority: Some(AuthorityRef {
                id: "metz".to_string(),
                name: "Ville de Metz".to_string(),
            }),
            contact: Some(ContactRef {
                name: "Service numérique".to_string(),
                email: Some("numerique@example.org".to_string()),
                phone: None,
            }),
            deadlines: DeadlineRefs {
                gti_due: Some(at(17)),
                gtr_due: None,
            },
            occurrences: 1,
        },
    }
}

#[test]
fn ticket_notice_encodes_as_its_golden_file_and_round_trips() {
    let notice = sample_notice();
    let json = serde_json::to_string_pretty(&notice).unwrap() + "\n";
    check_golden("ticket-notice.json", &json);
    let back: parc_protocol::ticket::TicketNotice = serde_json::from_str(&json).unwrap();
    assert_eq!(back, notice);
}

#[test]
fn ticket_signature_verifies_only_with_the_right_secret_and_body() {
    use parc_protocol::ticket::{sign_notice, verify_notice};
    let body = br#"{"version":"1.0"}"#;
    let sig = sign_notice(b"s3cret", body);
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
    assert!(verify_notice(b"s3cret", body, &sig));
    assert!(!verify_notice(b"other", body, &sig));
    assert!(!verify_notice(b"s3cret", br#"{"version":"1.1"}"#, &sig));
    assert!(!verify_notice(b"s3cret", body, "sha256=zz"));
    assert!(!verify_notice(b"s3cret", body, &sig[7..]));
}
