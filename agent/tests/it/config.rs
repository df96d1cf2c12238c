//! Configuration: defaults, file over defaults, errors that name the key.

use std::process::Command;

use parc_agent::config::{AgentConfig, ConfigError};

#[test]
fn the_embedded_default_is_valid_and_documented() {
    let cfg = AgentConfig::defaults();
    assert_eq!(cfg.collect.health_interval_seconds, 300);
    assert_eq!(cfg.collect.inventory_interval_seconds, 86_400);
    assert_eq!(cfg.spool.max_bytes, 20 * 1024 * 1024);
}

#[test]
fn a_file_overrides_only_the_keys_it_sets() {
    let cfg = AgentConfig::parse("[mqtt]\nurl = \"mqtts://broker.example.org:8883\"\n").unwrap();
    assert_eq!(cfg.mqtt.url, "mqtts://broker.example.org:8883");
    assert_eq!(cfg.collect.health_interval_seconds, 300);
}

#[test]
fn a_wrong_type_names_its_key() {
    let err = AgentConfig::parse("[collect]\nhealth_interval_seconds = \"often\"\n").unwrap_err();
    let ConfigError::Invalid { key, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(key, "collect.health_interval_seconds", "{err}");
}

#[test]
fn an_unknown_key_is_an_error_not_ignored() {
    let err = AgentConfig::parse("[mqtt]\nurll = \"mqtt://x\"\n").unwrap_err();
    assert!(err.to_string().contains("urll"), "{err}");
}

#[test]
fn out_of_range_values_name_their_key() {
    let err = AgentConfig::parse("[collect]\nhealth_interval_seconds = 1\n").unwrap_err();
    assert!(
        err.to_string().contains("collect.health_interval_seconds"),
        "{err}"
    );
    let err = AgentConfig::parse("[mqtt]\nurl = \"http://x\"\n").unwrap_err();
    assert!(err.to_string().contains("mqtt.url"), "{err}");
}

#[test]
fn validate_config_reports_a_missing_file_by_path() {
    let out = Command::new(env!("CARGO_BIN_EXE_parc-agent"))
        .args(["--config", "/nonexistent/agent.toml", "validate-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/agent.toml"), "{err}");
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "[mqtt]\nurl = \"mqtt://from-file:1883\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_parc-agent"))
        .args(["--config", path.to_str().unwrap(), "print-config"])
        .env("PARC_AGENT_MQTT__URL", "mqtts://from-env:8883")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("mqtts://from-env:8883"), "{printed}");
    let reparsed = AgentConfig::parse(&printed).unwrap();
    assert_eq!(reparsed.mqtt.url, "mqtts://from-env:8883");
}

#[test]
fn version_and_help_work() {
    let out = Command::new(env!("CARGO_BIN_EXE_parc-agent"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("parc-agent {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(env!("CARGO_BIN_EXE_parc-agent"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("validate-config"));
}
