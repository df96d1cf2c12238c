//! `parc-agent collect` run as a binary: one JSON object holding an inventory and a
//! health message, both accepted by the protocol's validating decoder, on every fixture
//! root and on the real machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use parc_protocol::{Body, DeviceId, Kind, Limits, Message};

const FIXTURES: &[&str] = &[
    "laptop",
    "display",
    "placeholder",
    "charge-battery",
    "desktop",
    "unreadable-dmi",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `parc-agent collect` with a configuration that disables SMART (fixture roots
/// have no /dev) unless `smart`.
fn collect(root: &Path, extra: &[&str], smart: bool) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let smartctl = if smart { "smartctl" } else { "" };
    std::fs::write(&config, format!("[collect]\nsmartctl = \"{smartctl}\"\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_parc-agent"))
        .arg("--config")
        .arg(&config)
        .arg("collect")
        .arg("--root")
        .arg(root)
        .args(extra)
        .env_remove("PARC_AGENT_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not one JSON object: {e}\n{stdout}"));
    (value, stdout)
}

/// Both messages decode with the topic's device id and kind, as the server decodes.
fn decode_both(value: &serde_json::Value) -> (Message, Message) {
    let obj = value.as_object().expect("an object");
    assert_eq!(obj.len(), 2, "{:?}", obj.keys().collect::<Vec<_>>());
    let id = DeviceId::parse("local").unwrap();
    let now = Utc::now();
    let decode = |key: &str, kind: Kind| {
        let bytes = serde_json::to_vec(&value[key]).unwrap();
        Message::decode(&bytes, Some((&id, kind)), now, &Limits::default())
            .unwrap_or_else(|e| panic!("{key}: {e}\n{}", value[key]))
    };
    let inventory = decode("inventory", Kind::Inventory);
    let health = decode("health", Kind::Health);
    assert_eq!(inventory.header.seq, 1);
    assert_eq!(health.header.seq, 2);
    assert_eq!(inventory.header.epoch, health.header.epoch);
    assert!(inventory.header.collected_at <= health.header.collected_at);
    (inventory, health)
}

#[test]
fn collect_prints_valid_messages_for_every_fixture() {
    for name in FIXTURES {
        let (value, _) = collect(&fixture(name), &[], false);
        let (inventory, health) = decode_both(&value);
        let (Body::Inventory(inv), Body::Health(h)) = (inventory.body, health.body) else {
            panic!("{name}: wrong bodies");
        };
        assert_eq!(inv.agent_version, env!("CARGO_PKG_VERSION"));
        // SMART is disabled by this configuration, and said so.
        assert!(
            h.unsupported
                .iter()
                .any(|u| u.signal == "storage" && u.reason == "smartctl disabled in configuration"),
            "{name}: {:?}",
            h.unsupported
        );
        match *name {
            "laptop" => {
                assert_eq!(inv.identity.system_serial.as_deref(), Some("PF2ABCDE"));
                assert_eq!(h.batteries.len(), 1);
                assert_eq!(h.ac_online, Some(false));
            }
            "desktop" => {
                assert_eq!(inv.identity.chassis_type.as_deref(), Some("desktop"));
                assert!(h.batteries.is_empty());
                assert_eq!(h.ac_online, None);
                assert_eq!(h.stability.as_ref().and_then(|s| s.machine_checks), Some(0));
            }
            "unreadable-dmi" => {
                assert_eq!(inv.identity.system_serial, None);
                assert_eq!(inv.identity.chassis_type.as_deref(), Some("notebook"));
            }
            _ => {}
        }
    }
}

#[test]
fn collect_pretty_is_the_same_document_indented() {
    let (compact, _) = collect(&fixture("desktop"), &[], false);
    let (pretty, text) = collect(&fixture("desktop"), &["--pretty"], false);
    assert!(
        text.starts_with("{\n  \"inventory\": {\n    \"schema_version\""),
        "{text}"
    );
    decode_both(&pretty);
    // Same readings (epochs and times differ between runs).
    assert_eq!(compact["inventory"]["body"], pretty["inventory"]["body"]);
}

#[test]
fn collect_on_the_real_machine_exits_0_and_is_accepted() {
    let (value, _) = collect(Path::new("/"), &[], true);
    let (inventory, health) = decode_both(&value);
    let (Body::Inventory(inv), Body::Health(h)) = (inventory.body, health.body) else {
        panic!("wrong bodies");
    };
    // Whatever this machine lacks is listed with a reason rather than failing.
    assert!(inv.os.kernel.is_some(), "{:?}", inv.unsupported);
    assert!(h.uptime_seconds.is_some(), "{:?}", h.unsupported);
    assert!(h.memory_total_bytes.is_some_and(|m| m > 0));
}

#[test]
fn collect_runs_the_configured_probes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[collect]\nsmartctl = \"\"\n\n[[probes]]\nname = \"ENT\"\nurl = \"http://127.0.0.1:{port}/\"\ntimeout_ms = 1000\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_parc-agent"))
        .arg("--config")
        .arg(&config)
        .args(["collect", "--root"])
        .arg(fixture("desktop"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, health) = decode_both(&value);
    let Body::Health(h) = health.body else {
        panic!()
    };
    assert_eq!(h.probes.len(), 1);
    assert_eq!(h.probes[0].target, "ENT");
    assert_eq!(h.probes[0].error.as_deref(), Some("connection refused"));
}
